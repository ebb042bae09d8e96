"""What the strategies driven by an Optuna sampler share: each trial samples a point of the
space (``search.space.suggest``), is timed, and is evaluated unless it is pruned first.

Every worker's sampler draws trial n with its own seed (``SeededPerTrial``), so one worker
repeats its trials exactly for a fixed seed and workers that share a study draw different points.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..problem import Outcome, Problem
from ..pruning import prunes, reporter
from ..space import suggest
from ..storage import Storage
from ..trials import Callback, guarded, record, run_trials


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
    report_each_epoch = intermediate is not None and prunes(study) and problem.evaluator.per_epoch

    def objective(trial: optuna.Trial) -> float | Sequence[float]:
        sample = guarded(trial, lambda: suggest(trial, problem.space))
        latency = guarded(trial, lambda: problem.latency_ms(sample.spec))
        trial.set_user_attr("latency_ms", latency)
        if prune_over_budget and latency > problem.budget_ms:
            reason = f"over the budget: {latency:.2f} ms > {problem.budget_ms:g} ms, not trained"
            trial.set_user_attr("fail_reason", reason)
            raise optuna.TrialPruned(reason)
        report = reporter(trial, lambda score: intermediate(score, latency)) if report_each_epoch else None  # type: ignore[misc]
        outcome = guarded(trial, lambda: problem.evaluate(problem.candidate(sample.params, sample.spec), latency, report))
        record(trial, problem, outcome)
        return values(outcome)

    run_trials(study, storage, n_trials, objective, callbacks)


class SeededPerTrial(optuna.samplers.BaseSampler):
    """A sampler whose trial n draws with its own seed, derived from (seed, n).

    One worker then repeats its trials exactly for a fixed seed, and workers that share a study
    (each with the same seed, as one command line started several times) draw different points
    instead of the same sequence. TPE, NSGA-II and random sampling keep no state between trials
    but their random generator (they read the history from the study), so a fresh sampler per
    trial is the same algorithm.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._current: tuple[int, optuna.samplers.BaseSampler] | None = None

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            self._current = (trial.number, self._make((self._seed * 1_000_003 + trial.number) % 2**32))
        return self._current[1]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._for(trial).after_trial(study, trial, state, values)
