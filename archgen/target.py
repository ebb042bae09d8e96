"""A latency table built on the target device, which needs neither torch nor archgen there.

Once-for-All publishes lookup tables for its devices but no way to build one for another;
MnasNet timed candidates on the phone itself. Here the three steps are:

    python -m archgen.target export space=mbv3_large out=blocks/   # here: every distinct block, ONNX
    python ort_bench.py blocks/                                    # there: onnxruntime + numpy only
    python -m archgen.target import blocks/table.json              # here: checked, validated, installed

``export`` writes every distinct block of the space (each block config any point of the space
contains, by the lookup table's key) as the ONNX file of its inference form, checked against
PyTorch, plus the space's cheapest, base and dearest networks whole, which calibrate the table
on the target as ``LatencyTable.calibrate`` does here, and ``validate`` (30) random points of the
space whole, which check it there as ``archgen.validate`` checks this machine's table (NetAdapt
Fig. 3, FBNet Fig. 3); ``manifest.json`` lists each file with its key, role and input shape.
``archgen/ort_bench.py`` times them with archgen's protocol. ``import`` checks the result
against its manifest (every block timed, finite figures), fits the calibration, reports the
table's MAPE and Kendall's tau on the validation networks, and installs the table;
``latency=lut latency.backend=onnxruntime
latency.table=<file>`` then makes ``python -m archgen`` and the search use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import random
import signal
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from scipy.stats import kendalltau

from .blocks import BLOCKS
from .builder import build
from .checks import is_finite
from .cost.backends import export_onnx
from .cost.latency import LatencySettings
from .cost.lut import FORMAT, Calibration, block_context, default_cache_dir, table_key
from .deploy import deploy
from .errors import SpecError
from .fileio import read_regular, write_atomic, write_json
from .ir import BlockConfig
from .ort_bench import MANIFEST, MANIFEST_FORMAT, TABLE_FORMAT
from .space import Space
from .spec import ModelSpec

NETWORKS = ("cheapest", "base", "dearest")
CALIBRATION, VALIDATION = "calibration", "validation"  # a network's role in the manifest
DEFAULT_VALIDATE = 30  # random architectures exported to check the table on the target, as archgen.validate does here


def points(space: Space) -> Iterator[ModelSpec]:
    """Points of ``space`` that together contain every distinct block config it can give.

    A block's config depends on its own per-block choices, its stage's choices and the width of
    the stage before (its input channels); so for each searched stage, every combination of its
    stage choices and the previous stage's width, and within it every combination of one
    block's own choices (the others at their first value)."""
    names: dict[str, list[Any]] = {}

    def record(name: str, knob: str, values: list[Any]) -> Any:
        names.setdefault(name, values)
        return values[-1]  # the largest depth: every block position appears

    space.sample(record)
    space.sample(lambda name, knob, values: names.setdefault(name, values)[0])
    for s in space.stages:
        stage = [n for n in names if n.startswith(f"s{s}_") and "_b" not in n]
        before = [n for n in names if n == f"s{s - 1}_width"]
        for combo in itertools.product(*(names[n] for n in stage + before)):
            fixed = dict(zip(stage + before, combo))
            seen: dict[str, list[Any]] = {}

            def discover(name: str, knob: str, values: list[Any]) -> Any:
                seen[name] = values
                return fixed.get(name, values[0])

            yield space.sample(discover).spec
            blocks: dict[str, list[str]] = {}
            for n in seen:
                if n.startswith(f"s{s}_b"):
                    blocks.setdefault(n.split("_")[1], []).append(n)
            for own in blocks.values():
                for values in itertools.product(*(seen[n] for n in own)):
                    choice = {**fixed, **dict(zip(own, values))}
                    yield space.sample(lambda name, knob, vals: choice.get(name, vals[0])).spec


def distinct_blocks(space: Space, batch_size: int) -> dict[str, tuple[BlockConfig, ModelSpec]]:
    """Every distinct block of the space, by its table key, with a network it belongs to."""
    out: dict[str, tuple[BlockConfig, ModelSpec]] = {}
    for spec in points(space):
        for b in spec.blocks:
            out.setdefault(table_key(b, spec.round_to, batch_size), (b, spec))
    return out


def _shape(chs: int, size: tuple[int, int] | None, batch: int) -> list[int]:
    return [batch, chs, *size] if size is not None else [batch, chs]


def _export(module: torch.nn.Module, shape: Sequence[int], path: Path, what: str) -> None:
    export_onnx(deploy(module.eval()), torch.randn(*shape), path, what)
    if _interrupt_requested:  # Ctrl-C, held while the exporter ran (it may catch the interrupt and try another way)
        raise KeyboardInterrupt


