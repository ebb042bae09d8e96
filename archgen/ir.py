"""The one intermediate representation: a flat list of concrete block configs.

A spec's table rows expand into ``BlockConfig`` objects (``archgen.spec``); the builder,
the cost model and the search all read this list and nothing re-derives it. Every field is
concrete: channels are already width-scaled and rounded, repeats already unrolled, and each
block knows the feature-map size it receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

Size = Optional[Tuple[int, int]]  # (H, W) of a feature map; None once the tensor is a flat vector

# The expanded form's key for each of BlockConfig's own fields, in the order ``to_dict`` writes
# them (a spec's ``blocks`` list, a run's spec.yaml); every other key of a block is one of its
# ``args``, so no block type may name an arg after one of these.
BLOCK_KEYS: Mapping[str, str] = {
    "name": "name",
    "type": "type",
    "in": "in_chs",
    "out": "out_chs",
    "size": "in_size",
    "s": "stride",
    "k": "kernel",
    "exp": "exp",
    "nl": "act",
    "se": "se",
}
REQUIRED_BLOCK_KEYS = ("name", "type", "in", "out")  # the others have BlockConfig's defaults


@dataclass(frozen=True)
class BlockConfig:
    """One block of a network, as concrete as the module built from it."""

    type: str  # registry name of the block type (``archgen.BLOCKS``)
    name: str  # module path in the built model: "stem.0", "stages.2.1", "head.3"
    in_chs: int  # input channels (features, for a flat vector)
    out_chs: int  # output channels (features, for a flat vector)
    in_size: Size  # input (H, W); None for a flat vector
    out_size: Size  # output (H, W); None for a flat vector
    stride: int = 1  # total stride of the block
    kernel: Optional[int] = None  # main spatial kernel (the depthwise kernel of an inverted residual)
    exp: Optional[int] = None  # hidden width: expansion channels, OSA stage_ch, bottleneck width
    se: float = 0.0  # squeeze-and-excitation ratio of the hidden width; 0 means no SE
    act: Optional[str] = None  # activation name (``archgen.ACTIVATIONS``)
    args: Mapping[str, Any] = field(default_factory=dict)  # remaining type-specific settings
    source: str = ""  # where the block came from, for messages: "body row 3"

    @property
    def section(self) -> str:
        """"stem", "stages" or "head"."""
        return self.name.split(".", 1)[0]

    @property
    def stage(self) -> Optional[int]:
        """Stage index for body blocks, None for stem and head blocks."""
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "stages" else None

    def to_dict(self) -> dict[str, Any]:
        """The block as YAML-ready data: the expanded-spec form read back by ``from_dict``.
        A key the block has no value for is left out (no size: a flat input; se 0: no SE)."""
        d: dict[str, Any] = {}
        for key, attr in BLOCK_KEYS.items():
            value = getattr(self, attr)
            if value is not None and (key != "se" or value):
                d[key] = list(value) if isinstance(value, tuple) else value
        d.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in self.args.items()})
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> "BlockConfig":
        """A block read back from ``to_dict``'s form (the caller has checked its values). Its
        ``out_size`` is None until a chain walk (``archgen.blocks.base.Chain``) derives it."""
        own = {attr: data[key] for key, attr in BLOCK_KEYS.items() if key in data}
        size = own.get("in_size")
        own.update(in_size=tuple(size) if size is not None else None, se=float(own.get("se", 0.0)))
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k not in BLOCK_KEYS}
        return cls(**own, out_size=None, args=args, source=source)

    def key(self) -> str:
        """A string that spells the block fully (type, shapes and settings), for caches and lookup tables."""
        size = "x".join(map(str, self.in_size)) if self.in_size else "flat"
        parts = [self.type, f"in:{size}x{self.in_chs}", f"out:{self.out_chs}", f"s:{self.stride}"]
        for key, value in (("k", self.kernel), ("exp", self.exp), ("se", self.se or None), ("nl", self.act)):
            if value is not None:
                parts.append(f"{key}:{value}")
        parts += [f"{k}:{v}" for k, v in sorted(self.args.items())]
        return "-".join(parts)


def fmt_shape(chs: int, size: Size) -> str:
    """"16x112x112" for a feature map, "960" for a flat vector."""
    return f"{chs}x{size[0]}x{size[1]}" if size is not None else str(chs)
