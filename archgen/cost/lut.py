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
* a network's prediction is the sum over its blocks, scaled, plus an overhead, both calibrated
  on real measurements: ``measured ~ scale x sum + overhead``, a least-squares line through
  the calibration networks (one network: scale 1, overhead = measured - sum). The overhead is
  what isolated blocks never see (the framework's calls around them, the classifier's weights
  fetched cold from memory); the scale is the share of a block's time that the network's
  other blocks add by evicting its weights from the caches, which isolated repeats keep warm
  (about +15 % per block on the machines we measured).

The file is safe to share: writers take a file lock, merge with what is on disk and replace
the file atomically, so concurrent search workers never lose or corrupt entries; a damaged
file is rebuilt with a warning.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from filelock import FileLock

from ..blocks import BLOCKS
from ..builder import build
from ..checks import is_finite
from ..errors import SpecError
from ..fileio import read_regular, write_atomic
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..spec import ModelSpec
from .latency import LatencySettings, example_input, fingerprint, measure_side_by_side, prepared, summarize, time_runs

CACHE_ENV = "ARCHGEN_CACHE"  # overrides the cache directory
FORMAT = 2  # bumped when the file layout or the meaning of a key changes
MAX_TABLE_BYTES = 64 << 20  # a target's table of every block of a large space is a few MB


