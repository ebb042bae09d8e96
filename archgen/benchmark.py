"""Benchmark: archgen's MobileNets against the reference implementations, side by side.

Builds mbv3_large, mbv2 and mbv3_small, loads the matching torchvision model's weights into
each (the same arithmetic on the same numbers), and times, interleaved in one process: the
reference, archgen's training form and archgen's inference form (``archgen.deploy``) in eager
PyTorch; the reference exported by ``torch.onnx.export`` and archgen's export (of its inference
form, ``latency.backend=onnxruntime``) in ONNX Runtime; and ``torch.compile`` of the reference
and of archgen's inference form. One thread, batch 1, 224x224, eval mode, with the latency
protocol's ``time_runs`` (every round runs each candidate once, in an order that rotates every
round, so that a slow phase of a shared machine hits all of them). The ratio of a round is
ours / the reference in the same runtime within that round; the figure is the median ratio
over the rounds.

    python -m archgen.benchmark                  # 300 rounds
    python -m archgen.benchmark --rounds 1000 --threads 4 --runtimes eager onnxruntime

Goals: training form <= 1.02 x the reference, inference form <= 0.80 x, and in ONNX Runtime
archgen's export <= 1.00 x the reference's.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from typing import Callable

import torch
import torchvision.models as tvm
from torch import nn

from .builder import build
from .cost.backends import prepare
from .cost.latency import LatencySettings, describe, fingerprint, intra_op_threads, time_runs
from .spec import load_spec
from .weights import load_reference_weights

REFERENCES: dict[str, Callable[[], nn.Module]] = {
    "mbv3_large": tvm.mobilenet_v3_large,
    "mbv2": tvm.mobilenet_v2,
    "mbv3_small": tvm.mobilenet_v3_small,
}
# candidate -> (the reference it is compared with, the goal of the median ratio; None: shown, no goal)
COMPARISONS: dict[str, tuple[str, float | None]] = {
    "eager": ("reference", 1.02), "deploy": ("reference", 0.80),
    "ort": ("reference_ort", 1.00), "compile": ("reference_compile", None),
}
RUNTIMES = {"eager": ("reference", "eager", "deploy"), "onnxruntime": ("reference_ort", "ort"),
            "compile": ("reference_compile", "compile")}
GOALS = {k: goal for k, (_, goal) in COMPARISONS.items() if goal is not None}


def candidates(name: str, runtimes: tuple[str, ...], threads: int, size: int = 224) -> dict[str, functools.partial]:
    """The runs to time: the reference and archgen's forms of ``name`` in each runtime, same weights."""
    reference = REFERENCES[name]().eval()
    ours = build(load_spec(name, input_size=size)).eval()
    load_reference_weights(ours, reference.state_dict())
    x = torch.randn(1, 3, size, size)
    runs = {}
    if "eager" in runtimes:
        runs |= {"reference": functools.partial(reference, x), "eager": functools.partial(ours, x),
                 "deploy": prepare(ours, x, "deployed", "cpu", threads)}
    if "onnxruntime" in runtimes:  # the reference as torch.onnx.export writes it; ours as archgen exports it
        runs |= {"reference_ort": prepare(reference, x, "onnxruntime", "cpu", threads, raw=True),
                 "ort": prepare(ours, x, "onnxruntime", "cpu", threads)}
    if "compile" in runtimes:
        runs |= {"reference_compile": functools.partial(torch.compile(reference), x),
                 "compile": prepare(ours, x, "compile", "cpu", threads)}
    return runs


def benchmark(name: str, rounds: int, warmup: int, runtimes: tuple[str, ...] = tuple(RUNTIMES),
              threads: int = 1) -> dict[str, float]:
    """Median latency (ms) of every candidate, and the median per-round ratio of each of ours to its reference."""
    runs = candidates(name, runtimes, threads)
    settings = LatencySettings(threads=threads, warmup=warmup, repeats=rounds)
    times = dict(zip(runs, time_runs(list(runs.values()), settings)))
    result = {f"{k}_ms": statistics.median(v) for k, v in times.items()}
    for key, (against, _) in COMPARISONS.items():
        if key in times:
            result[f"{key}_ratio"] = statistics.median(a / b for a, b in zip(times[key], times[against]))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m archgen.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds (each runs every candidate once)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs of each candidate first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (torch's, ONNX Runtime's)")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    args = parser.parse_args(argv)
    for flag, minimum in (("rounds", 1), ("warmup", 0), ("threads", 1)):
        if getattr(args, flag) < minimum:
            parser.error(f"--{flag} must be >= {minimum}, got {getattr(args, flag)}")
    settings = LatencySettings(threads=args.threads)
    runtimes = tuple(args.runtimes)
    shown = [k for r in runtimes for k in RUNTIMES[r]]
    labels = {"reference": "reference", "eager": "ours", "deploy": "ours, deployed", "reference_ort": "reference, ORT",
              "ort": "ours, ORT", "reference_compile": "reference, compile", "compile": "ours deployed, compile"}
    print(f"batch 1, 224x224, {args.rounds} interleaved rounds on {describe(fingerprint(settings))}; "
          "ratios: ours / the reference in the same runtime")
    header = f"{'model':<11}" + "".join(f" {labels[k]:>{max(len(labels[k]), 9)}}" + (f" {'ratio':>6}" if k in COMPARISONS else "")
                                        for k in shown)
    print(header)
    print("-" * len(header))
    met = True
    with intra_op_threads(args.threads):
        for name in args.models:
            r = benchmark(name, args.rounds, args.warmup, runtimes, args.threads)
            ok = all(r[f"{k}_ratio"] <= goal for k, goal in GOALS.items() if f"{k}_ratio" in r)
            met &= ok
            cells = "".join(f" {r[f'{k}_ms']:>{max(len(labels[k]), 9) - 3}.2f} ms"
                            + (f" {r[f'{k}_ratio']:>6.3f}" if k in COMPARISONS else "") for k in shown)
            print(f"{name:<11}{cells}" + ("" if ok else "  (goal missed)"), flush=True)
    goals = ", ".join(f"{labels[k]} <= {goal} x {labels[COMPARISONS[k][0]]}" for k, goal in GOALS.items()
                      if any(k in RUNTIMES[r] for r in runtimes))
    print(f"goals: {goals}: {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
