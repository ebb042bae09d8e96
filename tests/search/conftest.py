"""A small, fast search setup: a MobileNetV3-Small space at 64x64, NASWOT on a slice of digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from archgen.zoo import CONF_DIR

SPACE = {
    "base": "mbv3_small",
    "knobs": {"input_size": 64},
    "stages": [2, 3],
    "per_block": {"k": [3, 5], "se": [False, True]},
}


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def fast_overrides(space: Path, tmp_path: Path, *extra: str) -> list[str]:
    """Overrides that make a search take seconds: naswot, a slice of digits, few timed runs."""
    return [
        f"space={space}", "evaluator=naswot", "naswot.batch_size=32", "data.limit=200", "latency.repeats=3",
        "latency.warmup=1", "progress=false", f"storage=sqlite:///{tmp_path / 'studies.db'}", "budget_ms=50", *extra,
    ]


@pytest.fixture
def compose_search(tmp_path: Path) -> Callable[..., DictConfig]:
    """The search's Hydra config composed in-process, as ``python -m search`` would."""

    def go(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("search", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    return go


def run_search(compose_search: Callable[..., DictConfig], out_dir: Path, *overrides: str) -> dict[str, Any]:
    from search.__main__ import run

    return run(compose_search(*overrides), out_dir)
