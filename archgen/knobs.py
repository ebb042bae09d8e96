"""What a search may change in a base network: the knobs of a search space, each one object.

A knob holds the values a space file may list for it and their order by cost (``rank``), what
a value does to a network, and which of its values is nearest to what the base has:

* a ``BlockKnob`` (``k``, ``exp``, ``se``, ``se_from``, ``stage_ch``, ``layer_per_block``,
  ``depthwise``) reads and sets its value on each block whose row has its field;
* a ``StageKnob`` (``depth``, ``width``: MnasNet's per-stage choices, Tan et al. 2019, Sec. 4)
  edits a stage's list of blocks as a whole;
* ``op`` chooses a layer's operation among named variants that a space file declares (its
  ``ops:``): each a set of block-knob values, or ``skip`` (the ``skip`` block type: the identity,
  a 1x1 projection where the layer strides or widens). FBNet's, ProxylessNAS's and
  NAS-Bench-Macro's per-layer choice with skip (Wu et al. 2019, Table 2; Su et al. 2021, Sec. 5).

``archgen.space`` makes the choices and re-chains the edited block list.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from .blocks import BLOCKS, PassThrough
from .checks import is_int, is_real
from .ir import BlockConfig
from .layers.helpers import make_divisible
from .layers.se import SE_FROM, SE_SETTINGS


def _positive(v: Any) -> bool:
    return is_real(v) and v > 0


@dataclass(frozen=True)
class Knob(ABC):
    """One thing a search may change: what a space file may list for it and how its values
    order by cost. A ``BlockKnob`` sets its value on each block it applies to; a ``StageKnob``
    edits a stage's list of blocks."""

    name: str
    doc: str
    row_fields: tuple[str, ...]  # the block's Row must have one of these for the knob to apply (none: any block)
    valid: Callable[[Any], bool]  # whether a space file may list the value
    expected: str  # the valid values, as a message says them
    scopes: tuple[str, ...] = ("per_stage", "per_block")
    rank: Callable[[Any], float] = float  # orders a knob's values from the least to the most costly

    def cheapest(self, values: list[Any]) -> Any:
        return min(values, key=self.rank)

    def applies(self, block: BlockConfig) -> bool:
        """Whether the knob changes ``block``: its type's row has one of the knob's fields."""
        return not self.row_fields or bool(_row_fields(block) & set(self.row_fields))

    @abstractmethod
    def nearest(self, blocks: Sequence[BlockConfig], values: list[Any]) -> Any:
        """The value nearest to what the base has, of a choice over the base's ``blocks`` (one
        block, or a stage's)."""


class BlockKnob(Knob):
    """A knob whose value is set on each block it applies to. By default the value is the
    block's arg of the knob's name (an OSA module's ``layer_per_block``, ``depthwise``)."""

    def get(self, b: BlockConfig) -> Any:
        """The block's current value, in the knob's terms."""
        return b.args[self.name]

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        """The block with ``value``; the channels a value gives are make_divisible(., round_to)."""
        return dataclasses.replace(b, args={**b.args, self.name: value})

    def measure(self, b: BlockConfig, value: Any) -> float:
        """How far apart values are on block ``b``: here, their rank."""
        return self.rank(value)

    def nearest(self, blocks: Sequence[BlockConfig], values: list[Any]) -> Any:
        """The value that measures nearest to the first applicable block's own, the dearer on a tie."""
        b = next(b for b in blocks if self.applies(b))
        here = self.measure(b, self.get(b))
        return min(values, key=lambda v: (abs(self.measure(b, v) - here), -self.measure(b, v)))


class Kernel(BlockKnob):
    """The depthwise (or main) kernel size."""

    def get(self, b: BlockConfig) -> Any:
        return b.kernel

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        return dataclasses.replace(b, kernel=value)


class Expansion(BlockKnob):
    """The hidden width as a ratio of the block's input (MobileNetV2's t)."""

    def get(self, b: BlockConfig) -> Any:
        return (b.exp or b.in_chs) / b.in_chs

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        return dataclasses.replace(b, exp=make_divisible(value * b.in_chs, round_to))


