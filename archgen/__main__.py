"""``python -m archgen``: build a spec, print its layer table, costs and latency, write the run's outputs.

    python -m archgen model=mbv3_large
    python -m archgen model=mbv2 model.width_mult=0.75 model.input_size=192
    python -m archgen model=mbv3_large latency.threads=4 deploy=true export=onnx
    python -m archgen model=mbv3_large latency=lut      # predicted per block by the lookup table
    python -m archgen spec=outputs/archgen/.../spec.yaml
    python -m archgen -m model=mbv1,mbv2,mbv3_large model.width_mult=0.5,1.0
    python -m archgen -m model=mbv2,mbv3_large width_mult=0.5,1.0   # a knob needs no model. before it
    python -m archgen model=mbv3_large bn.eps=1e-5     # the BatchNorm eps of a checkpoint trained with another

Bad input (a malformed spec, an unknown model, a module in ``imports`` that cannot be
imported, a latency setting out of range) prints one line and exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .builder import build
from .checks import load_settings
from .cli import (
    check_choices, hydra_command, import_user_modules, path_component, register_path_component,
)
from .cost import count
from .cost.latency import LatencySettings, measure
from .cost.memory import check_max_memory_gb, check_memory
from .cost.lut import open_table
from .deploy import deploy
from .errors import SpecError
from .export import EXPORT_FORMATS, export_model
from .report import latency_lines, layer_table, totals_line, write_run
from .spec import BN_KEYS, KNOBS, ModelSpec, load_spec
from .zoo import CONF_DIR, list_models

PROG = "archgen"


def resolve_spec(cfg: DictConfig, task_overrides: list[str], model_choice: str | None) -> ModelSpec:
    """The spec a run builds: ``spec=`` file with the ``model.<knob>=`` overrides, else the composed ``model``."""
    if cfg.get("spec"):
        # Only the knobs the command line set apply to the file; the rest of cfg.model is the default model's.
        named = {o.split("=", 1)[0].lstrip("+~").removeprefix("model.") for o in task_overrides}
        knobs = {k: cfg.model[k] for k in KNOBS if k in named}
        bn = {k: cfg.model.bn[k] for k in BN_KEYS if f"bn.{k}" in named}
        return load_spec(Path(str(cfg.spec)), bn=bn or None, **knobs)
    data = OmegaConf.to_container(cfg.model, resolve=True)
    source = str(CONF_DIR / "model" / f"{model_choice}.yaml") if model_choice else "model"
    return load_spec(data, source=source)  # type: ignore[arg-type]


def run(cfg: DictConfig, out_dir: Path, task_overrides: list[str], model_choice: str | None) -> dict[str, Any]:
    """Build, count, measure, print and write one run; raises SpecError for bad input.

    Every setting is checked before any work, and the run's files are written last, so a bad
    setting or a failed export leaves nothing behind.
    """
    settings = load_settings(LatencySettings, "latency", OmegaConf.to_container(cfg.latency))
    fmt = cfg.get("export")
    if fmt is not None and fmt not in EXPORT_FORMATS:
        raise SpecError(f"export must be one of: {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if cfg.measure:
        settings.check_device()
    max_memory_gb = check_max_memory_gb(cfg.get("max_memory_gb"))
    import_user_modules(cfg.get("imports"))
    spec = resolve_spec(cfg, task_overrides, model_choice)
    check_memory(spec, settings.batch_size, False, max_memory_gb, settings.device)
    cost = count(spec)
    measured = cfg.measure and settings.source == "measured"
    # the weights themselves only where something runs them: a count is taken on the meta device
    model = build(spec).eval() if measured or cfg.deploy or fmt is not None else None
    inference = deploy(model) if cfg.deploy and model is not None else None
    latency = measure(model, spec.in_chans, spec.input_size, settings) if measured else None
    deployed = measure(inference, spec.in_chans, spec.input_size, settings) if inference is not None and measured else None
    lut = open_table(settings, cfg.get("cache")).predict(spec) if cfg.measure and settings.source == "lut" else None
    if cfg.get("table", True):
        print(layer_table(spec, cost, lut))
    print(totals_line(spec, cost))
    for line in latency_lines(latency, deployed, lut):
        print(line)
    extra: dict[str, Any] = {}
    if latency is not None:
        extra["latency"] = latency.to_dict()
    if deployed is not None:
        extra["deploy_latency"] = deployed.to_dict()
    if lut is not None:
        extra["lut_latency"] = {"predicted_ms": lut.total_ms, "scale": lut.calibration.scale,
                                "overhead_ms": lut.overhead_ms, "blocks": dict(lut.blocks)}
    if fmt is not None:
        example = torch.randn(1, spec.in_chans, *spec.input_size)
        exported = export_model(inference if inference is not None else model, example, fmt, out_dir / f"model.{EXPORT_FORMATS[fmt]}")
        print(f"exported {exported.path.name} ({fmt}): max |logit diff| {exported.max_abs_diff:.2e} vs PyTorch")
        extra["export"] = {"format": fmt, "file": exported.path.name, "max_abs_diff": exported.max_abs_diff}
    summary = write_run(out_dir, spec, cost, extra)
    print(f"wrote {out_dir}")
    return summary


def _run_in_hydra(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """``run`` with what Hydra knows of the command line: the overrides given and the model chosen."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return run(cfg, out_dir, list(hc.overrides.task), hc.runtime.choices.get("model"))


def run_name(spec: str | None, model: str) -> str:
    """Run-directory suffix: the spec file's stem when ``spec=`` is given, else the model name."""
    return path_component(Path(spec).stem if spec else model)


def knob_overrides(argv: list[str]) -> list[str]:
    """The command line with ``width_mult=0.5`` read as ``model.width_mult=0.5`` (any knob): the
    knobs belong to the model, and a sweep over them reads best in the short form. ``bn.eps=1e-5``
    (or ``model.bn.eps=``) sets the spec's BatchNorm eps, also in a spec that states no ``bn``."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.removeprefix("model.") in {f"bn.{k}" for k in BN_KEYS}:
            out.append(f"++model.{key.removeprefix('model.')}={value}")
        else:
            out.append(f"model.{key}={value}" if eq and key in KNOBS else arg)
    return out


def main() -> None:
    sys.argv[1:] = knob_overrides(sys.argv[1:])
    check_choices(PROG, sys.argv[1:], "model", list_models(), " (or build a file with spec=path.yaml)")
    if not OmegaConf.has_resolver("archgen_run_name"):
        OmegaConf.register_new_resolver("archgen_run_name", run_name)
    register_path_component()
    hydra_command(PROG, "config", _run_in_hydra, lambda out_dir: f"nothing was written to {out_dir}")()


if __name__ == "__main__":
    main()