def default_cache_dir() -> Path:
    """``$ARCHGEN_CACHE``, else ``$XDG_CACHE_HOME/archgen``, else ``~/.cache/archgen``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archgen"


@dataclass(frozen=True)
class Calibration:
    """measured ~ scale x (sum of the blocks' latencies) + overhead_ms."""

    scale: float = 1.0
    overhead_ms: float = 0.0
    networks: int = 0  # how many networks it was fitted on; 0: not calibrated

    @classmethod
    def fit(cls, sums: list[float], measured: list[float]) -> "Calibration":
        """Least squares over the networks; with one network, or sums all alike, an offset only."""
        if len(sums) >= 2 and max(sums) - min(sums) > 1e-9 * max(sums):
            scale, overhead = statistics.linear_regression(sums, measured)
            if scale > 0:
                return cls(scale, overhead, len(sums))
        return cls(1.0, statistics.median(m - s for s, m in zip(sums, measured)), len(sums))


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency: per-block figures (as measured alone), the calibration and the total (ms)."""

    total_ms: float
    blocks: tuple[tuple[str, float], ...]  # (block name, ms) in network order
    calibration: Calibration

    @property
    def overhead_ms(self) -> float:
        return self.calibration.overhead_ms

    @property
    def calibrated(self) -> bool:
        return self.calibration.networks > 0


class _Damaged(Exception):
    """A latency-table file that is there but is not a table of this format."""


def _empty_table() -> dict[str, Any]:
    """What ``LatencyTable._read`` gives for no file, or for a damaged one: no entries, no calibration."""
    return {"entries": {}, "calibration": Calibration()}


def block_context(spec: ModelSpec) -> BuildContext:
    """The model-wide settings each block of ``spec`` is built with, as ``ArchNet`` builds them."""
    return BuildContext(bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, round_to=spec.round_to)


def table_key(block: BlockConfig, round_to: int, batch_size: int) -> str:
    """A block's key in every table: its config spelled out, the SE rounding and the batch size."""
    return f"{block.key()}-round:{round_to}-batch:{batch_size}"


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
        # a table timed with another protocol (a cold, one-repeat build) is another table, not this one
        self.protocol = {"warmup": settings.warmup, "repeats": settings.repeats, "statistic": "median"}
        identity = {**self.fingerprint, "protocol": self.protocol}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / "lut" / f"{digest}.json"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # cache= names a file, or a folder no one may write in (/proc)
            raise SpecError(f"cache {self.path.parent.parent}: cannot make the latency tables' folder "
                            f"{self.path.parent} ({e.strerror or e})") from None
        self._lock = FileLock(str(self.path) + ".lock")
        self.entries: dict[str, float] = {}
        self.calibration = Calibration()
        self.reload()

    # -- the file --------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the table from disk (entries other processes added become visible)."""
        data = self._read()
        self.entries.update(data["entries"])
        if data["calibration"].networks:
            self.calibration = data["calibration"]

    def _read(self, warn: bool = True) -> dict[str, Any]:
        """The table on disk; a damaged one (unreadable, not this format's JSON, wrong types,
        non-finite numbers, a folder in its place) is moved aside to ``<name>.damaged.<pid>``,
        with one warning unless ``warn`` is false, and an empty table is returned in its place."""
        try:
            return self._parse(self.path.read_bytes())
        except FileNotFoundError:
            return _empty_table()
        except (OSError, _Damaged) as e:
            damage = f"cannot read it ({e.strerror})" if isinstance(e, OSError) else str(e)
        with self._lock:  # another process may have replaced it meanwhile: move aside only what is still damaged
            try:
                return self._parse(self.path.read_bytes())
            except (OSError, _Damaged):
                aside = self.path.with_name(f"{self.path.name}.damaged.{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                    moved = f"moved to {aside.name}"
                except OSError as e:
                    moved = f"could not move it aside: {e.strerror}" if e.errno != errno.ENOENT else "gone since"
        if warn:
            warnings.warn(f"{self.path}: damaged latency table ({damage}; {moved}); rebuilding it", RuntimeWarning, 3)
        return _empty_table()

    def _parse(self, raw: bytes) -> dict[str, Any]:
        """Entries and calibration from the file's bytes; ``_Damaged`` says what is wrong with them."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise _Damaged(f"not UTF-8 text (byte {e.start})") from None
        except RecursionError:
            raise _Damaged("nested too deep to be a table") from None
        except ValueError as e:  # json.JSONDecodeError
            raise _Damaged(f"not JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise _Damaged("not a table: no 'entries' mapping")
        if data.get("format") != FORMAT or data.get("fingerprint") != self.fingerprint:
            raise _Damaged("written by another format or environment")
        if data.get("protocol") != self.protocol:
            raise _Damaged(f"timed with another protocol ({data.get('protocol')}, not {self.protocol})")
        entries = data["entries"]
        if not all(is_finite(v) and v >= 0 for v in entries.values()):
            raise _Damaged("entries are not block -> finite milliseconds")
        fields = data.get("calibration", {})
        known = {f.name for f in dataclasses.fields(Calibration)}
        if not isinstance(fields, dict) or not set(fields) <= known or not all(is_finite(v) for v in fields.values()):
            raise _Damaged(f"the calibration is not {{{', '.join(sorted(known))}}} -> finite numbers")
        calibration = Calibration(**fields)
        if calibration.scale <= 0 or calibration.networks < 0 or calibration.networks != int(calibration.networks):
            raise _Damaged(f"the calibration is out of range ({asdict(calibration)})")
        return {"entries": {k: float(v) for k, v in entries.items()},
                "calibration": dataclasses.replace(calibration, networks=int(calibration.networks))}

    def _save(self) -> None:
        """Merge with the file under the lock and replace it atomically."""
        with self._lock:
            on_disk = self._read(warn=False)  # damage was reported when the table was loaded; it is replaced now
            on_disk["entries"].update(self.entries)
            self.entries = on_disk["entries"]
            if not self.calibration.networks:
                self.calibration = on_disk["calibration"]
            doc = {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "protocol": self.protocol,
                "calibration": asdict(self.calibration),
                "entries": dict(sorted(self.entries.items())),
            }
            write_atomic(self.path, json.dumps(doc, indent=1) + "\n")

    # -- lookups ---------------------------------------------------------------------------
    def key(self, block: BlockConfig, round_to: int) -> str:
        """The table key of a block: its config spelled out, the SE rounding and the batch size."""
        return table_key(block, round_to, self.settings.batch_size)

    def block_ms(self, block: BlockConfig, ctx: BuildContext) -> float:
        """Latency of one block in isolation, measured once and then read from the table."""
        key = self.key(block, ctx.round_to)
        if key not in self.entries:
            self._measure({key: (block, ctx)})
        return self.entries[key]

    def fill(self, specs: Iterable[ModelSpec]) -> int:
        """Measure every block of ``specs`` the table lacks, side by side (``time_runs``), so that the
        machine's drift while they are timed moves them alike; returns how many were measured."""
        missing: dict[str, tuple[BlockConfig, BuildContext]] = {}
        for spec in specs:
            ctx = block_context(spec)
            for b in spec.blocks:
                missing.setdefault(self.key(b, ctx.round_to), (b, ctx))
        missing = {k: v for k, v in missing.items() if k not in self.entries}
        if missing:
            self._measure(missing)
        return len(missing)

    def _measure(self, blocks: Mapping[str, tuple[BlockConfig, BuildContext]]) -> None:
        runs = []
        for block, ctx in blocks.values():
            module = BLOCKS.get(block.type)(block, ctx).to(self.settings.device).eval()
            example = example_input(block.in_chs, block.in_size, self.settings)
            runs.append(prepared(module, example, self.settings, f"block {block.name} ({block.type})"))
        for key, times in zip(blocks, time_runs(runs, self.settings)):
            self.entries[key] = summarize(times, self.settings).median_ms
        self._save()

    def predict(self, spec: ModelSpec) -> Prediction:
        """scale x (sum of the blocks' latencies) + overhead; before any calibration, the plain sum."""
        self.fill([spec])
        ctx = block_context(spec)
        blocks = tuple((b.name, self.block_ms(b, ctx)) for b in spec.blocks)
        c = self.calibration
        return Prediction(total_ms=c.scale * sum(ms for _, ms in blocks) + c.overhead_ms, blocks=blocks, calibration=c)

    def calibrate(self, specs: Iterable[ModelSpec], measured: Sequence[float] | None = None) -> Calibration:
        """Fit measured ~ scale x sum of blocks + overhead (``Calibration.fit``) over whole networks,
        timed side by side here unless their ``measured`` latencies (ms) are given.

        Networks that span the latencies to be predicted (a space's cheapest and dearest points,
        say) make the line fit where it is used."""
        specs = list(specs)
        if not specs:
            raise ValueError("calibrate needs at least one network")
        sums = [sum(ms for _, ms in self.predict(spec).blocks) for spec in specs]
        if measured is None:
            timed = measure_side_by_side([(build(s), s.in_chans, s.input_size) for s in specs], self.settings)
            measured = [t.median_ms for t in timed]
        self.calibration = Calibration.fit(sums, list(measured))
        self._save()
        return self.calibration

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> Mapping[str, Any]:
        """Where the table is and what it holds, for summaries."""
        return {"path": str(self.path), "entries": len(self.entries), "calibration": asdict(self.calibration)}


class TargetTable(LatencyTable):
    """A table timed on another device (``ort_bench.py``, installed by ``python -m archgen.target
    import``) and named by ``latency.table``: read-only, calibrated there, and a block it lacks is
    refused rather than guessed or timed here, where the figures would mean another device."""

    def __init__(self, settings: LatencySettings, cache_dir: Path | str | None = None) -> None:
        assert settings.table is not None
        settings.check_device()
        self.settings = settings
        self.path = Path(settings.table)
        try:
            raw = read_regular(self.path, MAX_TABLE_BYTES)  # not a FIFO, nor /dev/zero
        except OSError as e:
            raise SpecError(f"latency.table={settings.table}: cannot read it ({e.strerror})") from None
        except ValueError as e:
            raise SpecError(f"latency.table={settings.table}: {e}") from None
        try:
            head = json.loads(raw.decode("utf-8"))
            self.fingerprint = head["fingerprint"] if isinstance(head, dict) else None
            if not isinstance(self.fingerprint, dict) or self.fingerprint.get("backend") != "onnxruntime":
                raise _Damaged("not an installed target table (python -m archgen.target import)")
            self.protocol = head.get("protocol")  # the target's own: it was timed there, by the export's settings
            if head.get("batch_size") != settings.batch_size:
                raise _Damaged(f"timed at batch {head.get('batch_size')}, not latency.batch_size={settings.batch_size}")
            data = self._parse(raw)
        except (UnicodeDecodeError, ValueError, RecursionError, _Damaged) as e:
            raise SpecError(f"latency.table={settings.table}: {e}") from None
        if not data["calibration"].networks:
            raise SpecError(f"latency.table={settings.table}: not calibrated (no network was timed with its blocks)")
        self.entries, self.calibration = data["entries"], data["calibration"]

    def reload(self) -> None:  # nothing else writes it
        return None

    def fill(self, specs: Iterable[ModelSpec]) -> int:
        for spec in specs:
            ctx = block_context(spec)
            for b in spec.blocks:
                if self.key(b, ctx.round_to) not in self.entries:
                    raise SpecError(
                        f"latency.table={self.settings.table} has no entry for block {b.name} ({b.type}) of {spec.name}: "
                        "export the blocks of this space (python -m archgen.target export space=...) and time them "
                        "on the target")
        return 0

    def calibrate(self, specs: Iterable[ModelSpec], measured: Sequence[float] | None = None) -> Calibration:
        raise SpecError(f"latency.table={self.settings.table}: a target's table is calibrated on the target")


def open_table(settings: LatencySettings, cache_dir: Path | str | None = None) -> LatencyTable:
    """The table ``settings`` name: a target's (``latency.table``), else this machine's, built on demand."""
    return TargetTable(settings, cache_dir) if settings.table else LatencyTable(settings, cache_dir)
