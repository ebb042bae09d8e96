"""Where the model zoo lives: ``conf/model/<name>.yaml``, one file per paper table.

``conf/`` sits beside the package in the repository, which an editable install
(``pip install -e .``) keeps in place.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SpecError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MODEL_DIR = CONF_DIR / "model"


def list_models() -> list[str]:
    """Names of the zoo's specs (``conf/model/*.yaml``), sorted."""
    if not MODEL_DIR.is_dir():
        raise SpecError(f"the zoo is missing: no {MODEL_DIR}; install archgen from its repository with pip install -e .")
    return sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))


def model_path(name: str) -> Path:
    """The spec file of a zoo model."""
    return MODEL_DIR / f"{name}.yaml"
