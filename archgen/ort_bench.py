"""Time a folder of ONNX blocks on the target device and write archgen's latency table.

A single file that needs only ``onnxruntime`` and ``numpy``: copy it and the folder that
``python -m archgen.target export space=... out=blocks/`` wrote to the target (a phone's
Python, a board, a server without torch), then

    python ort_bench.py blocks/                      # writes blocks/table.json
    python ort_bench.py blocks/ --threads 4 --provider CUDAExecutionProvider --out table.json

and bring ``table.json`` back: ``python -m archgen.target import table.json``.

The protocol is archgen's (``archgen.cost.latency``, and ``archgen.cost.backends``, which takes
``LEVELS`` and ``session_options`` from this file): a session per file with ``--threads``
intra-op threads, one inter-op thread, sequential execution and the manifest's graph
optimisation level; a random float32 input of the manifest's shape; ``warmup`` untimed runs of
each; then ``repeats`` rounds that run every file once, in an order that rotates every round (so
that a device whose speed drifts moves them alike); the figure is the median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
TABLE_FORMAT = 1
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


class BenchError(Exception):
    """What is wrong with the folder or the device, in one line."""


def device_name() -> str:
    """The CPU's name where the system tells it, else the platform's."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown device"


MAX_MANIFEST_BYTES = 64 << 20  # a manifest of every block of a large space is a few MB
MAX_DIM = 1 << 16  # one side of an input shape
MAX_ELEMENTS = 1 << 28  # one input: 1 GiB of float32


def read_manifest(folder: str) -> dict:
    """The folder's manifest, checked whole before anything is timed (a missing key, a bad shape or
    a file outside the folder would otherwise fail after the timing, or time the wrong file)."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BenchError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, not a manifest")
        manifest = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{folder}: no {MANIFEST}; export the blocks with python -m archgen.target export") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BenchError(f"{path}: not a readable manifest ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BenchError(f"{path}: not an archgen block manifest of format {MANIFEST_FORMAT}")
    check_protocol(manifest.get("protocol", {}), path)
    for section, name in (("blocks", "key"), ("networks", "name")):
        items = manifest.get(section)
        if not isinstance(items, list):
            raise BenchError(f"{path}: '{section}' must be a list of {{file, input_shape, {name}, ...}}")
        for n, item in enumerate(items):
            check_item(item, f"{path}: {section}[{n}]", name, folder)
    return manifest


def _count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_protocol(protocol, path: str) -> None:
    """The manifest's protocol: warmup >= 0, repeats >= 1, one of the optimisation levels."""
    if not isinstance(protocol, dict):
        raise BenchError(f"{path}: 'protocol' must be an object, got {str(protocol)[:40]}")
    for field, minimum in (("warmup", 0), ("repeats", 1)):
        if field in protocol and not _count(protocol[field], minimum):
            raise BenchError(f"{path}: protocol.{field} must be an integer >= {minimum}, got {protocol[field]!r}")
    level = protocol.get("ort_optimization", "all")
    if level not in LEVELS:
        raise BenchError(f"{path}: protocol.ort_optimization must be one of {', '.join(LEVELS)}, got {level!r}")


def check_item(item, where: str, name: str, folder: str) -> None:
    """One block or network: its name, a file inside the folder, an input shape of positive sides."""
    if not isinstance(item, dict):
        raise BenchError(f"{where}: must be an object {{file, input_shape, {name}}}, got {str(item)[:40]}")
    missing = [k for k in ("file", "input_shape", name) if k not in item]
    if missing:
        raise BenchError(f"{where}: no {missing[0]!r}")
    if not isinstance(item[name], str) or not item[name]:
        raise BenchError(f"{where}: {name!r} must be a non-empty string, got {str(item[name])[:40]}")
    file = item["file"]
    root = os.path.realpath(folder)
    if not isinstance(file, str) or os.path.isabs(file) or \
            os.path.commonpath([root, os.path.realpath(os.path.join(folder, file))]) != root:
        raise BenchError(f"{where}: file {str(file)[:80]!r} must be a path inside {folder}")
    if not os.path.isfile(os.path.join(folder, file)):
        raise BenchError(f"{where}: file {file!r} is missing from {folder}")
    shape = item["input_shape"]
    if not (isinstance(shape, list) and 1 <= len(shape) <= 8 and all(_count(d, 1) and d <= MAX_DIM for d in shape)):
        raise BenchError(f"{where}: input_shape must be a list of 1-8 integers in [1, {MAX_DIM}], got {str(shape)[:60]}")
    elements = 1
    for d in shape:
        elements *= d
    if elements > MAX_ELEMENTS:
        raise BenchError(f"{where}: input_shape {shape} is {elements} elements, more than {MAX_ELEMENTS}")


