"""The contract every block type meets, the registry that holds them, the chain walk and the expander.

A block type is a class registered by the name specs use (``@register_block("bneck")``).
It declares its table row as ``Row`` (a keyword-only dataclass built from
``archgen.rows`` field helpers) and

* ``expand(row, ex)``: turns one validated row into concrete blocks with ``ex.emit(...)``;
  the default repeats the block ``n`` times (depth-scaled) with stride ``s`` on the first;
* ``output_size(cfg)``: the output (H, W) for a block config, without building anything;
* ``output_chs(cfg, in_chs)``: the output channels when fed another input width (default:
  the config's own ``out_chs``; ``PassThrough`` blocks keep their input's);
* ``__init__(cfg, ctx)``: builds the module from a ``BlockConfig`` and a ``BuildContext``.

``RowType`` entries (no module) only expand into other registered blocks, e.g. a VGG stage
row into convolutions and a max-pool.

``Chain`` feeds a block list through that contract (each block its predecessor's output, checked
against ``input`` and sized with ``output_size``); the expander is one such walk, over a table's
rows, and the expanded-form loader and ``spec.rechain`` are the others.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Mapping, Optional

from torch import nn

from ..errors import SpecError
from ..ir import BLOCK_KEYS, BlockConfig, Size, fmt_shape
from ..layers.context import ROUND_TO, BuildContext
from ..layers.helpers import make_divisible
from ..limits import MAX_BLOCKS, MAX_CHANNELS
from ..registry import Registry
from ..rows import NUM_CLASSES

BLOCKS: Registry[type] = Registry(
    "block type",
    hint="; a block type of your own: imports=[my_pkg.blocks], or import its module before load_spec",
)

# Row fields the default expansion maps onto BlockConfig's own fields; the rest go to ``args``.
_STANDARD_FIELDS = ("c", "n", "s", "k", "exp", "se", "nl")


def conv_out(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch's formula)."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch drops a last window that would start in the right padding
    return out


class RowType:
    """A table row type: a ``Row`` schema and an ``expand`` that emits registered blocks."""

    # How a row's fields read off one of the blocks it gives (archgen.table_form writes a searched
    # network back into its table): field -> "out" (output channels), "exp" (hidden channels),
    # "exp/in" or "out/in" (those as a ratio of the input), "kernel", "se" (the ratio and, with SE,
    # its settings) or "arg" (the block's arg of that name). None: a type keeping RowType.expand
    # reads c, k, exp and se; any other such type's rows cannot be written from their blocks.
    table_fields: ClassVar[Optional[Mapping[str, str]]] = None

    Row: ClassVar[type]
    type_name: ClassVar[str] = ""
    input: ClassVar[str] = "map"  # what the block takes: "map" (N,C,H,W), "flat" (N,C) or "any"

    @classmethod
    def expand(cls, row: Any, ex: "Expander") -> None:
        """Emit the blocks of one row. Default: ``n`` repeats of this type, stride ``s`` first."""
        fields = {f.name for f in dataclasses.fields(row)}
        n = ex.repeats(row.n) if "n" in fields else 1
        out = ex.channels(row.c)
        args = {f: getattr(row, f) for f in fields if f not in _STANDARD_FIELDS}
        for i in range(n):
            ex.emit(
                cls.type_name,
                out,
                stride=getattr(row, "s", 1) if i == 0 else 1,
                kernel=getattr(row, "k", None),
                exp=ex.channels(row.exp) if "exp" in fields and row.exp is not None else None,
                se=getattr(row, "se", 0.0),
                act=getattr(row, "nl", None),
                **args,
            )


class Block(RowType, nn.Module):
    """A registered block type that is also the module built from its configs."""

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__()

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        """Output (H, W). Default: a convolution with kernel ``k``, stride ``s`` and padding ``p``
        (default k // 2, which keeps the size at stride 1)."""
        assert cfg.in_size is not None
        k = cfg.kernel or 1
        p = cfg.args.get("p", (k - 1) // 2)
        return tuple(conv_out(x, k, cfg.stride, p) for x in cfg.in_size)  # type: ignore[return-value]

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        """Output channels when the block is fed ``in_chs`` channels instead of ``cfg.in_chs``
        (a search changed an earlier block's width). Default: the block sets its own width."""
        return cfg.out_chs


class SequentialBlock(Block, nn.Sequential):
    """A block that is a chain: its forward runs its submodules in the order they were assigned
    (``nn.Sequential.forward``), without a ``__getattr__`` per submodule on the hot path."""


class PassThrough(Block):
    """A block whose output has its input's channels (pools, dropout, norms)."""

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        return in_chs


def register_block(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: make a ``Block`` (or ``RowType``) subclass available to specs as ``name``."""

    def wrong(cls: Any) -> str | None:
        if not (isinstance(cls, type) and issubclass(cls, RowType)):
            return f"register_block({name!r}) expects a subclass of archgen.Block or archgen.RowType"
        if not dataclasses.is_dataclass(getattr(cls, "Row", None)):
            return f"block type {name!r} must declare its table row as a dataclass named Row"
        return None

    return BLOCKS.decorator(name, wrong, "type_name", aliases)


@dataclasses.dataclass
class Knobs:
    """The model-wide settings every spec takes (from the file, the CLI or the Python API)."""

    num_classes: int = 1000  # classes of the classifier
    in_chans: int = 3  # input image channels
    input_size: tuple[int, int] = (224, 224)  # input (H, W)
    width_mult: float = 1.0  # channel multiplier (make_divisible-rounded)
    depth_mult: float = 1.0  # repeat multiplier for rows with an ``n`` column (ceil)
    dropout: float = 0.0  # rate of dropout rows that give no ``p``
    round_to: int = ROUND_TO  # make_divisible divisor for width-scaled channels


class Chain:
    """A network's blocks fed one after another: each takes the previous one's output, its
    channels and its (H, W) or a flat vector.

    ``feed`` checks that a block's type takes what it gets (``RowType.input``), sizes its output
    with the type's ``output_size`` and refuses a feature map that reaches zero. The refusals
    name a block as the expanded form does (``blocks[i] (name, type)``); the ``Expander``, which
    walks a table's rows, overrides them to name the row and the stage.
    """

    def __init__(self, in_chans: int, input_size: Size) -> None:
        self.input_size = input_size  # the network's input (H, W)
        self.chs = in_chans  # what the next block gets: channels (features, once flat)
        self.size: Size = input_size  # and its (H, W); None once flat

    def feed(self, cfg: BlockConfig, where: str) -> BlockConfig:
        """``cfg`` given the chain's output as its input and its own ``out_size``; the chain's
        output is then the block's. ``where`` names the block in a refusal."""
        cls = BLOCKS.get(cfg.type)
        if cls.input == "map" and self.size is None:
            raise SpecError(self.needs_map(where))
        if cls.input == "flat" and self.size is not None:
            raise SpecError(self.needs_flat(where))
        cfg = dataclasses.replace(cfg, in_chs=self.chs, in_size=self.size)
        out_size = cls.output_size(cfg) if self.size is not None else None
        if out_size is not None and min(out_size) < 1:
            raise SpecError(self.reaches_zero(where, cfg))
        self.chs, self.size = cfg.out_chs, out_size
        return dataclasses.replace(cfg, out_size=out_size)

    def needs_map(self, where: str) -> str:
        return f"{where}: needs a feature map but gets a flat vector"

    def needs_flat(self, where: str) -> str:
        return f"{where}: needs a flat vector but gets a feature map"

    def reaches_zero(self, where: str, cfg: BlockConfig) -> str:
        return f"{where}: input_size {self.input_size} is too small: the feature map reaches zero here"


class Expander(Chain):
    """Walks a spec's rows in order and collects the concrete ``BlockConfig`` list.

    It feeds each block the running channel count and feature-map size (a ``Chain``), applies
    width and depth multipliers in one place, and names each block after its place in the
    module tree.
    """

    def __init__(self, knobs: Knobs, source: str) -> None:
        super().__init__(knobs.in_chans, knobs.input_size)
        self.knobs = knobs
        self.source = source
        self.blocks: list[BlockConfig] = []
        self.where = source
        self.used_repeats = False
        self._section = "stem"
        self._stage = -1
        self._row_blocks: list[BlockConfig] = []
        self._row_opens_stage = False
        self._stride = 1
        self._named: dict[str, int] = {}  # "stages.3" / "head" -> its blocks so far

    # -- values ---------------------------------------------------------------
    def channels(self, c: Any, scale: str = "width") -> int:
        """A row's channel count after the width multiplier (``num_classes`` is never scaled)."""
        if c == NUM_CLASSES:
            return self.knobs.num_classes
        mult = {"width": self.knobs.width_mult, "up": max(1.0, self.knobs.width_mult), "fixed": 1.0}[scale]
        if mult == 1.0:
            return int(c)
        return make_divisible(c * mult, self.knobs.round_to)

    def repeats(self, n: int) -> int:
        """A row's repeat count after the depth multiplier (rounded up, as EfficientNet does)."""
        self.used_repeats = True
        return max(1, math.ceil(n * self.knobs.depth_mult))

    # -- rows -----------------------------------------------------------------
    def begin_row(self, section: str, where: str) -> None:
        self._section = section
        self.where = where
        self._row_blocks = []
        self._row_opens_stage = section == "stages" and self._stage < 0

    def end_row(self) -> None:
        if self._row_opens_stage:
            self._stage += 1
        if not self._row_blocks:
            raise SpecError(f"{self.where}: the row expands to no block")
        prefix = f"stages.{self._stage}" if self._section == "stages" else self._section
        done = self._named.get(prefix, 0)  # blocks of this stage (or section) so far
        named = [dataclasses.replace(b, name=f"{prefix}.{done + i}") for i, b in enumerate(self._row_blocks)]
        self._named[prefix] = done + len(named)
        self.blocks.extend(named)

    def emit(
        self,
        type_name: str,
        out_chs: int,
        *,
        stride: int = 1,
        kernel: Optional[int] = None,
        exp: Optional[int] = None,
        se: float = 0.0,
        act: Optional[str] = None,
        **args: Any,
    ) -> BlockConfig:
        """Append one concrete block to the current row; checks that the input suits it."""
        try:
            cls = BLOCKS.get(type_name)
        except SpecError as e:
            raise SpecError(f"{self.where}: {e}") from None
        if not issubclass(cls, Block):
            raise SpecError(f"{self.where}: {type_name!r} is a row type, not a block that can be built")
        desc = f"{self.where} ({type_name})"
        clash = sorted(set(args) & set(BLOCK_KEYS))
        if clash:  # a programming error of the block type: BlockConfig.to_dict writes these keys itself
            raise TypeError(f"{type_name}: block arg {clash[0]!r} collides with a key of the expanded form")
        for what, value in (("output channels", out_chs), ("expansion channels (exp)", exp)):
            if value is not None and value < 1:
                raise SpecError(f"{desc}: the row gives {value} {what}; a block needs at least 1")
            if value is not None and value > MAX_CHANNELS:
                raise SpecError(f"{desc}: the row gives {value} {what} (after width_mult {self.knobs.width_mult:g}), "
                                f"over the limit of {MAX_CHANNELS}")
        if len(self.blocks) + len(self._row_blocks) >= MAX_BLOCKS:
            raise SpecError(f"{desc}: the network has more than {MAX_BLOCKS} blocks (after depth_mult "
                            f"{self.knobs.depth_mult:g}), over the limit")
        if self._section == "stages" and stride > 1:  # before the feed: a refusal names the stage it opens
            self._row_opens_stage = True
        cfg = BlockConfig(
            type=type_name,
            name="",
            in_chs=self.chs,
            out_chs=out_chs,
            in_size=self.size,
            out_size=None,
            stride=stride,
            kernel=kernel,
            exp=exp,
            se=se,
            act=act,
            args=args,
            source=self.where,
        )
        cfg = self.feed(cfg, desc)
        self._stride *= stride
        self._row_blocks.append(cfg)
        return cfg

    # -- refusals, naming the table row and the stage -------------------------------------
    def needs_map(self, where: str) -> str:
        return (f"{where}: needs a feature map but gets a flat vector of {self.chs} features; "
                "it must come before the global_pool/flatten row")

    def needs_flat(self, where: str) -> str:
        return f"{where}: needs a flat vector; add a global_pool or flatten row before it"

    def reaches_zero(self, where: str, cfg: BlockConfig) -> str:
        h, w = self.knobs.input_size
        stage = self._stage + (1 if self._row_opens_stage and self._section == "stages" else 0)
        at = f"stage {stage}" if self._section == "stages" else self._section
        return (
            f"{self.source}: input_size {h}x{w} is too small: the feature map reaches zero at {at}, "
            f"{where.removeprefix(self.source + ': ')}, which gets {fmt_shape(cfg.in_chs, cfg.in_size)} "
            f"(total stride so far {self._stride}, this block's stride {cfg.stride}, kernel {cfg.kernel})"
        )