class SeRatio(BlockKnob):
    """Squeeze-and-excitation: true is the block type's own ratio (1/4 in MobileNetV3), false or 0 none."""

    def get(self, b: BlockConfig) -> Any:
        return b.se

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        row = dataclasses.fields(BLOCKS.get(b.type).Row)
        ratio = next(f.metadata["on"] for f in row if f.name == "se")
        se = (ratio if value else 0.0) if isinstance(value, bool) else float(value)
        # a block without SE carries no SE settings but those its type always writes (as a row's expansion)
        kept = getattr(BLOCKS.get(b.type), "se_always", ())
        args = b.args if se else {k: v for k, v in b.args.items() if k not in SE_SETTINGS or k in kept}
        return dataclasses.replace(b, se=se, args=args)

    def measure(self, b: BlockConfig, value: Any) -> float:
        return self.set(b, value, 1).se  # the ratio the value gives this block: true is its type's own


class SeFrom(BlockKnob):
    """The width an SE ratio is taken of; it sizes the SE that ``se`` gives, so it is set after it."""

    def get(self, b: BlockConfig) -> Any:
        return b.args.get("se_from", "exp")

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        if not b.se:  # nothing to size
            return b
        return dataclasses.replace(b, args={**b.args, "se_from": value} if value != "exp" else
                                   {k: v for k, v in b.args.items() if k != "se_from"})

    def nearest(self, blocks: Sequence[BlockConfig], values: list[Any]) -> Any:
        """The base's own where offered, else the first: the values have no order."""
        own = self.get(next(b for b in blocks if self.applies(b)))
        return own if own in values else values[0]


class HiddenRatio(BlockKnob):
    """An OSA module's hidden width (stage_ch) as a ratio of its own: a block is 1 of itself."""

    def get(self, b: BlockConfig) -> Any:
        return 1.0

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        return dataclasses.replace(b, exp=make_divisible((b.exp or b.out_chs) * value, round_to))


SKIP = "skip"  # the op that makes a layer the identity (``archgen.blocks.layers.Skip``)


@dataclass(frozen=True)
class Op(BlockKnob):
    """A layer's operation: one of the space's named ``ops``, each a mapping of block knobs to
    values set on the base's block, or ``skip``. The ops are listed from the cheapest to the
    dearest, which is their rank. ``KNOBS["op"]`` has no ops; a space binds its own (``with_ops``)."""

    ops: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def with_ops(self, ops: Mapping[str, Any]) -> Op:
        order = list(ops)
        return dataclasses.replace(self, ops=dict(ops), rank=lambda v: float(order.index(v)) if v in order else math.inf,
                                   valid=lambda v: v in order, expected=f"ops the space declares ({', '.join(order)})")

    def get(self, b: BlockConfig) -> Any:
        return next((name for name in self.ops if self.set(b, name, 1) == b), None)

    def set(self, b: BlockConfig, value: Any, round_to: int) -> BlockConfig:
        op = self.ops[value]
        if op == SKIP:
            return BlockConfig(type=SKIP, name=b.name, in_chs=b.in_chs, out_chs=b.out_chs, in_size=b.in_size,
                               out_size=b.out_size, stride=b.stride, source=b.source)
        for knob, v in op.items():
            b = KNOBS[knob].set(b, v, round_to)  # type: ignore[attr-defined]  # ops name block knobs only
        return b

    def nearest(self, blocks: Sequence[BlockConfig], values: list[Any]) -> Any:
        """The op that gives the base's block itself, else the dearest: the base is the space's largest point."""
        own = self.get(blocks[0])
        return own if own in values else max(values, key=self.rank)


class StageKnob(Knob):
    """A knob that changes a stage as a whole (MnasNet's per-stage depth and width): it edits the
    stage's list of blocks, before any block's own choices are made."""

    unchanged: ClassVar[Any]  # the value that leaves a stage as the base has it

    def choices(self, stage: list[BlockConfig], values: list[Any]) -> list[Any]:
        """The values ``stage`` can take of those the space lists."""
        return values

    @abstractmethod
    def edit(self, stage: list[BlockConfig], value: Any, round_to: int) -> list[BlockConfig]:
        """The stage's blocks with ``value``; the chain is derived again afterwards (``rechain``)."""

    def nearest(self, blocks: Sequence[BlockConfig], values: list[Any]) -> Any:
        here = self.rank(self.unchanged)
        return min(values, key=lambda v: (abs(self.rank(v) - here), -self.rank(v)))


