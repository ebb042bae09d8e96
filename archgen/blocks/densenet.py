"""DenseNet blocks (Huang et al. 2017, "Densely Connected Convolutional Networks", Table 1).

* ``dense``: a "Dense Block (i)" row, "[1x1 conv; 3x3 conv] x n". It expands to ``n`` dense
  layers, one block each; a layer's output is its input with ``growth_rate`` new channels
  concatenated (the paper's k), so its ``out_chs`` is ``in_chs + growth_rate``.
* ``transition``: a "Transition Layer (i)" row: BN, ReLU, 1x1 conv to
  floor(in x compression) channels (the paper's theta), 2x2 average pool with stride 2.

Layers use the pre-activation composite function BN-ReLU-Conv (Sec. 3) with the
bottleneck of DenseNet-B: the 1x1 conv makes ``bn_size`` x k channels. Module names and
registration order are torchvision's ``_DenseLayer`` and ``_Transition``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig, Size
from ..layers.activations import make_act
from ..layers.context import BuildContext
from .base import Block, Expander, SequentialBlock, conv_out, register_block

_BN_SIZE = 4  # DenseNet-B's bottleneck: the 1x1 conv makes 4k channels (Sec. 3)


@register_block("dense")
class DenseLayer(Block):
    """BN -> act -> 1x1 conv to bn_size x k -> BN -> act -> 3x3 conv to k; output cat([x, new])."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        n: int = rows.repeats("number of dense layers in the block")
        growth_rate: int = rows.channels("growth rate k: channels each layer adds")
        bn_size: int = rows.integer("bottleneck width as a multiple of k (the 1x1 conv makes bn_size x k)", _BN_SIZE)
        nl: str = rows.activation("activation after each BN", "relu")

    @classmethod
    def expand(cls, row: "DenseLayer.Row", ex: Expander) -> None:
        k = ex.channels(row.growth_rate)
        for _ in range(ex.repeats(row.n)):
            ex.emit(cls.type_name, ex.chs + k, kernel=3, exp=row.bn_size * k, act=row.nl)

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        return in_chs + cfg.out_chs - cfg.in_chs  # the input, plus growth_rate new channels

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        growth = cfg.out_chs - cfg.in_chs
        if growth < 1:  # only a hand-written expanded spec can get here
            raise SpecError(
                f"{cfg.source}: a dense layer outputs its input plus the new channels: "
                f"'out' ({cfg.out_chs}) must exceed 'in' ({cfg.in_chs})"
            )
        width, k = cfg.exp or _BN_SIZE * growth, cfg.kernel or 3
        self.norm1 = ctx.norm(cfg.in_chs)
        self.relu1 = make_act(cfg.act)
        self.conv1 = nn.Conv2d(cfg.in_chs, width, 1, bias=False)
        self.norm2 = ctx.norm(width)
        self.relu2 = make_act(cfg.act)
        self.conv2 = nn.Conv2d(width, growth, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], 1)


@register_block("transition")
class Transition(SequentialBlock):
    """BN -> act -> 1x1 conv to floor(in x compression) -> 2x2 average pool, stride 2."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        compression: float = rows.number("compression theta: output channels = floor(theta x input channels)")
        nl: str = rows.activation("activation after the BN", "relu")

    @classmethod
    def expand(cls, row: "Transition.Row", ex: Expander) -> None:
        out = cls.output_chs_of(row.compression, ex.chs)
        if out < 1:
            raise SpecError(
                f"{ex.where} (transition): field 'compression' {row.compression:g} leaves no channel "
                f"of the {ex.chs} input channels"
            )
        ex.emit(cls.type_name, out, stride=2, act=row.nl, compression=row.compression)

    @staticmethod
    def output_chs_of(compression: float, in_chs: int) -> int:
        # Exact decimal arithmetic: floor(0.29 * 100) must be 29, not the float product's 28.
        return int(Fraction(repr(compression)) * in_chs)

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        return cls.output_chs_of(cfg.args["compression"], in_chs)

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        assert cfg.in_size is not None
        return tuple(conv_out(x, 2, cfg.stride, 0) for x in cfg.in_size)  # type: ignore[return-value]

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.norm = ctx.norm(cfg.in_chs)
        self.relu = make_act(cfg.act)
        self.conv = nn.Conv2d(cfg.in_chs, cfg.out_chs, 1, bias=False)
        self.pool = nn.AvgPool2d(2, cfg.stride)


__all__ = ["DenseLayer", "Transition"]
