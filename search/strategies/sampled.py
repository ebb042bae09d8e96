"""Strategies driven by an Optuna sampler: each trial samples a point of the space and is evaluated.

* ``mnasnet`` (Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for
  Mobile", Sec. 3, Eq. 2): maximise ``ACC(m) x (LAT(m) / T) ** w`` with ``w = alpha`` when
  LAT <= T and ``w = beta`` above it. The soft constraint is alpha = beta = -0.07 (the paper's
  choice: a model twice as slow must be about 5 % more accurate to score the same); the hard
  constraint is alpha = 0, beta = -1. MnasNet trained an RL controller; here Optuna's TPE
  sampler proposes the points (or any sampler named in ``mnasnet.sampler``).
* ``pareto``: NSGA-II (Deb et al. 2002) over (accuracy up, latency down), with
  ``latency <= budget`` as a constraint of every trial (``Trial.set_constraint``), which
  NSGA-II's selection honours; the result is the Pareto front of the feasible trials. A point
  over the budget is pruned once its latency is known, untrained (``pareto.train_over_budget``):
  NSGA-II's constrained domination ranks every feasible point above it whatever its accuracy,
  and in a space that reaches 5x the base's latency most random points are over a tight budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from archgen import SpecError

from ..problem import Outcome, Problem
from ..pruning import prunes, reporter
from ..space import suggest
from ..storage import Storage
from .common import Callback, SeededPerTrial, completed, feasible, guarded, record, run_trials, score_of

SAMPLERS = ("tpe", "random")


def reward(score: float, latency_ms: float, budget_ms: float, alpha: float, beta: float) -> float:
    """MnasNet's objective, Eq. 2: ``score x (latency / budget) ** w``, w = alpha within the budget, beta above."""
    w = alpha if latency_ms <= budget_ms else beta
    return score * (latency_ms / budget_ms) ** w


def optimize(
    problem: Problem,
    study: optuna.Study,
    storage: Storage,
    n_trials: int,
    values: Callable[[Outcome], float | Sequence[float]],
    callbacks: Sequence[Callback],
    prune_over_budget: bool = False,
    intermediate: Callable[[float, float], float] | None = None,
) -> None:
    """Run sampled trials until the study has ``n_trials`` finished ones (from every worker).

    ``prune_over_budget``: a point whose latency is over the budget is pruned, not evaluated.
    ``intermediate(score, latency)``: the value a trial reports after each epoch, for the
    study's pruner (none: the trials do not report)."""
    report_each_epoch = intermediate is not None and prunes(study) and problem.epochs

    def objective(trial: optuna.Trial) -> float | Sequence[float]:
        sample = guarded(trial, lambda: suggest(trial, problem.space))
        latency = guarded(trial, lambda: problem.latency_ms(sample.spec))
        trial.set_user_attr("latency_ms", latency)
        if prune_over_budget and latency > problem.budget_ms:
            reason = f"over the budget: {latency:.2f} ms > {problem.budget_ms:g} ms, not trained"
            trial.set_user_attr("fail_reason", reason)
            raise optuna.TrialPruned(reason)
        report = reporter(trial, lambda score: intermediate(score, latency)) if report_each_epoch else None  # type: ignore[misc]
        outcome = guarded(trial, lambda: problem.evaluate(sample.params, sample.spec, latency, report))
        record(trial, problem, outcome)
        return values(outcome)

    run_trials(study, storage, n_trials, objective, callbacks)


@dataclass(frozen=True)
class MnasNet:
    """MnasNet's reward, maximised by a sampler (TPE by default)."""

    alpha: float = -0.07
    beta: float = -0.07
    hard: bool = False  # the hard constraint: alpha = 0, beta = -1
    sampler: str = "tpe"
    startup_trials: int = 10  # TPE: random trials before it models the objective

    name = "mnasnet"
    directions = ("maximize",)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SpecError(f"mnasnet.sampler must be one of: {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not isinstance(self.startup_trials, int) or self.startup_trials < 1:
            raise SpecError(f"mnasnet.startup_trials must be an integer >= 1, got {self.startup_trials!r}")

    @property
    def weights(self) -> tuple[float, float]:
        return (0.0, -1.0) if self.hard else (self.alpha, self.beta)

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.sampler == "random":
            return SeededPerTrial(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
        return SeededPerTrial(lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=self.startup_trials), seed)

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        alpha, beta = self.weights

        def value(score: float, latency_ms: float) -> float:
            return reward(score, latency_ms, problem.budget_ms, alpha, beta)

        optimize(problem, study, storage, n_trials, lambda o: value(o.score, o.latency_ms), callbacks, intermediate=value)

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The highest reward within the budget; if no trial is within it, the highest reward."""
        trials = completed(study)
        within = [t for t in trials if feasible(t, problem.budget_ms)]
        return max(within or trials, key=lambda t: t.value, default=None)


@dataclass(frozen=True)
class Pareto:
    """NSGA-II over (score, latency) with the budget as a constraint."""

    population: int = 20
    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    name = "pareto"
    directions = ("maximize", "minimize")

    def __post_init__(self) -> None:
        if not isinstance(self.population, int) or self.population < 2:
            raise SpecError(f"pareto.population must be an integer >= 2, got {self.population!r}")
        if not isinstance(self.train_over_budget, bool):
            raise SpecError(f"pareto.train_over_budget must be true or false, got {self.train_over_budget!r}")

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: optuna.samplers.NSGAIISampler(population_size=self.population, seed=s), seed)

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        optimize(problem, study, storage, n_trials, lambda o: (o.score, o.latency_ms), callbacks,
                 prune_over_budget=not self.train_over_budget)

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The most accurate trial within the budget (the front's end at the budget)."""
        front = pareto_front(completed(study), problem)
        return max(front, key=lambda t: score_of(t, problem.metric), default=None)


def pareto_front(trials: Sequence[FrozenTrial], problem: Problem) -> list[FrozenTrial]:
    """The trials within the budget that no other such trial beats on both score and latency."""
    pts = [t for t in trials if feasible(t, problem.budget_ms)]

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        sa, sb = score_of(a, problem.metric), score_of(b, problem.metric)
        la, lb = a.user_attrs["latency_ms"], b.user_attrs["latency_ms"]
        return sa >= sb and la <= lb and (sa > sb or la < lb)

    return sorted((t for t in pts if not any(dominates(o, t) for o in pts)), key=lambda t: t.user_attrs["latency_ms"])
