"""Measured latency on the machine at hand.

MnasNet (Tan et al. 2019, Sec. 3) searched against latency measured on the target device,
batch 1, one core; archgen measures the same way on whatever machine runs it. The protocol:

* the model (or block) in eval mode under ``torch.inference_mode``, on ``device``, with
  ``threads`` intra-op threads (default 1, as MnasNet's single big core);
* ``warmup`` untimed runs first (allocator, oneDNN primitive caches, lazy CUDA init);
* ``repeats`` timed runs: ``time.perf_counter_ns`` on the CPU, CUDA events around the run and
  a synchronisation on the GPU; networks to be compared are timed side by side, round-robin
  (``time_runs``), so that a machine whose speed drifts moves them alike;
* the figure is the median, reported with the 10th and 90th percentiles so that a noisy
  machine shows as a wide band rather than a wrong number;
* freed memory stays in the process (``steady_allocator``): PyTorch's CPU tensors come
  straight from ``malloc``, and glibc returns every large block to the OS, so each run would
  fault its activations' pages in again. At batch 1 that is ~20 % of a MobileNet's time and
  most of its run-to-run noise; a long-running inference server does not pay it.

Every figure carries the environment it was measured in (``fingerprint``): CPU model,
threads, torch version, device, allocator. Figures from different fingerprints are not
comparable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import SpecError
from .backends import BACKENDS, ORT_OPTIMIZATION, backend_version, check_backend, prepare

DEVICES = ("cpu", "cuda")
SOURCES = ("measured", "lut")


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured (the ``latency`` group of the Hydra configs)."""

    source: str = "measured"  # what a consumer uses: measured end to end, or predicted by the lookup table (lut)
    device: str = "cpu"  # cpu or cuda
    threads: int = 1  # torch intra-op threads (MnasNet measured on one core)
    batch_size: int = 1  # images per run (MnasNet: 1)
    warmup: int = 10  # untimed runs before timing
    repeats: int = 50  # timed runs; the figure is their median
    backend: str = "eager"  # the runtime: eager, deployed, onnxruntime or compile (archgen.cost.backends)
    ort_optimization: str = "all"  # backend=onnxruntime: the session's graph optimisation level
    table: str | None = None  # source=lut: a table timed on the target device (python -m archgen.target import)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SpecError(f"latency.source must be one of: {', '.join(SOURCES)}, got {self.source!r}")
        if self.device not in DEVICES:
            raise SpecError(f"latency.device must be one of: {', '.join(DEVICES)}, got {self.device!r}")
        if self.backend not in BACKENDS:
            raise SpecError(f"latency.backend must be one of: {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.ort_optimization not in ORT_OPTIMIZATION:
            raise SpecError(f"latency.ort_optimization must be one of: {', '.join(ORT_OPTIMIZATION)}, "
                            f"got {self.ort_optimization!r}")
        if self.table is not None and (self.source != "lut" or self.backend != "onnxruntime"):
            raise SpecError(f"latency.table={self.table} holds a target's ONNX Runtime figures: use it with latency=lut "
                            "latency.backend=onnxruntime")
        for name, minimum in (("threads", 1), ("batch_size", 1), ("warmup", 0), ("repeats", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise SpecError(f"latency.{name} must be an integer >= {minimum}, got {value!r}")

    def check_device(self) -> None:
        """Fail early, with a short message, when the device cannot be used here."""
        if self.device == "cuda" and not torch.cuda.is_available():
            raise SpecError("latency.device=cuda but no CUDA GPU is available here; use latency.device=cpu")
        check_backend(self.backend, self.device)


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=None)
def steady_allocator() -> str:
    """Make glibc keep freed memory in the process (``mallopt``), once; returns what is in effect.

    Raising the mmap and trim thresholds makes ``free`` keep large blocks on the heap, so the
    next run reuses them without page faults. Process-wide and permanent: memory the process
    has used stays reserved for it. Elsewhere than glibc (macOS, musl) nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return "system default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc: no mallopt
        return "system default"
    return "glibc, freed memory kept" if ok else "system default"


def fingerprint(settings: LatencySettings) -> dict[str, Any]:
    """The environment a latency figure belongs to; figures are comparable only within one. With
    ``latency.table``, the target's, as its table records it."""
    if settings.table is not None:
        try:
            recorded = json.loads(Path(settings.table).read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None  # opening the table says what is wrong with it
        if isinstance(recorded, dict):
            return recorded
    device = settings.device
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name()})"
    return {"cpu": cpu_model(), "threads": settings.threads, "torch": torch.__version__, "device": device,
            "allocator": steady_allocator(), "backend": settings.backend,
            "runtime": backend_version(settings.backend, settings.device, settings.ort_optimization)}


def describe(fp: Mapping[str, Any]) -> str:
    """A fingerprint on one line, for tables."""
    threads = f"{fp['threads']} thread{'s' if fp['threads'] != 1 else ''}"
    return f"{fp['device']}, {fp['cpu']}, {threads}, {fp.get('runtime') or 'torch ' + fp['torch']}"


@dataclass(frozen=True)
class Latency:
    """One measurement: median and 10th/90th percentiles over the timed runs, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    batch_size: int
    fingerprint: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fingerprint"] = dict(self.fingerprint)
        return d

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (p10 {self.p10_ms:.2f}, p90 {self.p90_ms:.2f})"


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_runs(fns: Sequence[Callable[[], Any]], settings: LatencySettings) -> list[list[float]]:
    """Each of ``fns`` ``warmup`` times untimed, then ``repeats`` rounds that time each once; ms per run.

    Several functions are timed side by side, round-robin, so that a machine that speeds up or
    slows down during the measurement (other tenants, clocks) moves all of them alike and their
    comparison stays fair. The order rotates by one every round: each function follows every
    other one equally often (and, from three on, never itself, whose data would still be warm
    in the caches).
    """
    settings.check_device()
    if not fns:  # nothing to time (a search whose every trial failed has no network to re-measure)
        return []
    steady_allocator()
    # CUDA events bracket work on torch's stream; ONNX Runtime's session.run returns once its output
    # is back on the host, so the wall clock times it
    cuda = settings.device == "cuda" and settings.backend != "onnxruntime"
    times: list[list[float]] = [[] for _ in fns]
    order = list(enumerate(fns))
    with intra_op_threads(settings.threads), torch.inference_mode():
        for _, fn in order:
            for _ in range(settings.warmup):
                fn()
        if cuda:
            torch.cuda.synchronize()
        for r in range(settings.repeats):
            shift = r % len(order)
            for i, fn in order[shift:] + order[:shift]:
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    times[i].append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter_ns()
                    fn()
                    times[i].append((time.perf_counter_ns() - t0) / 1e6)
    return times


def summarize(times: list[float], settings: LatencySettings) -> Latency:
    """Median and 10th/90th percentiles of timed runs."""
    if len(times) >= 2:
        deciles = statistics.quantiles(times, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = times[0]
    return Latency(
        median_ms=statistics.median(times),
        p10_ms=p10,
        p90_ms=p90,
        repeats=len(times),
        batch_size=settings.batch_size,
        fingerprint=fingerprint(settings),
    )


def example_input(in_chs: int, size: tuple[int, int] | None, settings: LatencySettings) -> torch.Tensor:
    """A random input of the measured shape: (batch, C, H, W), or (batch, C) for a flat vector."""
    shape = (settings.batch_size, in_chs, *size) if size is not None else (settings.batch_size, in_chs)
    return torch.randn(shape, device=settings.device)


def prepared(module: nn.Module, example: torch.Tensor, settings: LatencySettings, what: str) -> Callable[[], Any]:
    """``module`` on ``example`` as a zero-argument run in the settings' backend (``backends.prepare``)."""
    return prepare(module, example, settings.backend, settings.device, settings.threads, settings.ort_optimization, what)


def measure(
    model: nn.Module,
    in_chans: int,
    input_size: tuple[int, int] | None,
    settings: LatencySettings = LatencySettings(),
) -> Latency:
    """Latency of ``model`` on a random input of ``in_chans`` x ``input_size`` (see the module docs).

    The model is moved to ``settings.device`` and put in eval mode (its train flag is restored).
    """
    return measure_side_by_side([(model, in_chans, input_size)], settings)[0]


def measure_side_by_side(
    models: Sequence[tuple[nn.Module, int, tuple[int, int] | None]], settings: LatencySettings = LatencySettings()
) -> list[Latency]:
    """Latencies of several ``(model, in_chans, input_size)``, timed round-robin (``time_runs``):
    the way to compare or rank networks on a machine whose speed drifts."""
    if settings.table is not None:  # a figure measured here would carry the target's fingerprint
        raise SpecError(f"latency.table={settings.table} holds another device's figures; networks cannot be "
                        "measured against it here (drop latency.table to measure on this machine)")
    settings.check_device()
    flags = [m.training for m, _, _ in models]
    runs = []
    for model, in_chans, size in models:
        model = model.to(settings.device).eval()
        spec = getattr(model, "spec", None)  # an ArchNet knows its spec's name
        what = f"model {spec.name}" if spec is not None else "the model"
        runs.append(prepared(model, example_input(in_chans, size, settings), settings, what))
    try:
        return [summarize(t, settings) for t in time_runs(runs, settings)]
    finally:
        for (model, _, _), flag in zip(models, flags):
            model.train(flag)
