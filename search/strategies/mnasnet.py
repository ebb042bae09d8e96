"""``strategy=mnasnet`` (Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for
Mobile", Sec. 3, Eq. 2): maximise ``ACC(m) x (LAT(m) / T) ** w`` with ``w = alpha`` when
LAT <= T and ``w = beta`` above it.

The soft constraint is alpha = beta = -0.07 (the paper's choice: a model twice as slow must be
about 5 % more accurate to score the same); the hard constraint is alpha = 0, beta = -1.
MnasNet trained an RL controller; here Optuna's TPE sampler proposes the points (or any sampler
named in ``mnasnet.sampler``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial

from archgen.checks import check_setting, is_int, is_real

from ..problem import Problem
from ..storage import Storage
from ..trials import Callback, completed, feasible
from .base import Strategy, register_strategy
from .sampled import SeededPerTrial, optimize

SAMPLERS = ("tpe", "random")


def reward(score: float, latency_ms: float, budget_ms: float, alpha: float, beta: float) -> float:
    """MnasNet's objective, Eq. 2: ``score x (latency / budget) ** w``, w = alpha within the budget, beta above."""
    w = alpha if latency_ms <= budget_ms else beta
    return score * (latency_ms / budget_ms) ** w


@register_strategy("mnasnet")
@dataclass(frozen=True)
class MnasNet(Strategy):
    """MnasNet's reward, maximised by a sampler (TPE by default)."""

    alpha: float = -0.07
    beta: float = -0.07
    hard: bool = True  # the hard constraint (alpha = 0, beta = -1): the default, by python -m search.compare (README)
    sampler: str = "tpe"
    startup_trials: int = 10  # TPE: random trials before it models the objective

    def __post_init__(self) -> None:
        check_setting("mnasnet.alpha", self.alpha, is_real(self.alpha), "a number")
        check_setting("mnasnet.beta", self.beta, is_real(self.beta), "a number")
        check_setting("mnasnet.hard", self.hard, isinstance(self.hard, bool), "true or false")
        check_setting("mnasnet.sampler", self.sampler, self.sampler in SAMPLERS, f"one of: {', '.join(SAMPLERS)}")
        check_setting("mnasnet.startup_trials", self.startup_trials, is_int(self.startup_trials) and self.startup_trials >= 1,
                      "an integer >= 1")

    @property
    def weights(self) -> tuple[float, float]:
        return (0.0, -1.0) if self.hard else (self.alpha, self.beta)

    def objective(self, metric: str) -> str:
        return "reward ACC x (LAT/T)^w"

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