class Depth(StageKnob):
    """Blocks added to the end of a stage (copies of its last, stride 1) or removed from it."""

    unchanged = 0

    def choices(self, stage: list[BlockConfig], values: list[Any]) -> list[Any]:
        """Removals stop at the stage's repeat blocks."""
        repeats = len(_repeat_tail(stage))
        return [d for d in values if d >= -repeats]

    def edit(self, stage: list[BlockConfig], value: Any, round_to: int) -> list[BlockConfig]:
        if value < 0:
            return stage[:value]
        last = stage[-1]
        return stage + [dataclasses.replace(last, stride=1, in_chs=last.out_chs) for _ in range(value)]


class Width(StageKnob):
    """Every block's output and hidden width times a ratio (blocks that keep their input's as they are)."""

    unchanged = 1.0

    def edit(self, stage: list[BlockConfig], value: Any, round_to: int) -> list[BlockConfig]:
        if value == 1:
            return stage
        out = []
        for b in stage:
            if not issubclass(BLOCKS.get(b.type), PassThrough):
                b = dataclasses.replace(
                    b,
                    out_chs=make_divisible(b.out_chs * value, round_to),
                    exp=make_divisible(b.exp * value, round_to) if b.exp else b.exp,
                )
            out.append(b)
        return out


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Kernel("k", "depthwise / main kernel size", ("k",), lambda v: is_int(v) and v > 0 and v % 2 == 1, "odd positive integers"),
        Expansion(
            "exp", "expansion ratio: hidden = make_divisible(ratio x input channels, round_to)", ("exp", "t"),
            _positive, "positive numbers",
        ),
        SeRatio(
            "se", "squeeze-and-excitation: false, true (the block type's ratio) or a ratio in [0, 1] (0: none)", ("se",),
            lambda v: isinstance(v, bool) or (is_real(v) and 0 <= v <= 1), "true, false or ratios in [0, 1] (0: no SE)",
        ),
        SeFrom(
            "se_from", "width an SE ratio is taken of: exp (the expanded width) or in (the block's input, EfficientNet's)",
            ("se_from",), lambda v: v in SE_FROM, f"one of {', '.join(SE_FROM)}", rank=lambda v: 0.0,
        ),
        HiddenRatio("stage_ch", "OSA hidden width as a ratio of the base's stage_ch", ("stage_ch",), _positive, "positive numbers"),
        BlockKnob("layer_per_block", "3x3 convs per OSA module", ("layer_per_block",), lambda v: is_int(v) and v > 0, "positive integers"),
        BlockKnob(
            "depthwise", "depthwise-separable OSA layers", ("depthwise",), lambda v: isinstance(v, bool), "true or false",
            rank=lambda v: 0.0 if v else 1.0,
        ),
        Op("op", "a layer's operation: one of the ops the space declares (block-knob values, or skip)", (),
           lambda v: isinstance(v, str), "names of the space's ops"),
        Width("width", "output width as a ratio of the base's", (), _positive, "positive numbers", scopes=("per_stage",)),
        Depth("depth", "blocks added to (+) or removed from (-) the end of the stage", (), is_int, "integers", scopes=("per_stage",)),
    )
}
# the order a stage's own knobs edit it (and are chosen in): depth first, so that the blocks it
# adds are widened with the others
STAGE_EDITS = ("depth", "width")


def _row_fields(block: BlockConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(BLOCKS.get(block.type).Row)}


def _repeat_tail(stage: list[BlockConfig]) -> list[BlockConfig]:
    """The stage's trailing repeats: stride-1 blocks of the last block's type whose width is
    unchanged, after the stage's first block of that type (the one that may stride or widen)."""
    tail: list[BlockConfig] = []
    for b in reversed(stage):
        if b.type != stage[-1].type or b.stride != 1 or b.in_chs != b.out_chs:
            break
        tail.append(b)
    if len(tail) == sum(b.type == stage[-1].type for b in stage):
        tail = tail[:-1]  # the stage keeps its first block of the type
    return tail