_interrupt_requested: list[bool] = []


@contextlib.contextmanager
def held_interrupt() -> Iterator[None]:
    """Ctrl-C is held while a file exports and raised as KeyboardInterrupt once it is written: torch's
    ONNX exporter can catch an interrupt that lands inside it and go on exporting another way."""
    _interrupt_requested.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _interrupt_requested.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupt_requested.clear()


def export_blocks(space_name: str, out: Path, settings: LatencySettings, validate: int = 0, seed: int = 0) -> dict[str, Any]:
    """Write the space's distinct blocks and its calibration networks as ONNX files, and the manifest;
    with ``validate``, that many random points of the space too (one seeded generator), whose
    times on the target ``import_table`` compares with the table's predictions."""
    space = Space(space_name)
    batch = settings.batch_size
    blocks = distinct_blocks(space, batch)
    try:
        (out / "blocks").mkdir(parents=True, exist_ok=True)
        (out / "networks").mkdir(parents=True, exist_ok=True)
    except OSError as e:  # out= names a file, or a folder no one may write in
        raise SpecError(f"out={out}: cannot make the export's folders there ({e.strerror or e})") from None
    entries = []
    for i, (key, (b, spec)) in enumerate(blocks.items()):
        file = f"blocks/{i:05d}.onnx"
        _export(BLOCKS.get(b.type)(b, block_context(spec)), _shape(b.in_chs, b.in_size, batch), out / file,
                f"block {b.name} ({b.type})")
        entries.append({"key": key, "file": file, "input_shape": _shape(b.in_chs, b.in_size, batch), "block": b.name})
        print(f"\rexported {i + 1} of {len(blocks)} blocks", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    networks = []
    rng = random.Random(seed)
    roles = [*((name, CALIBRATION, spec) for name, spec in
               zip(NETWORKS, (space.cheapest().spec, space.nearest_to_base().spec, space.dearest().spec))),
             *((f"validation_{i:03d}", VALIDATION, space.random(rng).spec) for i in range(validate))]
    for name, role, spec in roles:
        file = f"networks/{name}.onnx"
        shape = _shape(spec.in_chans, spec.input_size, batch)
        _export(build(spec), shape, out / file, f"the {name} network")
        networks.append({"name": name, "role": role, "file": file, "input_shape": shape,
                         "blocks": [table_key(b, spec.round_to, batch) for b in spec.blocks]})
    manifest = {"format": MANIFEST_FORMAT, "space": space.name, "space_digest": space.digest, "batch_size": batch,
                "protocol": {"warmup": settings.warmup, "repeats": settings.repeats,
                             "ort_optimization": settings.ort_optimization},
                "blocks": entries, "networks": networks}
    write_json(out / MANIFEST, manifest)
    return manifest


MAX_FILE_BYTES = 64 << 20  # a table or manifest of every block of a large space is a few MB
MAX_MS = 1e6  # a timing above 1,000 s is no block's or network's latency


def _ms(v: Any) -> bool:
    """A timing: a positive, finite number of milliseconds below ``MAX_MS`` (a 401-digit integer too)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < MAX_MS and is_finite(float(v))


def _read(path: Path, what: str) -> tuple[bytes, Any]:
    """A JSON file's bytes and data, read only where it is a regular file, and at most MAX_FILE_BYTES."""
    try:
        raw = read_regular(path, MAX_FILE_BYTES)
        return raw, json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise SpecError(f"{path}: cannot read it ({e.strerror}); expected {what}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SpecError(f"{path}: not {what} ({type(e).__name__}: {str(e)[:80]})") from None


def _check_manifest(manifest: Any, where: str) -> tuple[set[str], list[dict[str, Any]]]:
    """The manifest's block keys and networks, each network's blocks among those keys; SpecError otherwise."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise SpecError(f"{where}: not a block manifest of format {MANIFEST_FORMAT} (python -m archgen.target export)")
    batch = manifest.get("batch_size")
    if not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        raise SpecError(f"{where}: batch_size must be an integer >= 1, got {str(batch)[:40]!r}")
    blocks, networks = manifest.get("blocks"), manifest.get("networks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and isinstance(b.get("key"), str) for b in blocks):
        raise SpecError(f"{where}: 'blocks' must be a list of objects with a 'key' string")
    keys = {b["key"] for b in blocks}
    if not isinstance(networks, list):
        raise SpecError(f"{where}: 'networks' must be a list")
    for n, net in enumerate(networks):
        if not (isinstance(net, dict) and isinstance(net.get("name"), str) and isinstance(net.get("blocks"), list)
                and all(isinstance(k, str) and k in keys for k in net["blocks"])
                and net.get("role", CALIBRATION) in (CALIBRATION, VALIDATION)):
            raise SpecError(f"{where}: networks[{n}] must be {{name, blocks: keys of 'blocks', role: {CALIBRATION} or "
                            f"{VALIDATION}}}")
    return keys, networks


def _check_timings(table: dict[str, Any], keys: set[str], names: set[str], where: str) -> tuple[dict, dict]:
    """The table's block and network timings: those of the manifest, each a positive, finite number of ms."""
    blocks, networks = table.get("blocks"), table.get("networks")
    if not isinstance(blocks, dict) or not isinstance(networks, dict):
        raise SpecError(f"{where}: 'blocks' and 'networks' must map names to milliseconds")
    for section, timed, known in (("block", blocks, keys), ("network", networks, names)):
        foreign = next((k for k in timed if k not in known), None)
        if foreign is not None:
            raise SpecError(f"{where}: {section} {foreign[:80]!r} is not in the manifest")
        bad = next((k for k, v in timed.items() if not _ms(v)), None)
        if bad is not None:
            raise SpecError(f"{where}: {bad!r} is not a finite number of milliseconds in (0, {MAX_MS:g})")
    return {k: float(v) for k, v in blocks.items()}, {k: float(v) for k, v in networks.items()}


def _calibrated(blocks: dict[str, float], networks: dict[str, float], manifest_networks: list[dict[str, Any]],
                where: str) -> tuple[Calibration, list[tuple[float, float]]]:
    """The calibration over the timed calibration networks, and (predicted, measured) of the validation
    ones; a calibration that predicts a latency <= 0 or not finite for any network of the manifest is refused."""
    missing = [k for k in sorted({k for n in manifest_networks for k in n["blocks"]}) if k not in blocks]
    timed = [n for n in manifest_networks if n["name"] in networks and all(k in blocks for k in n["blocks"])]
    nets = [n for n in timed if n.get("role", CALIBRATION) == CALIBRATION]
    if not nets:
        raise SpecError(f"{where}: no calibration network was timed with all of its blocks")
    calibration = Calibration.fit([math.fsum(blocks[k] for k in n["blocks"]) for n in nets],
                                  [networks[n["name"]] for n in nets])
    for n in manifest_networks:
        if missing and any(k in missing for k in n["blocks"]):
            continue
        predicted = calibration.scale * math.fsum(blocks[k] for k in n["blocks"]) + calibration.overhead_ms
        if not (math.isfinite(predicted) and predicted > 0):
            raise SpecError(f"{where}: its timings calibrate to {calibration.scale:.4g} x blocks + "
                            f"{calibration.overhead_ms:.4g} ms, which predicts {predicted:.4g} ms for network "
                            f"{n['name']}: no table that predicts a latency <= 0 is installed")
    checks = [(calibration.scale * math.fsum(blocks[k] for k in n["blocks"]) + calibration.overhead_ms, networks[n["name"]])
              for n in timed if n.get("role") == VALIDATION]
    return calibration, checks


def import_table(table_file: Path, manifest_file: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Check a table ``ort_bench.py`` wrote against its manifest, fit the calibration, install it;
    the installed file's path (for ``latency.table=``)."""
    where = str(table_file)
    _, table = _read(Path(table_file), "a table ort_bench.py wrote")
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or not isinstance(table.get("device"), dict):
        raise SpecError(f"{where}: not a table ort_bench.py wrote (format {TABLE_FORMAT})")
    manifest_file = manifest_file or Path(table_file).with_name(MANIFEST)
    raw, manifest = _read(manifest_file, "its manifest (give manifest=)")
    if hashlib.sha256(raw).hexdigest()[:16] != table.get("manifest"):
        raise SpecError(f"{where}: timed from another export than {manifest_file} (the manifests differ)")
    keys, manifest_networks = _check_manifest(manifest, str(manifest_file))
    blocks, networks = _check_timings(table, keys, {n["name"] for n in manifest_networks}, where)
    missing = [k for k in (b["key"] for b in manifest["blocks"]) if k not in blocks]
    if missing:
        raise SpecError(f"{where}: {len(missing)} of the manifest's {len(manifest['blocks'])} blocks were not timed "
                        f"(first: {missing[0]})")
    calibration, checks = _calibrated(blocks, networks, manifest_networks, where)
    device = {k: str(v)[:200] for k, v in table["device"].items()}
    fingerprint = {"cpu": device.get("name", "unknown device"), "threads": table["device"].get("threads", 1),
                   "torch": "-", "device": f"target {device.get('system', '')} {device.get('machine', '')}".strip(),
                   "allocator": "-", "backend": "onnxruntime",
                   "runtime": f"onnxruntime {device.get('onnxruntime')} ({device.get('provider')}, optimisation "
                              f"{device.get('ort_optimization')}), timed by ort_bench.py",
                   "space": manifest.get("space"), "space_digest": manifest.get("space_digest")}
    doc = {"format": FORMAT, "fingerprint": fingerprint, "batch_size": manifest["batch_size"],
           "protocol": table.get("protocol"), "calibration": asdict(calibration), "entries": dict(sorted(blocks.items()))}
    if len(checks) >= 2:
        doc["validation"] = target_validation(checks)
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode() + raw).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "lut" / f"target-{digest}.json"
    try:
        write_atomic(path, json.dumps(doc, indent=1) + "\n")
    except OSError as e:
        raise SpecError(f"cache {path.parent.parent}: cannot install the table there ({e.strerror or e})") from None
    return path


def target_validation(checks: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """MAPE and Kendall's tau of (predicted, measured on the target) pairs, as ``archgen.validate``
    reports them for this machine's table."""
    predicted, measured = [p for p, _ in checks], [m for _, m in checks]
    return {"samples": len(checks),
            "mape": statistics.fmean(abs(p - m) / m for p, m in checks if m > 0),
            "kendall_tau": float(kendalltau(predicted, measured).statistic),
            "measured_ms": [min(measured), max(measured)]}


def validation_line(path: Path) -> str | None:
    """The installed table's validation on the target, in words (None when none was exported)."""
    v = json.loads(path.read_text()).get("validation")
    if not v:
        return None
    return (f"on the target: MAPE {100 * v['mape']:.1f} %, Kendall's tau {v['kendall_tau']:.3f} over {v['samples']} "
            f"random architectures ({v['measured_ms'][0]:.2f}-{v['measured_ms'][1]:.2f} ms measured)")


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"expected key=value, got {pair!r}")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m archgen.target export space=<name> out=<folder> [batch_size= warmup= repeats= validate= seed=]``
    and ``python -m archgen.target import <table.json> [manifest=<file>] [cache=<folder>]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m archgen.target"
    try:
        if args[:1] == ["export"]:
            opts = _settings(args[1:])
            unknown = set(opts) - {"space", "out", "batch_size", "warmup", "repeats", "ort_optimization", "validate", "seed"}
            if unknown or "space" not in opts or "out" not in opts:
                raise SpecError("export takes space=<name or file> out=<folder> [batch_size= warmup= repeats= "
                                "ort_optimization= validate= seed=]"
                                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""))
            counts = ("batch_size", "warmup", "repeats", "validate", "seed")
            ints = {k: int(opts[k]) for k in counts if k in opts and opts[k].isdigit()}
            bad = [k for k in counts if k in opts and k not in ints]
            if bad:
                raise SpecError(f"{bad[0]} must be an integer, got {opts[bad[0]]!r}")
            validate, seed = ints.pop("validate", DEFAULT_VALIDATE), ints.pop("seed", 0)
            if validate == 1:
                raise SpecError("validate must be 0 (none) or at least 2 architectures to rank, got 1")
            settings = LatencySettings(backend="onnxruntime", **ints,
                                       **({"ort_optimization": opts["ort_optimization"]} if "ort_optimization" in opts else {}))
            with held_interrupt():
                manifest = export_blocks(opts["space"], Path(opts["out"]), settings, validate, seed)
            print(f"wrote {len(manifest['blocks'])} blocks and {len(manifest['networks'])} networks of space "
                  f"{manifest['space']} to {opts['out']}; time them on the target: python ort_bench.py {opts['out']}")
        elif args[:1] == ["import"] and len(args) >= 2:
            opts = _settings(args[2:])
            unknown = set(opts) - {"manifest", "cache"}
            if unknown:
                raise SpecError(f"import takes <table.json> [manifest=<file>] [cache=<folder>]; unknown: {', '.join(sorted(unknown))}")
            path = import_table(Path(args[1]), Path(opts["manifest"]) if "manifest" in opts else None,
                                Path(opts["cache"]) if "cache" in opts else None)
            print(f"installed {path}; use it with latency=lut latency.backend=onnxruntime latency.table={path}")
            line = validation_line(path)
            if line is not None:
                print(line)
        else:
            raise SpecError("usage: export space=<name> out=<folder> | import <table.json> [manifest=<file>]")
    except SpecError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:  # a full disk: the manifest is written last, so an export without one is incomplete
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}; an export without manifest.json is incomplete: run it again",
              file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # files are written whole or not at all: nothing half-done is left
        print(f"\n{prog}: interrupted; nothing half-written was left (run it again to start over)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
