"""What a search optimises: a point of the space, its latency on this machine and its accuracy.

A point is one set of choices (``Space`` parameters). It gives two networks that share every
architectural decision (MnasNet, Sec. 3, measures latency at deployment and accuracy on a
proxy task):

* the **deployment network**: the space's base spec with its own knobs (e.g. 3x224x224,
  1000 classes). Its latency is what the budget bounds, measured end to end or predicted by
  the per-block lookup table (``latency.source``);
* the **proxy network**: the same choices on the base spec at the data's resolution, channels
  and classes (e.g. 1x32x32 digits, 10 classes). Its accuracy is the evaluator's figure
  (short training, or the training-free NASWOT score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from archgen import SpecError, build, count, load_spec
from archgen.cost.latency import Latency, LatencySettings, measure, measure_side_by_side
from archgen.cost.lut import open_table
from archgen.cost.memory import check_max_memory_gb, check_memory
from archgen.space import Space
from archgen.spec import ModelSpec

from .data import DataSettings, load_data
from .evaluate import EVALUATORS, EvalResult, NaswotSettings, Report, TrainResult, TrialFailed, TrainSettings, evaluate


@dataclass(frozen=True)
class Outcome:
    """A point's figures: the evaluator's score (accuracy for ``train``), latency and costs."""

    score: float
    latency_ms: float
    macs: int
    params: int
    seconds: float  # evaluation time (training or scoring)
    images_per_s: float | None = None  # evaluator=train: the training's throughput


class Problem:
    """The space, the data, the evaluator and the latency source of one search."""

    def __init__(
        self,
        space: str | Path,
        budget_ms: float,
        latency: LatencySettings,
        evaluator: str,
        evaluator_settings: TrainSettings | NaswotSettings,
        data: DataSettings,
        cache: str | Path | None = None,
        lut: bool = False,
        max_memory_gb: float | None = None,
    ) -> None:
        if not (isinstance(budget_ms, (int, float)) and not isinstance(budget_ms, bool) and 0 < budget_ms < math.inf):
            raise SpecError(f"budget_ms must be a positive, finite number of milliseconds, got {budget_ms!r}")
        if evaluator not in EVALUATORS:
            raise SpecError(f"unknown evaluator {evaluator!r}; known: {', '.join(sorted(EVALUATORS))}")
        latency.check_device()
        self.max_memory_gb = check_max_memory_gb(max_memory_gb)
        self.budget_ms = float(budget_ms)
        self.latency = latency
        self.evaluator = evaluator
        self.evaluator_settings = evaluator_settings
        self.runtime = evaluator_settings.runtime()  # train.device=cuda without a GPU stops here, before any trial
        self.space = Space(space)
        self.data_settings = data
        self.data = load_data(data)
        self.proxy = Space(space, num_classes=self.data.num_classes, in_chans=self.data.in_chans, input_size=self.data.size)
        # the table serves latency=lut and NetAdapt's proposals, calibrated across the space's range
        self.table = open_table(latency, cache) if lut or latency.source == "lut" else None
        if self.table is not None and not self.table.calibration.networks:
            self.table.calibrate([self.space.cheapest().spec, self.space.base, self.space.dearest().spec])

    @property
    def epochs(self) -> bool:
        """Whether the evaluator trains epoch by epoch (so that a pruner can stop it after one)."""
        return EVALUATORS[self.evaluator].epochs

    @property
    def metric(self) -> str:
        """What the score is: ``accuracy`` (train) or ``naswot`` (the training-free score)."""
        return "accuracy" if self.evaluator == "train" else "naswot"

    def latency_ms(self, spec: ModelSpec) -> float:
        """The latency the search works with: measured, or predicted by the lookup table."""
        if self.latency.source == "lut":
            assert self.table is not None
            return self.table.predict(spec).total_ms
        return self.measure(spec).median_ms

    def latency_range(self) -> dict[str, float]:
        """The latency of the space's cheapest point, its base network and its dearest point, in ms:
        where a budget falls in what the space can reach. Measured side by side (or predicted by
        the lookup table, with ``latency=lut``)."""
        specs = {"cheapest": self.space.cheapest().spec, "base": self.space.base, "dearest": self.space.dearest().spec}
        if self.latency.source == "lut":
            return {k: self.lut_ms(s) for k, s in specs.items()}
        for s in specs.values():
            self._fits(s)
        timed = measure_side_by_side([(build(s), s.in_chans, s.input_size) for s in specs.values()], self.latency)
        return {k: t.median_ms for k, t in zip(specs, timed)}

    def measure(self, spec: ModelSpec) -> Latency:
        """Measured end to end, whatever the search's latency source (the final check of a result)."""
        self._fits(spec)
        return measure(build(spec), spec.in_chans, spec.input_size, self.latency)

    def _fits(self, spec: ModelSpec, training: bool = False) -> None:
        """Refuse (SpecError: a failed trial, or the run's one line) a network whose estimated memory is
        above ``max_memory_gb``: timed at the latency protocol's batch, or trained (or scored) on the proxy task."""
        if training:
            batch, device, learns = self.evaluator_settings.batch_size, str(self.runtime.device), self.evaluator == "train"
            check_memory(spec, batch, learns, self.max_memory_gb, device)
        else:
            check_memory(spec, self.latency.batch_size, False, self.max_memory_gb, self.latency.device)

    def lut_ms(self, spec: ModelSpec) -> float:
        """The lookup table's prediction (NetAdapt chooses its proposals with it)."""
        assert self.table is not None
        return self.table.predict(spec).total_ms

    def score(self, proxy: ModelSpec, report: Report | None = None) -> EvalResult:
        """The evaluator's result for a proxy network; ``report``: per-epoch reports to a pruner."""
        self._fits(proxy, training=True)
        return evaluate(proxy, self.evaluator, self.data, self.evaluator_settings, report=report)

    def fresh_settings(self, n: int) -> TrainSettings:
        """The trials' training from ``n`` seeds no trial uses (those after the trials' seeds)."""
        if not isinstance(self.evaluator_settings, TrainSettings):
            raise SpecError(f"fresh seeds apply to evaluator=train, not {self.evaluator}")
        return self.evaluator_settings.after(n)

    def rescore(self, proxy: ModelSpec, settings: TrainSettings) -> tuple[float, ...]:
        """Accuracies of a proxy network trained from each seed of ``settings`` (``fresh_settings``).
        The best trial's accuracy is the highest of many noisy evaluations, biased upwards by the
        choosing; these are not."""
        self._fits(proxy, training=True)
        result = evaluate(proxy, "train", self.data, settings)
        assert isinstance(result, TrainResult)
        return result.accuracies

    def evaluate(self, params: Mapping[str, Any], spec: ModelSpec | None = None, latency_ms: float | None = None,
                 report: Report | None = None) -> Outcome:
        """Latency of the deployment network (unless given) and score of the proxy network of one point."""
        return self.evaluate_specs(spec if spec is not None else self.space.apply(params), self.proxy.apply(params), latency_ms, report)

    def evaluate_specs(self, spec: ModelSpec, proxy: ModelSpec, latency_ms: float | None = None,
                       report: Report | None = None) -> Outcome:
        """Latency of ``spec`` (unless given) and score of ``proxy``: a point, or a network outside the space (the base)."""
        latency = self.latency_ms(spec) if latency_ms is None else latency_ms
        return self._outcome(spec, latency, self.score(proxy, report))

    def _outcome(self, spec: ModelSpec, latency_ms: float, result: EvalResult) -> Outcome:
        """A point's figures: the deployment network's latency and costs, the evaluation's result;
        a score that is not finite fails the trial."""
        if not math.isfinite(result.score):
            raise TrialFailed(f"{self.evaluator} score is {result.score}")
        cost = count(spec)
        throughput = result.images_per_s if isinstance(result, TrainResult) else None
        return Outcome(score=result.score, latency_ms=latency_ms, macs=cost.macs, params=cost.params,
                       seconds=result.seconds, images_per_s=throughput)

    def finetune(self, params: Mapping[str, Any], initial: Mapping[str, Any] | None, settings: TrainSettings,
                 report: Report | None = None, spec: ModelSpec | None = None) -> tuple[Outcome, dict[str, Any]]:
        """A point's latency and accuracy after training its proxy network with ``settings`` from
        ``initial`` weights (None: from the seed's), and the trained weights (NetAdapt)."""
        spec = spec if spec is not None else self.space.apply(params)
        latency = self.latency_ms(spec)
        proxy = self.proxy.apply(params)
        self._fits(proxy, training=True)
        result = evaluate(proxy, "train", self.data, settings, report=report, initial=initial, keep_weights=True)
        assert isinstance(result, TrainResult) and result.weights is not None
        return self._outcome(spec, latency, result), result.weights

    def base_at_width(self, width_mult: float) -> tuple[ModelSpec, ModelSpec]:
        """The base network (deployment and proxy) at another width multiplier (MnasNet's baseline)."""
        networks = []
        for base in (self.space.base, self.proxy.base):
            knobs = {"num_classes": base.num_classes, "in_chans": base.in_chans, "input_size": base.input_size}
            networks.append(load_spec(Path(base.source), width_mult=width_mult, **knobs))
        return networks[0], networks[1]
