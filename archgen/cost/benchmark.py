"""Benchmark: archgen's MobileNets against the reference implementations, side by side.

Builds mbv3_large, mbv2 and mbv3_small, loads the matching torchvision model's weights into
each (the same arithmetic on the same numbers), and times, interleaved in one process, the
reference, archgen's training form and archgen's inference form (``archgen.deploy``): one
thread, batch 1, 224x224, eval mode, ``torch.inference_mode``, with the latency protocol's
``time_runs`` (every round runs each candidate once, in an order that reverses every round,
so that a slow phase of a shared machine hits all of them). The ratio of a round is ours /
reference within that round; the figure is the median ratio over the rounds.

    python -m archgen.cost.benchmark                  # 300 rounds
    python -m archgen.cost.benchmark --rounds 1000 --threads 4

Goals: training form <= 1.02 x the reference, inference form <= 0.90 x.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from typing import Callable

import torch
import torchvision.models as tvm
from torch import nn

from ..builder import build
from ..deploy import deploy
from ..spec import load_spec
from ..weights import load_reference_weights
from .latency import LatencySettings, describe, fingerprint, intra_op_threads, time_runs

REFERENCES: dict[str, Callable[[], nn.Module]] = {
    "mbv3_large": tvm.mobilenet_v3_large,
    "mbv2": tvm.mobilenet_v2,
    "mbv3_small": tvm.mobilenet_v3_small,
}
GOALS = {"eager": 1.02, "deploy": 0.90}


def benchmark(name: str, rounds: int, warmup: int, size: int = 224) -> dict[str, float]:
    """Median latency (ms) of the reference, ours and ours deployed, and the median per-round ratios."""
    reference = REFERENCES[name]().eval()
    ours = build(load_spec(name, input_size=size)).eval()
    load_reference_weights(ours, reference.state_dict())
    candidates = {"reference": reference, "eager": ours, "deploy": deploy(ours)}
    x = torch.randn(1, 3, size, size)
    settings = LatencySettings(threads=torch.get_num_threads(), warmup=warmup, repeats=rounds)
    runs = time_runs([functools.partial(m, x) for m in candidates.values()], settings)
    times = dict(zip(candidates, runs))
    result = {f"{k}_ms": statistics.median(v) for k, v in times.items()}
    for key in GOALS:
        result[f"{key}_ratio"] = statistics.median(a / b for a, b in zip(times[key], times["reference"]))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m archgen.cost.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds (each runs every candidate once)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs of each candidate first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    for flag, minimum in (("rounds", 1), ("warmup", 0), ("threads", 1)):
        if getattr(args, flag) < minimum:
            parser.error(f"--{flag} must be >= {minimum}, got {getattr(args, flag)}")
    settings = LatencySettings(threads=args.threads)
    print(f"batch 1, 224x224, {args.rounds} interleaved rounds on {describe(fingerprint(settings))}")
    header = f"{'model':<11} {'reference':>10} {'ours':>9} {'ratio':>6} {'ours, deployed':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    met = True
    with intra_op_threads(args.threads):
        for name in args.models:
            r = benchmark(name, args.rounds, args.warmup)
            ok = all(r[f"{k}_ratio"] <= goal for k, goal in GOALS.items())
            met &= ok
            print(
                f"{name:<11} {r['reference_ms']:>7.2f} ms {r['eager_ms']:>6.2f} ms {r['eager_ratio']:>6.3f} "
                f"{r['deploy_ms']:>12.2f} ms {r['deploy_ratio']:>6.3f}" + ("" if ok else "  (goal missed)"),
                flush=True,
            )
    print(f"goals: ours <= {GOALS['eager']} x reference, deployed <= {GOALS['deploy']} x reference: {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
