"""``strategy=pareto``: NSGA-II (Deb et al. 2002) over (score up, latency down), with
``latency <= budget`` as a constraint of every trial (``Trial.set_constraint``), which NSGA-II's
selection honours; the answer is the Pareto front of the feasible trials.

A point over the budget is pruned once its latency is known, untrained
(``pareto.train_over_budget``): NSGA-II's constrained domination ranks every feasible point above
it whatever its score, and in a space that reaches 5x the base's latency most random points are
over a tight budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial

from archgen.checks import check_setting, is_int

from ..problem import Problem
from ..storage import Storage
from ..trials import Callback, completed, pareto_front, score_of
from .base import Strategy, register_strategy
from .sampled import SeededPerTrial, optimize


@register_strategy("pareto")
@dataclass(frozen=True)
class Pareto(Strategy):
    """NSGA-II over (score, latency) with the budget as a constraint."""

    population: int = 20
    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    directions = ("maximize", "minimize")
    takes_pruner = False  # Optuna cannot prune the trials of a multi-objective study
    reports_front = True

    def __post_init__(self) -> None:
        check_setting("pareto.population", self.population, is_int(self.population) and self.population >= 2,
                      "an integer >= 2")
        check_setting("pareto.train_over_budget", self.train_over_budget, isinstance(self.train_over_budget, bool),
                      "true or false")

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: optuna.samplers.NSGAIISampler(population_size=self.population, seed=s), seed)

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        optimize(problem, study, storage, n_trials, lambda o: (o.score, o.latency_ms), callbacks,
                 prune_over_budget=not self.train_over_budget)

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The highest-scoring trial within the budget (the front's end at the budget)."""
        front = pareto_front(completed(study), problem.metric, problem.budget_ms)
        return max(front, key=lambda t: score_of(t, problem.metric), default=None)
