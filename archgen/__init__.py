"""archgen: CNNs written as their papers' tables, built by one builder, costed and searched.

    >>> import archgen
    >>> model = archgen.create_model("mbv3_large", width_mult=0.75)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .blocks import BLOCKS, Block, RowType, register_block
from .builder import ArchNet, build
from .cost import count
from .deploy import deploy
from .errors import SpecError
from .export import export_model
from .ir import BlockConfig
from .layers import ACTIVATIONS, make_divisible
from .spec import KNOBS, ModelSpec, load_spec
from .weights import load_reference_weights
from .zoo import list_models


def create_model(
    name_or_path: str | Path | Mapping[str, Any],
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides: Any,
) -> ArchNet:
    """Load a spec (zoo name, file or mapping), apply knob overrides and build it."""
    return build(load_spec(name_or_path, **overrides), features_only=features_only, out_indices=out_indices)


__all__ = [
    "ACTIVATIONS",
    "ArchNet",
    "BLOCKS",
    "Block",
    "BlockConfig",
    "KNOBS",
    "ModelSpec",
    "RowType",
    "SpecError",
    "build",
    "count",
    "create_model",
    "deploy",
    "export_model",
    "list_models",
    "load_reference_weights",
    "load_spec",
    "make_divisible",
    "register_block",
]
