"""How fast does the evaluator train, and do channels-last or ``torch.compile`` speed it up here?

``python -m search.throughput`` times the training step (forward, loss, backward, optimiser) of
``network`` at the data's resolution, with ``train.*``'s batch size, optimiser, device, precision and
threads, in several variants:

* ``eager``: the evaluator as it runs by default;
* ``channels_last``: weights and batches in NHWC memory format (cuDNN's tensor-core kernels
  want it; on a CPU oneDNN may or may not be faster);
* ``compile`` / ``compile_channels_last``: the model through ``torch.compile`` (TorchInductor).

Variants are timed side by side: each round times every variant for ``steps`` steps, and the
figure is the median round, so a machine that slows down mid-run slows every variant alike.
The correctness steps below run first and are timed apart: they hold ``torch.compile``'s
compilation, which a search pays again for every new architecture.

Before timing, each variant trains ``check_steps`` steps from the same weights on the same
batches as ``eager``. Another memory layout, or fused kernels, sum in another order, so the
losses agree to rounding, not bit for bit; BatchNorm over small batches and maps amplifies
rounding, and SGD on small batches compounds it step by step. So the figures are set beside
those of eager itself with another thread count (on the CPU): rounding alone. A variant
computes the same training when its first loss (the same weights, the same batch) and its
largest difference over all the steps are within ``AGREE`` times those of rounding alone (on a
GPU, without that reference, when its first loss is within 1e-3). A variant is worth making
the default only if it is faster *and* computes the same training.

Writes ``throughput.md`` and ``throughput.json`` in the run directory.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from archgen import SpecError, build, load_spec
from archgen.checks import is_int
from archgen.checks import load_settings
from archgen.cli import hydra_command
from archgen.fileio import write_atomic, write_json
from archgen.report import markdown_table

from .data import DataSettings, load_data
from .evaluators.train import TrainSettings, optimizer_for
from .device import Runtime

PROG = "search.throughput"
VARIANTS = {"eager": (False, False), "channels_last": (True, False), "compile": (False, True),
            "compile_channels_last": (True, True)}  # name -> (channels-last, compiled)
QUICK = {"steps": 3, "rounds": 2, "warmup": 1, "check_steps": 2}
AGREE = 2.0  # a variant's loss differences may be this many times those of rounding alone


@dataclass
class Variant:
    name: str
    runtime: Runtime
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    seconds: list[float]


def _make(name: str, spec: Any, base: Runtime, settings: TrainSettings, initial: dict[str, torch.Tensor]) -> Variant:
    channels_last, compiled = VARIANTS[name]
    runtime = replace(base, channels_last=channels_last)
    model = runtime.model(build(spec))
    model.load_state_dict(initial)
    model.train()
    forward = torch.compile(model) if compiled else model
    optimizer = optimizer_for(model, settings)
    scaler = runtime.scaler()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with runtime.autocast():
            loss = F.cross_entropy(forward(runtime.inputs(x)).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return Variant(name, runtime, step, [])


def _sync(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


def measure(cfg: DictConfig) -> dict[str, Any]:
    top = {k: cfg[k] for k in ("steps", "rounds", "warmup", "check_steps")}
    if cfg.quick:
        top.update(QUICK)
    for key, value in top.items():
        if not (is_int(value) and value >= (0 if key == "warmup" else 1)):
            raise SpecError(f"{key} must be an integer >= {0 if key == 'warmup' else 1}, got {value!r}")
    variants = list(cfg.variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SpecError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}" if unknown else "variants is empty")
    if variants[0] != "eager":
        variants = ["eager", *[v for v in variants if v != "eager"]]  # the reference every other is compared with
    settings = load_settings(TrainSettings, "train", OmegaConf.to_container(cfg.train, resolve=True))  # type: ignore[arg-type]
    data = load_data(load_settings(DataSettings, "data", OmegaConf.to_container(cfg.data, resolve=True)))  # type: ignore[arg-type]
    spec = load_spec(str(cfg.network), num_classes=data.num_classes, in_chans=data.in_chans, input_size=(data.size, data.size))
    base = settings.runtime()
    on_device = data.to(base.device)
    bs = settings.batch_size
    batches = list(on_device.batches("train", on_device.sequential("train", bs, full=True)[:64], base.pin))
    if not batches:
        raise SpecError(f"train.batch_size={bs} is more than the {len(data.train_y)} images of data {data.name}")

    with base.seeded(settings.seed):
        initial = {k: v.clone() for k, v in build(spec).state_dict().items()}
        # correctness: every variant from the same weights on the same batches
        check_seconds: dict[str, float] = {}

        def trajectory(name: str, runtime: Runtime) -> list[float]:
            begin = time.perf_counter()
            v = _make(name, spec, runtime, settings, initial)
            losses = [v.step(*batches[i % len(batches)]).item() for i in range(top["check_steps"])]
            check_seconds[name] = time.perf_counter() - begin
            return losses

        def diff(a: float, b: float) -> float:
            return abs(a - b) / max(abs(b), 1e-12)

        losses = {name: trajectory(name, base) for name in variants}
        first = {n: diff(losses[n][0], losses["eager"][0]) for n in variants}
        drift = {n: max(diff(a, b) for a, b in zip(losses[n], losses["eager"])) for n in variants}
        rounding: tuple[float, float] | None = None
        if base.device.type == "cpu":  # eager itself with another thread count: rounding alone
            other = replace(base, threads=2 if base.threads == 1 else 1)
            seconds = check_seconds["eager"]
            with other.seeded(settings.seed):
                again = trajectory("eager", other)
            check_seconds["eager"] = seconds
            rounding = (diff(again[0], losses["eager"][0]), max(diff(a, b) for a, b in zip(again, losses["eager"])))

        def same(name: str) -> bool:
            if rounding is None:
                return first[name] <= 1e-3
            return first[name] <= AGREE * rounding[0] + 1e-7 and drift[name] <= AGREE * rounding[1] + 1e-7
        # speed: fresh copies, warmed up (compiled), then timed in interleaved rounds
        timed = [_make(name, spec, base, settings, initial) for name in variants]
        started = time.perf_counter()
        for v in timed:
            for i in range(top["warmup"]):
                v.step(*batches[i % len(batches)])
            _sync(v.runtime)
        for _ in range(top["rounds"]):
            for v in timed:
                begin = time.perf_counter()
                for i in range(top["steps"]):
                    v.step(*batches[i % len(batches)])
                _sync(v.runtime)
                v.seconds.append(time.perf_counter() - begin)
    images = top["steps"] * bs
    rate = {v.name: images / statistics.median(v.seconds) for v in timed}
    rows = [{"variant": v.name, "images_per_s": rate[v.name], "speedup": rate[v.name] / rate["eager"],
             "check_s": check_seconds[v.name], "first_loss_diff": first[v.name], "loss_drift": drift[v.name],
             "agrees": same(v.name)} for v in timed]
    return {"model": str(cfg.network), "data": f"{data.name} {data.in_chans}x{data.size}x{data.size}", "batch_size": bs,
            "runtime": base.describe(), "steps": top["steps"], "rounds": top["rounds"], "warmup": top["warmup"],
            "check_steps": top["check_steps"], "rounding": rounding, "seconds": time.perf_counter() - started,
            "rows": rows}


def report(result: dict[str, Any]) -> str:
    rounding = result["rounding"]
    lines = [f"# Training throughput: {result['model']} on {result['data']}, batch {result['batch_size']}", "",
             f"{result['runtime']}; {result['steps']} steps x {result['rounds']} interleaved rounds per variant "
             f"(median round), after {result['warmup']} warm-up steps; before them, {result['check_steps']} steps "
             "of each from the same weights and batches (compilation included) compare the losses.", ""]
    lines.append(markdown_table(("variant", "images/s", "x eager", f"first {result['check_steps']} steps (s)",
                                 "first loss: rel. diff", f"largest rel. diff, {result['check_steps']} steps", "same training"), [
        (r["variant"], f"{r['images_per_s']:.0f}", f"{r['speedup']:.2f}", f"{r['check_s']:.1f}", f"{r['first_loss_diff']:.1e}",
         f"{r['loss_drift']:.1e}", "yes" if r["agrees"] else "**no**") for r in result["rows"]]))
    if rounding is not None:
        lines += ["", f"Rounding alone (eager with another thread count): first loss {rounding[0]:.1e}, largest "
                      f"{rounding[1]:.1e}; a variant is the same training within {AGREE:g}x those."]
    return "\n".join(lines)


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Time the variants, then write throughput.md and throughput.json."""
    result = measure(cfg)
    text = report(result)
    write_atomic(out_dir / "throughput.md", text + "\n")
    write_json(out_dir / "throughput.json", result)
    print(text)
    print(f"took {result['seconds']:.0f} s; wrote {out_dir}", file=sys.stderr)
    return result


def main() -> None:
    hydra_command(PROG, "throughput", run, lambda out_dir: f"nothing was written to {out_dir}")()


if __name__ == "__main__":
    main()
