"""``strategy=evolution``: regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution
for Image Classifier Architecture Search", AAAI), Algorithm 1.

The population is the ``population`` (P) latest evaluated trials. Until the study holds P, each
trial is a uniformly random point; after, each trial draws ``tournament`` (S) members of the
population at random (with replacement, as in the paper), takes the best of them as the parent
and evaluates the parent with exactly one parameter changed to another of its values (the
parameter drawn uniformly, then the value). The child joins the population and the oldest member
leaves it, however good it was: a member is a parent only while it is among the latest P
evaluations, which Real et al. found regularizes against a model that scored well by luck.

The population is read from the study's history on every trial (its last P complete trials, in
trial-number order), so a resumed study, or one that several workers share, goes on from where
it stands. A point over the budget is pruned once its latency is known, unevaluated
(``evolution.train_over_budget``): a pruned or failed trial takes no place in the population and
is never a parent. A mutation of a stage's depth drops the removed blocks' parameters, and the
blocks it adds take random values. Each child records its parent and the parameter it changed
(``evolution:parent``, ``evolution:mutated`` in its system attributes).

Defaults: Real et al.'s CIFAR-10 search used P = 100, S = 25; NASLib's benchmark runs
(``naslib/benchmarks/nas/discrete_config.yaml``) use P = 30, S = 10 over 500 queries. P = 20,
S = 5 keeps the paper's S / P = 1/4 for searches of tens to hundreds of trials, of which the
first P are random search.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from archgen.checks import check_setting, is_int

from .base import register_strategy
from .sampled import Params, PlannedSampler, ScoreSearch, SeededPerTrial, alternatives

PARENT, MUTATED = "evolution:parent", "evolution:mutated"  # a child's notes, in its system attributes


@register_strategy("evolution")
@dataclass(frozen=True)
class Evolution(ScoreSearch):
    """Regularized evolution (Real et al. 2019, Algorithm 1); the best within the budget."""

    population: int = 20  # P: the latest evaluated trials, the parents' pool; random points until P are evaluated
    tournament: int = 5  # S: members drawn at random (with replacement) per trial; the best is the parent
    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    def __post_init__(self) -> None:
        check_setting("evolution.population", self.population, is_int(self.population) and self.population >= 2,
                      "an integer >= 2")
        check_setting("evolution.tournament", self.tournament,
                      is_int(self.tournament) and 1 <= self.tournament <= self.population,
                      f"an integer from 1 to evolution.population ({self.population})")
        self.check_train_over_budget()

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: EvolutionSampler(self.population, self.tournament, seed=s), seed)


class EvolutionSampler(PlannedSampler):
    """Real et al.'s Algorithm 1 as an Optuna sampler (maximising the trials' value): a random
    point until the population is full, then the tournament's best with one parameter mutated."""

    def __init__(self, population: int = 20, tournament: int = 5, seed: int | None = None) -> None:
        super().__init__(seed)
        self.population = population
        self.tournament = tournament

    def plan(self, trials: Sequence[FrozenTrial]) -> tuple[Params, Mapping[str, Any]] | None:
        members = population(trials, self.population)
        if len(members) < self.population:
            return None
        parent = tournament(members, self.tournament, self.rng)
        child, mutated = mutate(parent, self.rng)
        return child, {PARENT: parent.number, MUTATED: mutated}


def population(trials: Sequence[FrozenTrial], size: int) -> list[FrozenTrial]:
    """The aging population: the ``size`` latest complete trials of ``trials`` (in number order), oldest first."""
    return [t for t in trials if t.state == TrialState.COMPLETE][-size:]


def tournament(members: Sequence[FrozenTrial], size: int, rng: random.Random) -> FrozenTrial:
    """The best of ``size`` members drawn at random with replacement (the paper's sample of S)."""
    return max(rng.choices(members, k=size), key=lambda t: t.value)


def mutate(parent: FrozenTrial, rng: random.Random) -> tuple[Params, str | None]:
    """The parent's point with one parameter, drawn uniformly, changed to another of its values,
    drawn uniformly (as each of the paper's mutations changes one op or one input of a cell), and
    that parameter's name; a point with nothing to change is returned as it is (None)."""
    options = alternatives(parent)
    if not options:
        return dict(parent.params), None
    name = rng.choice(list(options))
    return {**parent.params, name: rng.choice(options[name])}, name
