"""What an evaluator is: the score a search ranks a space's architectures by, as a plug-in.

An evaluator is a class registered by name (``@register_evaluator("train")``; ``evaluator=``
looks it up) whose instance holds its settings, the ``<name>.*`` section of the search's
config. It declares what it needs and what it costs, and scores one candidate at a time:

* ``needs_data``: it scores the *proxy network* (the point's architecture at the data's
  resolution, channels and classes) on the data, which the search then loads; an evaluator
  that does not scores the deployment network itself (the multiply-adds, say);
* ``tabular``: it reads its scores from a table of trained results (a tabular benchmark), keyed by
  the point's key (``Candidate.key``); the report then gives the best's true score and its rank;
* ``per_epoch``: it reports after each epoch, so that a study's pruner can stop it;
* ``local_settings``: the settings that change where it runs, not what its score means (the
  device, the threads); the others belong to a study's identity (``identity``);
* ``cost``: what one evaluation costs, in words, for the report.

NASLib's predictors and Once-for-All's accuracy predictor keep an evaluation behind one call
the same way. ``Trainer`` is an evaluator whose score comes from training weights: the search
trains the report's networks again from fresh seeds with it, and NetAdapt fine-tunes with it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from archgen import ModelSpec, SpecError
from archgen.checks import check_setting, load_settings
from archgen.registry import Registry

if TYPE_CHECKING:
    import torch

    from ..data import Dataset
    from ..device import Runtime

# called after each epoch but the last with (epochs trained so far, over the repeats; validation
# top-1); it may raise to stop the training, as a pruned Optuna trial does
Report = Callable[[int, float], None]


class TrialFailed(RuntimeError):
    """The architecture could not be evaluated (e.g. its loss diverged): a failed trial, not a bad setting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """What an evaluator may look at: the point's choices (None for a network outside the space,
    such as the base width-scaled), its deployment network and its proxy network (None when the
    evaluator needs no data)."""

    params: Mapping[str, Any] | None
    spec: ModelSpec
    proxy: ModelSpec | None
    key: str | None = None  # its key in the tabular benchmark the space declares (``Space.key``), if any
    draw: int | None = None  # the trial's seed, for an evaluator whose result is a random draw; None: outside a trial


@dataclass(frozen=True)
class Score:
    """One evaluation: the score the search maximises, its wall time, and the figures to record
    on the trial beside it (``trials.csv`` columns, e.g. ``images_per_s``)."""

    value: float
    seconds: float
    seed_scores: tuple[float, ...] = ()  # one per seed, where the evaluator averages several
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Footprint:
    """What an evaluation holds in memory: a batch of this size on this device, with the
    optimiser's copies when it ``learns`` (``archgen.cost.memory.check_memory``)."""

    batch_size: int
    learns: bool
    device: str


