"""Per-block latency lookup table: predict a network's latency without measuring it.

NetAdapt (Yang et al. 2018, Sec. 3.2), FBNet (Wu et al. 2019, Sec. 3.3) and Once-for-All
(Cai et al. 2020, Sec. 3.4) predict latency as the sum of per-operator latencies measured
once on the target device. archgen does the same over its one intermediate representation:

* an entry is one concrete block config (``BlockConfig.key()``: type, input shape, output
  channels, stride, kernel, expansion, SE, activation and the type's own settings) plus the
  model-wide ``round_to`` (it sets SE widths) and the batch size, measured in isolation with
  the protocol of ``archgen.cost.latency`` (warm-up, repeats, median, threads, device);
* a table is one file per environment fingerprint (CPU, threads, torch, device) under the
  cache directory, built on first use on whatever machine runs archgen;
* a network's prediction is the sum over its blocks plus an overhead calibrated on real
  measurements (the Python, framework and memory traffic that isolated blocks do not see):
  ``overhead = median(measured - sum of blocks)`` over the calibration networks.

The file is safe to share: writers take a file lock, merge with what is on disk and replace
the file atomically, so concurrent search workers never lose or corrupt entries; a damaged
file is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from filelock import FileLock

from ..blocks import BLOCKS
from ..builder import build
from ..fileio import write_atomic
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..spec import ModelSpec
from .latency import LatencySettings, example_input, fingerprint, measure, summarize, time_runs

CACHE_ENV = "ARCHGEN_CACHE"  # overrides the cache directory
FORMAT = 1  # bumped when the file layout or the meaning of a key changes


def default_cache_dir() -> Path:
    """``$ARCHGEN_CACHE``, else ``$XDG_CACHE_HOME/archgen``, else ``~/.cache/archgen``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archgen"


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency: per-block figures, the overhead and their sum (ms)."""

    total_ms: float
    overhead_ms: float
    blocks: tuple[tuple[str, float], ...]  # (block name, ms) in network order
    calibrated: bool = True  # False: the table has no overhead yet (counted as 0)


class LatencyTable:
    """Per-block latencies of one environment, measured on demand and cached on disk.

    Args:
        settings: the measurement protocol and environment (device, threads, batch size...).
        cache_dir: where the table files live (default: ``default_cache_dir()``).
    """

    def __init__(self, settings: LatencySettings = LatencySettings(), cache_dir: Path | str | None = None) -> None:
        settings.check_device()
        self.settings = settings
        self.fingerprint = fingerprint(settings)
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / "lut" / f"{digest}.json"
        self._lock = FileLock(str(self.path) + ".lock")
        self.entries: dict[str, float] = {}
        self.overhead_ms: float | None = None
        self.reload()

    # -- the file --------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the table from disk (entries other processes added become visible)."""
        data = self._read()
        self.entries.update(data["entries"])
        if data["overhead_ms"] is not None:
            self.overhead_ms = data["overhead_ms"]

    def _read(self, warn: bool = True) -> dict[str, Any]:
        empty: dict[str, Any] = {"entries": {}, "overhead_ms": None}
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return empty
        except OSError as e:
            if warn:
                warnings.warn(f"{self.path}: cannot read the latency table ({e.strerror}); measuring afresh", RuntimeWarning, 3)
            return empty
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
                raise ValueError("not a table: no 'entries' mapping")
            if data.get("format") != FORMAT or data.get("fingerprint") != self.fingerprint:
                raise ValueError("written by another format or environment")
            entries, overhead = data["entries"], data.get("overhead_ms")
            if not all(isinstance(v, (int, float)) and v >= 0 for v in entries.values()):
                raise ValueError("entries are not block -> milliseconds")
            if overhead is not None and not isinstance(overhead, (int, float)):
                raise ValueError("overhead_ms is not a number")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            if warn:
                warnings.warn(f"{self.path}: damaged latency table ({e}); rebuilding it", RuntimeWarning, 3)
            return empty
        return {"entries": {k: float(v) for k, v in entries.items()}, "overhead_ms": overhead}

    def _save(self) -> None:
        """Merge with the file under the lock and replace it atomically."""
        with self._lock:
            on_disk = self._read(warn=False)  # damage was reported when the table was loaded; it is replaced now
            on_disk["entries"].update(self.entries)
            self.entries = on_disk["entries"]
            if self.overhead_ms is not None:
                on_disk["overhead_ms"] = self.overhead_ms
            doc = {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "protocol": {"warmup": self.settings.warmup, "repeats": self.settings.repeats, "statistic": "median"},
                "overhead_ms": on_disk["overhead_ms"],
                "entries": dict(sorted(self.entries.items())),
            }
            write_atomic(self.path, json.dumps(doc, indent=1) + "\n")

    # -- lookups ---------------------------------------------------------------------------
    def key(self, block: BlockConfig, round_to: int) -> str:
        """The table key of a block: its config spelled out, the SE rounding and the batch size."""
        return f"{block.key()}-round:{round_to}-batch:{self.settings.batch_size}"

    def block_ms(self, block: BlockConfig, ctx: BuildContext) -> float:
        """Latency of one block in isolation, measured once and then read from the table."""
        key = self.key(block, ctx.round_to)
        if key not in self.entries:
            self.entries[key] = self._measure_block(block, ctx)
            self._save()
        return self.entries[key]

    def _measure_block(self, block: BlockConfig, ctx: BuildContext) -> float:
        module = BLOCKS.get(block.type)(block, ctx).to(self.settings.device).eval()
        x = example_input(block.in_chs, block.in_size, self.settings)
        return summarize(time_runs(lambda: module(x), self.settings), self.settings).median_ms

    def predict(self, spec: ModelSpec) -> Prediction:
        """Sum of the blocks' latencies plus the calibrated overhead (0 before any calibration)."""
        ctx = BuildContext(bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, round_to=spec.round_to)
        blocks = tuple((b.name, self.block_ms(b, ctx)) for b in spec.blocks)
        overhead = self.overhead_ms or 0.0
        return Prediction(
            total_ms=sum(ms for _, ms in blocks) + overhead, overhead_ms=overhead, blocks=blocks,
            calibrated=self.overhead_ms is not None,
        )

    def calibrate(self, specs: Iterable[ModelSpec]) -> float:
        """Measure whole networks and set the overhead to the median of (measured - sum of blocks)."""
        gaps = []
        for spec in specs:
            blocks = sum(ms for _, ms in self.predict(spec).blocks)
            measured = measure(build(spec), spec.in_chans, spec.input_size, self.settings).median_ms
            gaps.append(measured - blocks)
        if not gaps:
            raise ValueError("calibrate needs at least one network")
        self.overhead_ms = statistics.median(gaps)
        self._save()
        return self.overhead_ms

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> Mapping[str, Any]:
        """Where the table is and what it holds, for summaries."""
        return {"path": str(self.path), "entries": len(self.entries), "overhead_ms": self.overhead_ms}
