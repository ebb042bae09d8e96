"""Stopping unpromising trials early: Optuna's pruners, fed the validation accuracy after each epoch.

``pruner=`` chooses one (``pruning.<field>`` sets it up):

* ``none``: every trial trains to the end;
* ``median``: ``MedianPruner``, stop a trial whose value after epoch e is below the median of
  the completed trials' values after epoch e (the rule of Google Vizier, Golovin et al. 2017);
* ``sha``: ``SuccessiveHalvingPruner``, asynchronous successive halving (ASHA, Li et al. 2020):
  at epochs ``min_epochs`` x ``reduction_factor`` ** r, only the best 1 / ``reduction_factor``
  of the trials that reached that epoch go on;
* ``hyperband``: ``HyperbandPruner`` (Li et al. 2018), several successive-halving brackets with
  different first rungs, so that slow starters also get a chance.

The value a trial reports is what its study maximises: the accuracy for NetAdapt, MnasNet's
reward ``ACC x (LAT / T) ** w`` for mnasnet (its latency is known before training). Optuna's
pruners need a single objective, so the Pareto search does not take one: it prunes the points
over the budget, untrained, instead.

A pruned trial is recorded PRUNED, with ``pruned_at_epoch`` and the accuracy it had then
(``pruned_accuracy``); it counts towards ``n_trials`` and never becomes the best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from archgen.checks import check_setting, is_int

from .evaluators import Report

PRUNERS = ("none", "median", "sha", "hyperband")


@dataclass(frozen=True)
class PruningSettings:
    """How the pruner named by ``pruner=`` is set up (``pruning.<field>``)."""

    startup_trials: int = 5  # median: trials that complete before any is pruned
    warmup_epochs: int = 0  # median: epochs a trial trains before it may be pruned
    min_epochs: int = 1  # sha, hyperband: the first rung, in epochs
    reduction_factor: int = 3  # sha, hyperband: 1 in this many trials goes on at each rung

    def __post_init__(self) -> None:
        check_setting("pruning.startup_trials", self.startup_trials, is_int(self.startup_trials) and self.startup_trials >= 0, "an integer >= 0")
        check_setting("pruning.warmup_epochs", self.warmup_epochs, is_int(self.warmup_epochs) and self.warmup_epochs >= 0, "an integer >= 0")
        check_setting("pruning.min_epochs", self.min_epochs, is_int(self.min_epochs) and self.min_epochs >= 1, "an integer >= 1")
        check_setting("pruning.reduction_factor", self.reduction_factor, is_int(self.reduction_factor) and self.reduction_factor >= 2, "an integer >= 2")


def make_pruner(name: str, settings: PruningSettings, max_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``name`` (one of ``PRUNERS``); ``max_epochs``: the most epochs a trial reports."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=settings.min_epochs, reduction_factor=settings.reduction_factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=settings.min_epochs, max_resource=max_epochs,
                                              reduction_factor=settings.reduction_factor)
    return optuna.pruners.NopPruner()


def prunes(study: optuna.Study) -> bool:
    """Whether the study has a pruner, so that its trials should report after each epoch (each
    report costs a validation)."""
    return not isinstance(study.pruner, optuna.pruners.NopPruner)


def reporter(trial: optuna.Trial, value: Callable[[float], float]) -> Report:
    """What the evaluator calls after each epoch: report ``value(accuracy)`` to the trial, and
    stop the training (``optuna.TrialPruned``) when the study's pruner says so."""

    def report(epoch: int, accuracy: float) -> None:
        trial.report(value(accuracy), step=epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            trial.set_user_attr("pruned_accuracy", accuracy)
            reason = f"pruned by {type(trial.study.pruner).__name__} after epoch {epoch}: accuracy {accuracy:.4f}"
            trial.set_user_attr("fail_reason", reason)
            raise optuna.TrialPruned(reason)

    return report
