"""Trials among any number of workers: claiming and running one (with its heartbeat), recording
its figures, failing it with a reason, counting the trials that count toward n_trials, and the
questions every strategy and report asks of them (completed, within the budget, the front)."""

from __future__ import annotations

import gc
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Iterable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from archgen import SpecError

from .evaluators import TrialFailed
from .problem import Outcome, Problem
from .storage import WORKER, WORKER_ATTR, Storage

Callback = Callable[[optuna.Study, FrozenTrial], None]
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
INTERRUPTED = "interrupted (Ctrl-C); not counted toward n_trials"
WAIT_POLL_S = 1.0  # a worker with nothing to claim looks again this often (a few small queries each time)
# what a trial may raise and the search goes past: recorded as a failed trial with the reason
TRIAL_ERRORS = (TrialFailed, SpecError, MemoryError, torch.OutOfMemoryError)


def record(trial: optuna.Trial, problem: Problem, outcome: Outcome) -> None:
    """Attach a point's figures to its trial (they are what trials.csv and the report show)."""
    trial.set_user_attr(problem.metric, outcome.score)
    trial.set_user_attr("latency_ms", outcome.latency_ms)
    trial.set_user_attr("macs", outcome.macs)
    trial.set_user_attr("num_params", outcome.params)
    trial.set_user_attr("eval_seconds", outcome.seconds)
    for key, value in outcome.attrs.items():
        trial.set_user_attr(key, value)
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


def uncounted(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials that do not count toward n_trials: a lost trial that was retried (its
    retry counts in its place) and a trial stopped by Ctrl-C."""
    trials = list(trials)
    # RetryHeartbeatStaleTrialCallback's record on a retry: the numbers of the trials it retries
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return retried | {t.number for t in trials if t.user_attrs.get("fail_reason") == INTERRUPTED}


def counting(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward n_trials, in any state (``uncounted`` are left out)."""
    skip = uncounted(trials)
    return [t for t in trials if t.number not in skip]


def finished_of(trials: Sequence[FrozenTrial]) -> int:
    """How many of ``trials`` ran to an end (complete, failed or pruned) and count toward n_trials."""
    return sum(t.state in FINISHED for t in counting(trials))


def finished(study: optuna.Study) -> int:
    """Trials of the study that ran to an end, by any worker, and count toward n_trials."""
    return finished_of(study.get_trials(deepcopy=False))


def fail_reason(trial: FrozenTrial, trials: Sequence[FrozenTrial]) -> str:
    """Why a failed trial failed; one without a recorded reason was failed by the heartbeat."""
    if "fail_reason" in trial.user_attrs:
        return trial.user_attrs["fail_reason"]
    retry = next((t.number for t in trials if t.system_attrs.get("retry_history", [None])[-1] == trial.number), None)
    return "worker lost (no heartbeat)" + ("" if retry is None else f"; retried as trial {retry}")


def ask(study: optuna.Study, storage: Storage) -> optuna.Trial:
    """The study's next trial (the oldest waiting one, else a new one), with its worker and first heartbeat."""
    with warnings.catch_warnings():
        # Optuna expects the heartbeat to run inside Study.optimize; here it runs in run_trial, since
        # the claim must hold the lock around ask(), which Study.optimize makes inside
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        trial = study.ask()
    storage.record_heartbeat(trial)
    trial.set_user_attr(WORKER_ATTR, WORKER)  # after the heartbeat: a trial without a worker may have none
    return trial


def claim(study: optuna.Study, storage: Storage, n_trials: int) -> optuna.Trial | None:
    """This worker's next trial: a retry of a lost one, or a new one while fewer than ``n_trials``
    count; None when the study is done. With nothing left to claim while other workers' trials
    run, waits for them: one of them may be lost and come back as a retry."""
    waited = False
    while True:
        with storage.claim(study.study_name):
            storage.fail_lost_trials(study)
            trials = study.get_trials(deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials) or len(counting(trials)) < n_trials:
                return ask(study, storage)
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return None
        if not waited:
            print(f"{len(running)} trial(s) still running on other workers ({', '.join(map(str, running))}): waiting for "
                  f"them, as a lost one is retried here after grace_period={storage.grace_period} s", file=sys.stderr)
            waited = True
        time.sleep(WAIT_POLL_S)


def _taken(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    print(f"warning: trial {trial.number} was failed by another worker as lost (no heartbeat for "
          "grace_period seconds); its result here is dropped, and its retry counts instead", file=sys.stderr)
    return study.get_trials(deepcopy=False)[trial.number]


def tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None) -> FrozenTrial:
    """Store a trial's end; one that another worker already failed as lost (its heartbeat stopped,
    say while the machine was suspended) keeps that end, and its result here is dropped."""
    try:
        return study.tell(trial, values, state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return _taken(study, trial)


def run_trial(study: optuna.Study, storage: Storage, trial: optuna.Trial,
              objective: Callable[[optuna.Trial], Any]) -> FrozenTrial:
    """Run a claimed trial with its heartbeat and store its end: complete, pruned, or failed with its
    reason. Ctrl-C fails it as interrupted (not counted toward n_trials) and goes on up."""
    try:
        with storage.heartbeat(trial):
            values = objective(trial)
    except optuna.exceptions.UpdateFinishedTrialError:  # the objective recorded a figure on a trial failed as lost
        return _taken(study, trial)
    except optuna.TrialPruned:
        return tell(study, trial, state=TrialState.PRUNED)
    except TRIAL_ERRORS:  # guarded() recorded the reason
        return tell(study, trial, state=TrialState.FAIL)
    except KeyboardInterrupt:
        trial.set_user_attr("fail_reason", INTERRUPTED)
        tell(study, trial, state=TrialState.FAIL)
        raise
    except BaseException as e:
        message = str(e).splitlines()[0] if str(e) else ""
        trial.set_user_attr("fail_reason", f"{type(e).__name__}: {message}" if message else type(e).__name__)
        tell(study, trial, state=TrialState.FAIL)
        raise
    return tell(study, trial, values)


def run_trials(study: optuna.Study, storage: Storage, n_trials: int, objective: Callable[[optuna.Trial], Any],
               callbacks: Sequence[Callback]) -> None:
    """Claim and run trials until the study holds ``n_trials`` that count (from every worker)."""
    while (trial := claim(study, storage, n_trials)) is not None:
        frozen = run_trial(study, storage, trial, objective)
        for callback in callbacks:
            callback(study, frozen)


def score_of(trial: FrozenTrial, metric: str) -> float:
    return trial.user_attrs[metric]


def feasible(trial: FrozenTrial, budget_ms: float) -> bool:
    return trial.user_attrs["latency_ms"] <= budget_ms


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def pareto_front(trials: Sequence[FrozenTrial], metric: str, budget_ms: float) -> list[FrozenTrial]:
    """The trials within the budget that no other such trial beats on both score and latency, by latency."""
    pts = [t for t in trials if feasible(t, budget_ms)]

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        sa, sb = score_of(a, metric), score_of(b, metric)
        la, lb = a.user_attrs["latency_ms"], b.user_attrs["latency_ms"]
        return sa >= sb and la <= lb and (sa > sb or la < lb)

    return sorted((t for t in pts if not any(dominates(o, t) for o in pts)), key=lambda t: t.user_attrs["latency_ms"])
