"""What a search optimises: a point of the space, its latency on this machine and its score.

A point is one set of choices (``Space`` parameters). It gives two networks that share every
architectural decision (MnasNet, Sec. 3, measures latency at deployment and accuracy on a
proxy task):

* the **deployment network**: the space's base spec with its own knobs (e.g. 3x224x224,
  1000 classes). Its latency is what the budget bounds, measured end to end or predicted by
  the per-block lookup table (``latency.source``);
* the **proxy network**: the same choices on the base spec at the data's resolution, channels
  and classes (e.g. 1x32x32 digits, 10 classes), for an evaluator that scores on data (a short
  training, the training-free NASWOT score). An evaluator that needs no data scores the
  deployment network itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from archgen import SpecError, build, count, load_spec
from archgen.checks import is_real
from archgen.cost.latency import Latency, LatencySettings, measure, measure_side_by_side
from archgen.cost.lut import LatencyTable, open_table
from archgen.cost.memory import check_max_memory_gb, check_memory
from archgen.space import Space
from archgen.spec import ModelSpec

from .data import Dataset, DataSettings, load_data
from .evaluators import Candidate, Evaluator, Report, Score, Trainer, TrialFailed


@dataclass(frozen=True)
class Outcome:
    """A point's figures: the evaluator's score, latency and costs of the deployment network."""

    score: float
    latency_ms: float
    macs: int
    params: int
    seconds: float  # evaluation time (training or scoring)
    attrs: Mapping[str, Any] = field(default_factory=dict)  # the evaluator's own figures (images_per_s)


def check_budget_ms(budget_ms: Any) -> float:
    if not (is_real(budget_ms) and 0 < budget_ms < math.inf):
        raise SpecError(f"budget_ms must be a positive, finite number of milliseconds, got {budget_ms!r}")
    return float(budget_ms)


class Problem:
    """The space, the data, the evaluator and the latency source of one search.

    Args:
        space: a shipped space name, a space file or a space mapping.
        budget_ms: the latency budget T.
        latency: how latency is measured or predicted (``latency.*``).
        evaluator: what scores a point (``search.evaluators``).
        data: the data the evaluator scores on; unused (and not loaded) when it needs none.
        cache: the latency tables' folder.
        lut: open the lookup table even with measured latency (a strategy that chooses by it).
        max_memory_gb: refuse a network whose estimated memory is above this.
        seed: the run's seed; a trial's draw (``Candidate.draw``) comes from it and the trial's number.
    """

    def __init__(
        self,
        space: str | Path,
        budget_ms: float,
        latency: LatencySettings,
        evaluator: Evaluator,
        data: DataSettings | None = None,
        cache: str | Path | None = None,
        lut: bool = False,
        max_memory_gb: float | None = None,
        seed: int = 0,
    ) -> None:
        self.budget_ms = check_budget_ms(budget_ms)
        latency.check_device()
        self.max_memory_gb = check_max_memory_gb(max_memory_gb)
        self.latency = latency
        self.evaluator = evaluator
        self.seed = seed
        self.space = Space(space)
        self.data_settings: DataSettings | None = None
        self.data: Dataset | None = None
        self.proxy: Space | None = None
        if evaluator.tabular and self.space.key_format is None:
            raise SpecError(f"evaluator={evaluator.name} scores a point by its key in a benchmark's file, and space "
                            f"{self.space.name} declares none (key:); e.g. space=nasbench_macro")
        if evaluator.needs_data:
            self.data_settings = data or DataSettings()
            self.data = load_data(self.data_settings)
            self.proxy = self.space.at(num_classes=self.data.num_classes, in_chans=self.data.in_chans,
                                       input_size=self.data.size)
        evaluator.check(self.data)  # a setting every trial would fail on stops here
        # the table serves latency=lut and NetAdapt's proposals, calibrated across the space's range
        self.table: LatencyTable | None = open_table(latency, cache) if lut or latency.source == "lut" else None
        if self.table is not None and not self.table.calibration.networks:
            self.table.calibrate([self.space.cheapest().spec, self.space.base, self.space.dearest().spec])

    def with_budget(self, budget_ms: float) -> Problem:
        """The same problem (space, data, table: nothing loaded again) under another budget."""
        other = copy.copy(self)
        other.budget_ms = check_budget_ms(budget_ms)
        return other

    @property
    def metric(self) -> str:
        """What the score is called: ``accuracy`` (train), ``naswot``, ..."""
        return self.evaluator.metric

    @property
    def predicts(self) -> bool:
        """Whether the search's latency is the lookup table's prediction rather than a measurement."""
        return self.latency.source == "lut"

    # -- latency ----------------------------------------------------------------------------------
    def latency_ms(self, spec: ModelSpec) -> float:
        """The latency the search works with: measured, or predicted by the lookup table."""
        if self.predicts:
            return self.lut_ms(spec)
        return self.measure(spec).median_ms

    def lut_ms(self, spec: ModelSpec) -> float:
        """The lookup table's prediction (NetAdapt chooses its proposals with it)."""
        if self.table is None:
            raise AssertionError("the problem was set up without a lookup table (lut=False, latency.source measured)")
        return self.table.predict(spec).total_ms

    def measure(self, spec: ModelSpec) -> Latency:
        """Measured end to end, whatever the search's latency source (the final check of a result)."""
        self._fits(spec)
        return measure(build(spec), spec.in_chans, spec.input_size, self.latency)

    def remeasure(self, specs: list[ModelSpec]) -> list[Latency]:
        """Networks timed side by side on this machine, in one process (their ratios hold whatever the
        machine's load); with a target's table (``latency.table``), its predictions instead, as this
        machine cannot measure the target."""
        if self.latency.table is not None:
            assert self.table is not None
            return [Latency(ms, ms, ms, 0, self.latency.batch_size, self.table.fingerprint)
                    for ms in (self.lut_ms(s) for s in specs)]
        for s in specs:
            self._fits(s)
        return measure_side_by_side([(build(s), s.in_chans, s.input_size) for s in specs], self.latency)

    def latency_range(self) -> dict[str, float]:
        """The latency of the space's cheapest point, its base network and its dearest point, in ms:
        where a budget falls in what the space can reach. Measured side by side (or predicted by
        the lookup table, with ``latency=lut``)."""
        specs = {"cheapest": self.space.cheapest().spec, "base": self.space.base, "dearest": self.space.dearest().spec}
        if self.predicts:
            return {k: self.lut_ms(s) for k, s in specs.items()}
        return {k: t.median_ms for k, t in zip(specs, self.remeasure(list(specs.values())))}

    def _fits(self, spec: ModelSpec, evaluator: Evaluator | None = None) -> None:
        """Refuse (SpecError: a failed trial, or the run's one line) a network whose estimated memory is
        above ``max_memory_gb``: timed at the latency protocol's batch, or evaluated (trained, scored) by ``evaluator``."""
        if evaluator is None:
            check_memory(spec, self.latency.batch_size, False, self.max_memory_gb, self.latency.device)
            return
        footprint = evaluator.footprint()
        if footprint is not None:
            check_memory(spec, footprint.batch_size, footprint.learns, self.max_memory_gb, footprint.device)

    # -- networks ---------------------------------------------------------------------------------
    def candidate(self, params: Mapping[str, Any], spec: ModelSpec | None = None, trial: int | None = None) -> Candidate:
        """A point's networks: the deployment network (``spec`` when the caller has built it) and the proxy;
        its key where the space declares one; ``trial``: the number of the trial that evaluates it."""
        spec = spec if spec is not None else self.space.apply(params)
        key = self.space.key(params) if self.space.key_format is not None else None
        draw = None if trial is None else (self.seed * 1_000_003 + trial) % 2**32  # as SeededPerTrial's
        return Candidate(dict(params), spec, self.proxy.apply(params) if self.proxy is not None else None, key, draw)

    def base_at_width(self, width_mult: float) -> Candidate:
        """The base network (deployment and proxy) at another width multiplier (MnasNet's baseline)."""
        spaces = [self.space] + ([self.proxy] if self.proxy is not None else [])
        networks = []
        for base in (s.base for s in spaces):
            knobs = {"num_classes": base.num_classes, "in_chans": base.in_chans, "input_size": base.input_size}
            networks.append(load_spec(Path(base.source), width_mult=width_mult, **knobs))
        params = None
        if width_mult == 1:  # the base is a point of the space where its settings are among the choices
            nearest = self.space.nearest_to_base()
            params = dict(nearest.params) if nearest.spec.key() == self.space.base.key() else None
        key = self.space.key(params) if params is not None and self.space.key_format is not None else None
        return Candidate(params, networks[0], networks[1] if len(networks) > 1 else None, key)

    # -- scores -----------------------------------------------------------------------------------
    def evaluate(self, candidate: Candidate, latency_ms: float | None = None, report: Report | None = None) -> Outcome:
        """A candidate's latency (unless given) and score; ``report``: per-epoch reports to a pruner."""
        latency = self.latency_ms(candidate.spec) if latency_ms is None else latency_ms
        return self._outcome(candidate.spec, latency, self.score(candidate, report))

    def score(self, candidate: Candidate, report: Report | None = None, evaluator: Evaluator | None = None) -> Score:
        """The evaluator's score of a candidate (``evaluator``: another one than the search's, the fresh seeds')."""
        evaluator = evaluator or self.evaluator
        self._fits(candidate.proxy if candidate.proxy is not None else candidate.spec, evaluator)
        return evaluator.evaluate(candidate, self.data, report if evaluator.per_epoch else None)

    def finetune(self, candidate: Candidate, trainer: Trainer, initial: Mapping[str, torch.Tensor] | None,
                 report: Report | None = None) -> tuple[Outcome, dict[str, torch.Tensor]]:
        """A point's latency and score after training its proxy network with ``trainer`` from ``initial``
        weights (None: from the seed's), and the trained weights (NetAdapt)."""
        assert candidate.proxy is not None and self.data is not None
        latency = self.latency_ms(candidate.spec)
        self._fits(candidate.proxy, trainer)
        score, weights = trainer.finetune(candidate.proxy, self.data, initial, report)
        return self._outcome(candidate.spec, latency, score), weights

    def _outcome(self, spec: ModelSpec, latency_ms: float, score: Score) -> Outcome:
        """A point's figures: the deployment network's latency and costs, the evaluation's score;
        a score that is not finite fails the trial."""
        if not math.isfinite(score.value):
            raise TrialFailed(f"{self.evaluator.name} score is {score.value}")
        cost = count(spec)
        return Outcome(score=score.value, latency_ms=latency_ms, macs=cost.macs, params=cost.params,
                       seconds=score.seconds, attrs=score.attrs)

    def describe_evaluator(self) -> str:
        """The evaluator, what it scores on, where it runs and what one evaluation costs, in words."""
        ev = self.evaluator
        if self.data is not None:
            d = self.data
            on = f"{d.name} ({d.in_chans}x{d.size}x{d.size}, {d.num_classes} classes)"
        else:
            on = f"the deployment network ({self.space.base.in_chans}x{self.space.base.input_size[0]}x" \
                 f"{self.space.base.input_size[1]}), no data"
        where = f", {ev.runtime.describe()}" if ev.runtime is not None else ""
        return f"{ev.name} on {on}{where}; one evaluation: {ev.cost(self.data)}"
