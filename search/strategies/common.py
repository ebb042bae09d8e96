"""What the strategies share: recording a trial, failing it with a reason, counting finished trials."""

from __future__ import annotations

import gc
import traceback
from typing import Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from archgen import SpecError

from ..evaluate import TrialFailed
from ..problem import Outcome, Problem

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# what a trial may raise and the search goes past: recorded as a failed trial with the reason
TRIAL_ERRORS = (TrialFailed, SpecError, MemoryError, torch.OutOfMemoryError)


def record(trial: optuna.Trial, problem: Problem, outcome: Outcome) -> None:
    """Attach a point's figures to its trial (they are what trials.csv and the report show)."""
    trial.set_user_attr(problem.metric, outcome.score)
    trial.set_user_attr("latency_ms", outcome.latency_ms)
    trial.set_user_attr("macs", outcome.macs)
    trial.set_user_attr("num_params", outcome.params)
    trial.set_user_attr("eval_seconds", outcome.seconds)
    if outcome.images_per_s is not None:
        trial.set_user_attr("images_per_s", outcome.images_per_s)
    trial.set_constraint("latency_over_budget_ms", outcome.latency_ms - problem.budget_ms)  # > 0: infeasible


def guarded(trial: optuna.Trial, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a failure the search goes past is re-raised with its reason on the trial."""
    try:
        return fn()
    except torch.OutOfMemoryError as e:  # the GPU's
        trial.set_user_attr("fail_reason", f"out of memory: {str(e).splitlines()[0]}")
        # the trial's tensors live on in its frames, which the exception holds: drop them, then
        # hand the cached blocks back, so that the next trial starts with the whole GPU
        traceback.clear_frames(e.__traceback__)
        gc.collect()
        torch.cuda.empty_cache()
        raise
    except TRIAL_ERRORS as e:
        trial.set_user_attr("fail_reason", str(e))
        raise
    except RuntimeError as e:  # PyTorch reports a CPU allocation failure as a RuntimeError
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        trial.set_user_attr("fail_reason", f"out of memory: {e}")
        raise TrialFailed(f"out of memory: {e}") from e


def finished(study: optuna.Study) -> int:
    """Trials that ran to an end (complete, failed or pruned), by any worker."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def score_of(trial: FrozenTrial, metric: str) -> float:
    return trial.user_attrs[metric]


def feasible(trial: FrozenTrial, budget_ms: float) -> bool:
    return trial.user_attrs["latency_ms"] <= budget_ms


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


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