class Evaluator(ABC):
    """A registered evaluator (see the module docstring); ``settings`` is an instance of ``Settings``."""

    name: ClassVar[str] = ""  # set by register_evaluator
    Settings: ClassVar[type]  # a frozen dataclass, every field with a default: the ``<name>.*`` settings
    metric: ClassVar[str]  # what the score is called in trials.csv, the report and the plots
    needs_data: ClassVar[bool] = True
    tabular: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()  # the figures of its own it records on each trial (trials.csv columns)
    per_epoch: ClassVar[bool] = False
    local_settings: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Any = None) -> None:
        settings = self.Settings() if settings is None else settings
        if not isinstance(settings, self.Settings):
            raise TypeError(f"evaluator {self.name!r} takes {self.Settings.__name__}, got {type(settings).__name__}")
        self.settings = settings

    @property
    def runtime(self) -> Runtime | None:
        """Where it runs on this machine (None: nowhere in particular, a count or a lookup)."""
        return None

    def identity(self) -> dict[str, Any]:
        """The settings that give a score its meaning: all but ``local_settings``."""
        return {k: v for k, v in dataclasses.asdict(self.settings).items() if k not in self.local_settings}

    def footprint(self) -> Footprint | None:
        """Its memory, checked against ``max_memory_gb`` before each evaluation (None: none to speak of)."""
        return None

    def check(self, data: Dataset | None) -> None:
        """Refuse, before any trial, settings the data cannot serve (a SpecError): a minibatch larger
        than the training set would fail every trial alike."""

    def epochs_reported(self) -> int:
        """How many per-epoch reports one evaluation makes at most (a pruner's largest rung)."""
        return 1

    @abstractmethod
    def cost(self, data: Dataset | None) -> str:
        """What one evaluation costs, in words: "a training of 4 epochs on 5000 images, ..."."""

    @abstractmethod
    def evaluate(self, candidate: Candidate, data: Dataset | None, report: Report | None = None) -> Score:
        """Score one candidate; ``report`` is given only to an evaluator that reports ``per_epoch``.
        A candidate that cannot be scored raises ``TrialFailed``; a bad setting ``SpecError``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"


class Trainer(Evaluator):
    """An evaluator whose score is the accuracy of trained weights."""

    @abstractmethod
    def fresh(self, seeds: int) -> Trainer:
        """The same training from ``seeds`` seeds no trial used (the report trains its networks
        again with it: the best trial's score is the highest of many noisy draws)."""

    @property
    @abstractmethod
    def seeds_label(self) -> str:
        """Its seeds, in words: "seeds 1-3"."""

    @abstractmethod
    def finetune(self, network: ModelSpec, data: Dataset, initial: Mapping[str, torch.Tensor] | None,
                 report: Report | None = None) -> tuple[Score, dict[str, torch.Tensor]]:
        """Train ``network`` from ``initial`` weights (None: from the seed's) and return its score
        and the trained weights (NetAdapt's short- and long-term fine-tunes)."""

    @abstractmethod
    def with_schedule(self, *, steps: int | None = None, epochs: int | None = None, lr: float | None = None) -> Trainer:
        """The same training with another length and peak learning rate, no warm-up and one seed
        (a fine-tune of weights that are already trained)."""


EVALUATORS: Registry[type[Evaluator]] = Registry(
    "evaluator", hint="; an evaluator of your own: a module that registers it, in search/evaluators/ or named by imports=")


def register_evaluator(name: str) -> Callable[[type[Evaluator]], type[Evaluator]]:
    """Class decorator: make an ``Evaluator`` subclass available as ``evaluator=<name>``."""

    def wrong(cls: Any) -> str | None:
        if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
            return f"register_evaluator({name!r}) expects a subclass of search.evaluators.Evaluator"
        if not dataclasses.is_dataclass(getattr(cls, "Settings", None)):
            return f"evaluator {name!r} must declare its settings as a dataclass named Settings"
        return None

    return EVALUATORS.decorator(name, wrong, "name")


def make_evaluator(name: str, settings: Mapping[str, Any] | None = None) -> Evaluator:
    """The evaluator ``name`` with its settings (the ``<name>.*`` section of the config); an
    unknown name or setting is a ``SpecError`` that lists the known ones."""
    cls = EVALUATORS.get(name)
    return cls(load_settings(cls.Settings, name, dict(settings or {})))


def check_batch(setting: str, batch_size: int, data: Dataset) -> None:
    """A minibatch of ``batch_size`` must fit in the data's training set."""
    n = len(data.train_y)
    check_setting(setting, batch_size, batch_size <= n, f"at most the {n} training samples of data {data.name}")


def check_fits(spec: ModelSpec, data: Dataset) -> None:
    """Refuse a spec whose input or output does not match the data, naming each mismatch."""
    pairs = [
        ("in_chans", spec.in_chans, data.in_chans),
        ("input_size", spec.input_size, (data.size, data.size)),
        ("num_classes", spec.num_classes, data.num_classes),
    ]
    wrong = [f"{what} {ours} (the data's: {theirs})" for what, ours, theirs in pairs if ours != theirs]
    if spec.num_classes == data.num_classes and spec.output_shape != (data.num_classes,):
        wrong.append(f"output shape {spec.output_shape}, not {data.num_classes} class logits")
    if wrong:
        raise SpecError(f"{spec.source}: {spec.name} does not fit data {data.name}: {', '.join(wrong)}")
