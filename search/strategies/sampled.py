"""What the strategies driven by an Optuna sampler share: each trial samples a point of the
space (``search.space.suggest``), is timed, and is evaluated unless it is pruned first.

Every worker's sampler draws trial n with its own seed (``SeededPerTrial``), so one worker
repeats its trials exactly for a fixed seed and workers that share a study draw different points.
``ScoreSearch`` is a strategy whose trials' value is the score and whose answer is the best within
the budget (random search, regularized evolution, local search); ``PlannedSampler`` is a sampler
that plans a trial's whole point from the study's history (a mutated parent, a neighbour).
"""

from __future__ import annotations

import random
from abc import abstractmethod
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from archgen.checks import check_setting

from ..problem import Outcome, Problem
from ..pruning import prunes, reporter
from ..space import suggest
from ..storage import Storage
from ..trials import Callback, completed, feasible, guarded, record, run_trials, score_of
from .base import Strategy

Params = dict[str, Any]


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
        outcome = guarded(trial, lambda: problem.evaluate(problem.candidate(sample.params, sample.spec, trial.number), latency, report))
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


class ScoreSearch(Strategy):
    """A strategy whose trials' value is the score itself and whose answer is the highest score
    within the budget: random search, regularized evolution, local search.

    A point over the budget is pruned once its latency is known, unevaluated, unless the
    subclass's ``train_over_budget`` says otherwise (a dataclass field of each subclass, so that
    the config lists it after the subclass's own settings): it could never be the answer.
    """

    train_over_budget: bool

    def check_train_over_budget(self) -> None:
        check_setting(f"{self.name}.train_over_budget", self.train_over_budget, isinstance(self.train_over_budget, bool),
                      "true or false")

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        optimize(problem, study, storage, n_trials, lambda o: o.score, callbacks,
                 prune_over_budget=not self.train_over_budget, intermediate=lambda score, latency: score)

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The highest score within the budget; if no trial is within it, the highest score."""
        trials = completed(study)
        within = [t for t in trials if feasible(t, problem.budget_ms)]
        return max(within or trials, key=lambda t: score_of(t, problem.metric), default=None)


def alternatives(point: FrozenTrial) -> dict[str, list[Any]]:
    """The other values each of ``point``'s categorical parameters can take, by name (sorted, so
    that a seed picks the same one whatever order the storage returns the parameters in)."""
    out = {}
    for name in sorted(point.params):
        distribution = point.distributions[name]
        if isinstance(distribution, CategoricalDistribution):
            others = [v for v in distribution.choices if v != point.params[name]]
            if others:
                out[name] = others
    return out


class PlannedSampler(optuna.samplers.BaseSampler):
    """A sampler that plans a trial's whole point as the trial starts, from the study's history
    alone, and gives the space the planned values as it asks for them (define-by-run).

    ``plan`` sees the study's other trials in number order and returns the point (None: a random
    one) and notes for the trial's ``system_attrs`` (what the point came from, for the reader). A
    parameter the plan lacks (a block a deeper stage adds) or whose planned value the space does
    not offer there is drawn at random. It keeps nothing between trials but its random generators,
    so ``SeededPerTrial`` may make one per trial, and a resumed study, or one that several workers
    share, goes on from what the study holds. (With ``pruner=hyperband`` Optuna shows a sampler
    only the trials of the trial's bracket.)
    """

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._plan: tuple[int, Params] | None = None

    @abstractmethod
    def plan(self, trials: Sequence[FrozenTrial]) -> tuple[Params, Mapping[str, Any]] | None:
        """The next trial's point and its notes, from the study's other trials (in number order);
        None: a random point."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._planned(study, trial)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        planned = self._planned(study, trial)
        if param_name in planned and isinstance(param_distribution, CategoricalDistribution):
            choices = param_distribution.choices
            if planned[param_name] in choices:
                return choices[choices.index(planned[param_name])]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self.rng.seed()
        self._random.reseed_rng()

    def _planned(self, study: optuna.Study, trial: FrozenTrial) -> Params:
        if self._plan is None or self._plan[0] != trial.number:
            self._plan = (trial.number, self._make_plan(study, trial))
        return self._plan[1]

    def _make_plan(self, study: optuna.Study, trial: FrozenTrial) -> Params:
        if trial.params or "fixed_params" in trial.system_attrs:  # a lost trial's retry, an enqueued point: given
            return {}
        others = sorted((t for t in study.get_trials(deepcopy=False) if t.number != trial.number), key=lambda t: t.number)
        planned = self.plan(others)
        if planned is None:
            return {}
        params, notes = planned
        for key, value in notes.items():  # as Optuna's own samplers record theirs (NSGA-II's generation)
            study._storage.set_trial_system_attr(trial._trial_id, key, value)
        return params
