"""What a search strategy is, as a plug-in: how a study's trials choose points of the space, and
which trial is the answer.

A strategy is a frozen dataclass whose fields are its settings (the ``<name>:`` section of
``conf/search.yaml``, checked in ``__post_init__``), registered by name
(``@register_strategy("mnasnet")``; ``strategy=`` looks it up). Its class says what it needs:

* ``directions``: the study's, ``("maximize",)`` or ``("maximize", "minimize")`` (score, latency);
* ``needs_table``: it chooses with the latency lookup table (NetAdapt's proposals), which the
  search then opens whatever ``latency.source`` is;
* ``takes_pruner``: Optuna's pruners apply to its trials (they need a single objective);
* ``reports_front``: its answer is a Pareto front, which the report lists, not one network;
* ``retries_lost``: a trial whose worker was lost is retried with its parameters (NetAdapt
  proposes it again itself);
* ``anytime``: its answer after the first n trials of a run is the answer of a run of n trials
  (its sampler does not know ``n_trials``; NetAdapt's iterations do), so ``python -m
  search.compare`` reads every trial count off one run;

and it implements ``make_sampler`` (Optuna's sampler of its study), ``run`` (its trials, through
``search.trials``: claimed, heartbeated and recorded the same way for every strategy) and
``best``. ``notes``, ``summary`` and ``write`` add what it knows to the report, ``summary.json``
and the run directory. The space, not the strategy, knows how to sample and edit a point
(``archgen.space``), as NASLib's search spaces do for its optimizers.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial

from archgen.checks import load_settings
from archgen.registry import Registry

if TYPE_CHECKING:
    from ..problem import Problem
    from ..storage import Storage
    from ..trials import Callback


class Strategy(ABC):
    """A registered search strategy (see the module docstring)."""

    name: ClassVar[str] = ""  # set by register_strategy
    directions: ClassVar[tuple[str, ...]] = ("maximize",)
    needs_table: ClassVar[bool] = False
    takes_pruner: ClassVar[bool] = True
    reports_front: ClassVar[bool] = False
    retries_lost: ClassVar[bool] = True
    anytime: ClassVar[bool] = True

    def settings(self) -> dict[str, Any]:
        """Its settings, as the config gives them."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def identity(self) -> dict[str, Any]:
        """The settings that give its trials their meaning: all but the folders it keeps files in."""
        return {k: v for k, v in self.settings().items() if not k.endswith("_dir")}

    def objective(self, metric: str) -> str:
        """What a trial's value is, for the plots (the score itself unless the strategy rewards otherwise)."""
        return metric

    @abstractmethod
    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler of its study; ``seed`` repeats its trials."""

    @abstractmethod
    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        """Run trials until the study holds ``n_trials`` that count (from every worker), or the strategy stops."""

    @abstractmethod
    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The trial it answers with (None before any completes)."""

    def notes(self, problem: Problem, study: optuna.Study) -> list[str]:
        """Lines for the report's notes (why it stopped, what it did after the trials)."""
        return []

    def summary(self, problem: Problem, study: optuna.Study) -> dict[str, Any]:
        """Figures of its own for ``summary.json``."""
        return {}

    def write(self, study: optuna.Study, out_dir: Path) -> None:
        """Files of its own for the run directory."""

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.settings().items())})"


STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", hint="; a strategy of your own: a module that registers it, in search/strategies/ or named by imports=")


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a ``Strategy`` dataclass available as ``strategy=<name>``."""

    def wrong(cls: Any) -> str | None:
        if isinstance(cls, type) and issubclass(cls, Strategy) and dataclasses.is_dataclass(cls):
            return None
        return f"register_strategy({name!r}) expects a dataclass subclass of search.strategies.Strategy"

    return STRATEGIES.decorator(name, wrong, "name")


def make_strategy(name: str, settings: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy ``name`` with its settings (the ``<name>:`` section of the config); an unknown
    name or setting is a ``SpecError`` that lists the known ones."""
    return load_settings(STRATEGIES.get(name), name, dict(settings or {}))
