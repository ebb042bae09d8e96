"""``strategy=random``: random search, the baseline every search strategy is judged against.

Each trial is a point drawn uniformly from the space (Optuna's ``RandomSampler``); the answer is
the highest-scoring trial within the budget. Li & Talwalkar ("Random Search and Reproducibility
for Neural Architecture Search", UAI 2019) found random search with early stopping at least as
good as ENAS; Yu et al. ("Evaluating the Search Phase of Neural Architecture Search", ICLR 2020)
found a random policy better than most published strategies, on average.

A point over the budget is pruned once its latency is known, unevaluated
(``random.train_over_budget``): it can never be the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial

from archgen.checks import check_setting

from ..problem import Problem
from ..storage import Storage
from ..trials import Callback, completed, feasible, score_of
from .base import Strategy, register_strategy
from .sampled import SeededPerTrial, optimize


@register_strategy("random")
@dataclass(frozen=True)
class RandomSearch(Strategy):
    """Uniformly random points of the space; the best within the budget."""

    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    def __post_init__(self) -> None:
        check_setting("random.train_over_budget", self.train_over_budget, isinstance(self.train_over_budget, bool),
                      "true or false")

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: optuna.samplers.RandomSampler(seed=s), seed)

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        optimize(problem, study, storage, n_trials, lambda o: o.score, callbacks,
                 prune_over_budget=not self.train_over_budget, intermediate=lambda score, latency: score)

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The highest score within the budget; if no trial is within it, the highest score."""
        trials = completed(study)
        within = [t for t in trials if feasible(t, problem.budget_ms)]
        return max(within or trials, key=lambda t: score_of(t, problem.metric), default=None)