def session_options(ort, threads: int, level: str):
    """The protocol's session options (archgen's backend uses these too): ``threads`` intra-op
    threads, one inter-op thread, sequential execution, graph optimisation ``level``, errors only."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.log_severity_level = 3
    return options


def session(ort, file: str, threads: int, level: str, provider: str):
    return ort.InferenceSession(file, session_options(ort, threads, level), providers=[provider])


def bench(folder: str, threads: int, provider: str, warmup: int | None, repeats: int | None) -> dict:
    """The table: every block's and network's median latency (ms) on this device."""
    import numpy as np
    import onnxruntime as ort

    manifest = read_manifest(folder)
    if provider not in ort.get_available_providers():
        raise BenchError(f"this onnxruntime has no {provider} (it has {', '.join(ort.get_available_providers())})")
    protocol = manifest.get("protocol", {})
    warmup = protocol.get("warmup", 10) if warmup is None else warmup
    repeats = protocol.get("repeats", 50) if repeats is None else repeats
    level = protocol.get("ort_optimization", "all")
    items = [("blocks", i) for i in manifest["blocks"]] + [("networks", i) for i in manifest["networks"]]
    rng = np.random.default_rng(0)
    runs = []
    for _, item in items:
        s = session(ort, os.path.join(folder, item["file"]), threads, level, provider)
        feed = {s.get_inputs()[0].name: rng.standard_normal(item["input_shape"]).astype(np.float32)}
        runs.append((s, feed))
    for s, feed in runs:
        for _ in range(warmup):
            s.run(None, feed)
    times: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    for r in range(repeats):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            s, feed = runs[i]
            t0 = time.perf_counter_ns()
            s.run(None, feed)
            times[i].append((time.perf_counter_ns() - t0) / 1e6)
    table: dict = {"format": TABLE_FORMAT, "manifest": manifest_digest(folder), "space": manifest.get("space"),
                   "space_digest": manifest.get("space_digest"), "batch_size": manifest.get("batch_size"),
                   "device": {"name": device_name(), "machine": platform.machine(), "system": platform.system(),
                              "onnxruntime": ort.__version__, "provider": provider, "threads": threads,
                              "ort_optimization": level},
                   "protocol": {"warmup": warmup, "repeats": repeats, "statistic": "median"},
                   "blocks": {}, "networks": {}}
    for (section, item), t in zip(items, times):
        key = item["key"] if section == "blocks" else item["name"]
        table[section][key] = statistics.median(t)
    return table


def manifest_digest(folder: str) -> str:
    with open(os.path.join(folder, MANIFEST), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ort_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the folder python -m archgen.target export wrote")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--provider", default="CPUExecutionProvider", help="execution provider")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs of each file (default: the manifest's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: the manifest's)")
    parser.add_argument("--out", default=None, help="the table's path (default: <folder>/table.json)")
    args = parser.parse_args(argv)
    for flag, minimum in (("threads", 1), ("warmup", 0), ("repeats", 1)):
        value = getattr(args, flag)
        if value is not None and value < minimum:
            parser.error(f"--{flag} must be >= {minimum}, got {value}")
    out = args.out or os.path.join(args.folder, "table.json")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        print(f"ort_bench.py: error: --out {out}: no folder {os.path.dirname(os.path.abspath(out))} to write it in",
              file=sys.stderr)
        return 2
    try:
        table = bench(args.folder, args.threads, args.provider, args.warmup, args.repeats)
    except BenchError as e:
        print(f"ort_bench.py: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"ort_bench.py: error: needs onnxruntime and numpy ({e})", file=sys.stderr)
        return 2
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
        os.replace(tmp, out)  # a table appears whole or not at all
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        print(f"ort_bench.py: error: cannot write {out} ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"timed {len(table['blocks'])} blocks and {len(table['networks'])} networks on {table['device']['name']}, "
          f"{args.provider}, {args.threads} thread(s); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
