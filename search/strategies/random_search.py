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

import optuna

from .base import register_strategy
from .sampled import ScoreSearch, SeededPerTrial


@register_strategy("random")
@dataclass(frozen=True)
class RandomSearch(ScoreSearch):
    """Uniformly random points of the space; the best within the budget (``ScoreSearch``)."""

    train_over_budget: bool = False  # False: a point over the budget is pruned once its latency is known

    def __post_init__(self) -> None:
        self.check_train_over_budget()

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return SeededPerTrial(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
