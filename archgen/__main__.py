"""``python -m archgen``: build a spec, print its layer table and costs, write the run's outputs.

    python -m archgen model=mbv3_large
    python -m archgen model=mbv2 model.width_mult=0.75 model.input_size=192
    python -m archgen spec=outputs/archgen/.../spec.yaml
    python -m archgen -m model=mbv1,mbv2,mbv3_large model.width_mult=0.5,1.0

Bad input (a malformed spec, an unknown model, a module in ``imports`` that cannot be
imported) prints one line and exits with status 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig, OmegaConf

from .cost import count
from .errors import SpecError
from .report import layer_table, totals_line, write_run
from .spec import KNOBS, ModelSpec, load_spec
from .zoo import CONF_DIR, list_models

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    print(f"archgen: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def import_user_modules(modules: Any) -> None:
    """Import the modules the command line names in ``imports=`` (they register block types)."""
    for name in modules or []:
        try:
            importlib.import_module(str(name))
        except ImportError as e:
            raise SpecError(f"imports: cannot import {name!r} ({e})") from None


def resolve_spec(cfg: DictConfig, task_overrides: list[str], model_choice: str | None) -> ModelSpec:
    """The spec a run builds: ``spec=`` file with the ``model.<knob>=`` overrides, else the composed ``model``."""
    if cfg.get("spec"):
        # Only the knobs the command line set apply to the file; the rest of cfg.model is the default model's.
        named = {o.split("=", 1)[0].lstrip("+~").removeprefix("model.") for o in task_overrides}
        knobs = {k: cfg.model[k] for k in KNOBS if k in named}
        return load_spec(Path(str(cfg.spec)), **knobs)
    data = OmegaConf.to_container(cfg.model, resolve=True)
    source = str(CONF_DIR / "model" / f"{model_choice}.yaml") if model_choice else "model"
    return load_spec(data, source=source)  # type: ignore[arg-type]


def run(cfg: DictConfig, out_dir: Path, task_overrides: list[str], model_choice: str | None) -> dict[str, Any]:
    """Build, count, print and write one run; raises SpecError for bad input."""
    import_user_modules(cfg.get("imports"))
    spec = resolve_spec(cfg, task_overrides, model_choice)
    cost = count(spec)
    if cfg.get("table", True):
        print(layer_table(spec, cost))
    print(totals_line(spec, cost))
    summary = write_run(out_dir, spec, cost)
    print(f"wrote {out_dir}")
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    try:
        run(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), hc.runtime.choices.get("model"))
    except SpecError as e:
        fail(str(e))


def check_model_overrides(argv: list[str]) -> None:
    """Reject ``model=<unknown>`` before Hydra does, with the zoo listed and exit status 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # a malformed override: Hydra reports it with its own message
        return
    zoo = list_models()
    for o in overrides:
        if o.key_or_group != "model" or o.package is not None:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for v in values:
            if v not in zoo:
                fail(f"unknown model {v!r}; the zoo has: {', '.join(zoo)} (or build a file with spec=path.yaml)")


def run_name(spec: str | None, model: str) -> str:
    """Run-directory suffix: the spec file's stem when ``spec=`` is given, else the model name."""
    return Path(spec).stem if spec else model


def main() -> None:
    check_model_overrides(sys.argv[1:])
    if not OmegaConf.has_resolver("archgen_run_name"):
        OmegaConf.register_new_resolver("archgen_run_name", run_name)
    _hydra_main()


if __name__ == "__main__":
    main()
