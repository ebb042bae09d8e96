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
Before timing, each variant trains ``check_steps`` steps from the same weights on the same
batches as ``eager``; the largest relative difference of the losses says whether it computes
the same training (another memory layout, or fused kernels, sum in another order, so the
losses agree to rounding, not bit for bit). A variant is worth making the default only if it is
faster *and* agrees.

Writes ``throughput.md`` and ``throughput.json`` in the run directory.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from archgen import SpecError, build, load_spec
from archgen.cli import load_settings, run_app
from archgen.fileio import write_atomic, write_json
from archgen.report import markdown_table
from archgen.zoo import CONF_DIR

from .data import DataSettings, is_int, load_data
from .evaluate import TrainSettings, optimizer_for
from .device import Runtime

PROG = "search.throughput"
VARIANTS = {"eager": (False, False), "channels_last": (True, False), "compile": (False, True),
            "compile_channels_last": (True, True)}  # name -> (channels-last, compiled)
QUICK = {"steps": 3, "rounds": 2, "warmup": 1, "check_steps": 2}
AGREE = 1e-2  # largest relative loss difference over the check steps that still counts as the same training


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
        losses: dict[str, list[float]] = {}
        for name in variants:
            v = _make(name, spec, base, settings, initial)
            losses[name] = [v.step(*batches[i % len(batches)]).item() for i in range(top["check_steps"])]
        agree = {n: max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses[n], losses["eager"])) for n in variants}
        # speed: fresh copies, warmed up, then timed in interleaved rounds
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
             "loss_rel_diff": agree[v.name], "agrees": agree[v.name] <= AGREE} for v in timed]
    return {"model": str(cfg.network), "data": f"{data.name} {data.in_chans}x{data.size}x{data.size}", "batch_size": bs,
            "runtime": base.describe(), "steps": top["steps"], "rounds": top["rounds"], "check_steps": top["check_steps"],
            "seconds": time.perf_counter() - started, "rows": rows}


def report(result: dict[str, Any]) -> str:
    lines = [f"# Training throughput: {result['model']} on {result['data']}, batch {result['batch_size']}", "",
             f"{result['runtime']}; {result['steps']} steps x {result['rounds']} interleaved rounds per variant "
             f"(median round); agreement over {result['check_steps']} steps from the same weights and batches.", ""]
    lines.append(markdown_table(("variant", "images/s", "x eager", "max rel. loss diff", f"agrees (<= {AGREE:g})"), [
        (r["variant"], f"{r['images_per_s']:.0f}", f"{r['speedup']:.2f}", f"{r['loss_rel_diff']:.1e}",
         "yes" if r["agrees"] else "**no**") for r in result["rows"]]))
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="throughput", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)

    def body() -> None:
        result = measure(cfg)
        text = report(result)
        write_atomic(out_dir / "throughput.md", text + "\n")
        write_json(out_dir / "throughput.json", result)
        print(text)
        print(f"took {result['seconds']:.0f} s; wrote {out_dir}", file=sys.stderr)

    run_app(PROG, body, f"nothing was written to {out_dir}")


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
