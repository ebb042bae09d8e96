"""``strategy=local``: local search with random restarts, the algorithm White et al. 2021
("Exploring the Loss Landscape in Neural Architecture Search", UAI) study (their Algorithm 1;
NASLib's ``LocalSearch``).

A climb starts at a uniformly random point and evaluates its neighbours (every point that differs
from it in one parameter) in random order. Once all are evaluated it moves to the best of them if
that beats the current point, and goes on with the new point's neighbours; at a local optimum
(no neighbour beats the current point) the next trial is a new random point. As in White et al.'s
Algorithm 1 and NASLib, the whole neighbourhood is evaluated before a move, not the first
improvement: the step is the steepest, and a climb's end is certain to be a local optimum. A
change of a stage's depth is a move too: the blocks it adds take random values.

The climb is replayed from the study's finished trials, in trial-number order, on every trial, so
a resumed study, or one that several workers share, goes on from where it stands. While no climb
is under way a complete trial starts one; a trial that differs from the current point in exactly
one of the parameters they share evaluated that neighbour, whoever ran it and whenever (an earlier
climb, a random start), so no neighbour the study holds is evaluated again. A point over the
budget is pruned once its latency is known, unevaluated (``local.train_over_budget``): a pruned
or failed neighbour counts as evaluated and never beats the current point, and a pruned or failed
start is followed by another. Neighbours that other workers are evaluating are left to them (with
none left, a worker evaluates a random point meanwhile). A restart draws a point the study does
not hold, where a few draws find one. Each trial of a climb records its current point and its
move (``local_search:current``, ``local_search:move`` in its system attributes); the move counts as
evaluated even when the trial failed before its point was complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from ..trials import FINISHED
from .base import register_strategy
from .sampled import Params, PlannedSampler, ScoreSearch, SeededPerTrial, alternatives

CURRENT, MOVE = "local_search:current", "local_search:move"  # a climb's trial's notes, in its system attributes
FRESH_TRIES = 20  # random draws a restart makes for a point the study does not hold

Move = tuple[str, Any]  # (parameter, its new value)


@register_strategy("local")
@dataclass(frozen=True)
class LocalSearch(ScoreSearch):
    """Local search with random restarts (White et al. 2021, Algorithm 1); the best within the budget."""

    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    def __post_init__(self) -> None:
        self.check_train_over_budget()

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: LocalSearchSampler(seed=s), seed)


@dataclass
class Climb:
    """Where local search stands: its current point (None: the next trial starts a climb) and the
    trials that evaluated the current point's neighbours, by move."""

    current: FrozenTrial | None = None
    evaluated: dict[Move, list[FrozenTrial]] = field(default_factory=dict)


class LocalSearchSampler(PlannedSampler):
    """Local search as an Optuna sampler (maximising the trials' value): the current point's next
    unevaluated neighbour, or a random restart (see the module docstring)."""

    def plan(self, trials: Sequence[FrozenTrial]) -> tuple[Params, Mapping[str, Any]] | None:
        state = climb(trials)
        if state.current is None:
            return self.fresh(trials), {}
        current = state.current
        busy = {move_of(current, t) for t in trials if t.state == TrialState.RUNNING}
        left = [m for m in moves(current) if m not in state.evaluated and m not in busy]
        if not left:
            return None
        name, value = self.rng.choice(left)
        return {**current.params, name: value}, {CURRENT: current.number, MOVE: [name, value]}

    def fresh(self, trials: Sequence[FrozenTrial]) -> Params:
        """A random point, over the parameters the study has seen, that no trial holds (the first
        of ``FRESH_TRIES`` draws that is new, else the last); {} in an empty study: all random."""
        choices: dict[str, Sequence[Any]] = {}
        for t in trials:
            for name, distribution in t.distributions.items():
                if isinstance(distribution, CategoricalDistribution):
                    choices.setdefault(name, distribution.choices)
        held = [t.params for t in trials if t.params]
        point: Params = {}
        for _ in range(FRESH_TRIES):
            point = {name: self.rng.choice(values) for name, values in sorted(choices.items())}
            # a held point's parameters are the ones its depths give: the draw is it when it agrees on them all
            if not any(all(point.get(k) == v for k, v in params.items()) for params in held):
                break
        return point


def moves(point: FrozenTrial) -> list[Move]:
    """The moves to ``point``'s neighbours: each parameter to each of its other values."""
    return [(name, value) for name, values in alternatives(point).items() for value in values]


def move_of(current: FrozenTrial, trial: FrozenTrial) -> Move | None:
    """The move from ``current`` that ``trial`` evaluated: the one parameter they share where they
    differ (or the move it was planned as); None if it is no neighbour."""
    if trial.system_attrs.get(CURRENT) == current.number and trial.system_attrs.get(MOVE) is not None:
        name, value = trial.system_attrs[MOVE]
        return name, value
    differ = [n for n in current.params.keys() & trial.params.keys() if trial.params[n] != current.params[n]]
    return (differ[0], trial.params[differ[0]]) if len(differ) == 1 else None


def at(point: FrozenTrial, trials: Sequence[FrozenTrial]) -> Climb:
    """A climb at ``point``, with the neighbours that ``trials`` evaluated."""
    evaluated: dict[Move, list[FrozenTrial]] = {}
    for t in trials:
        if (move := move_of(point, t)) is not None:
            evaluated.setdefault(move, []).append(t)
    return Climb(point, evaluated)


def settle(state: Climb, trials: Sequence[FrozenTrial]) -> Climb:
    """Once the current point's neighbourhood is evaluated: the climb at its best neighbour if that
    beats it (again while that one's is evaluated too), else no climb (a local optimum)."""
    while state.current is not None and all(m in state.evaluated for m in moves(state.current)):
        done = [t for ts in state.evaluated.values() for t in ts if t.state == TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value, default=None)
        if best is None or best.value <= state.current.value:
            return Climb()
        state = at(best, trials)
    return state


def climb(trials: Sequence[FrozenTrial]) -> Climb:
    """Local search replayed over the finished ``trials``, in number order (the module docstring)."""
    state, seen = Climb(), []
    for trial in (t for t in trials if t.state in FINISHED):
        seen.append(trial)
        if state.current is None:
            if trial.state == TrialState.COMPLETE:
                state = at(trial, seen)
        elif (move := move_of(state.current, trial)) is not None:
            state.evaluated.setdefault(move, []).append(trial)
        state = settle(state, seen)
    return state
