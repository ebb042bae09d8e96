"""MobileNet blocks.

* ``ds``: MobileNetV1's depthwise-separable convolution (Howard et al. 2017, Table 1 rows
  "Conv dw / s" + "Conv 1x1"), columns ``c n s``.
* ``ir``: MobileNetV2's inverted residual bottleneck (Sandler et al. 2018, Table 2),
  columns ``t c n s``: expansion ratio, output channels, repeats, stride.
* ``bneck``: MobileNetV3's bneck (Howard et al. 2019, Tables 1 and 2), columns
  ``k exp c se nl s``: kernel, expansion size, output channels, SE, nonlinearity, stride.

``ir`` and ``bneck`` build the same module; they differ in how the paper's table states the
expansion (a ratio of the input vs. an absolute width).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from ..layers.helpers import make_divisible
from ..layers.se import SqueezeExcite
from .base import Block, Expander, SequentialBlock, register_block


@register_block("ds")
class DepthwiseSeparable(SequentialBlock):
    """Depthwise k x k conv -> BN -> act, then pointwise 1x1 conv -> BN -> act (MobileNetV1)."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels of the pointwise conv")
        n: int = rows.repeats()
        s: int = rows.stride("stride of the depthwise conv of the first repeat")
        k: int = rows.kernel("depthwise kernel size", 3)
        nl: str = rows.activation("activation after both convs", "relu")

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        k = cfg.kernel or 3
        self.dw = ConvNormAct(cfg.in_chs, cfg.in_chs, k, cfg.stride, ctx, groups=cfg.in_chs, act=cfg.act)
        self.pw = ConvNormAct(cfg.in_chs, cfg.out_chs, 1, 1, ctx, act=cfg.act)


class InvertedResidual(Block):
    """1x1 expand (``layers.pw``) -> depthwise k x k (``layers.dw``) -> [SE] (``layers.se``) ->
    1x1 linear projection (``layers.pwl``), plus the identity when the shapes allow.

    The expand conv is left out when the expansion width equals the input width (the first
    MobileNetV2 row, t = 1; MobileNetV3's first bneck). SE acts on the expanded channels
    with ``make_divisible(exp * se, round_to)`` squeeze channels (MobileNetV3 Sec. 5.3).
    """

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        exp, k, act = cfg.exp or cfg.in_chs, cfg.kernel or 3, cfg.act
        self.use_res = cfg.stride == 1 and cfg.in_chs == cfg.out_chs
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if exp != cfg.in_chs:
            layers["pw"] = ConvNormAct(cfg.in_chs, exp, 1, 1, ctx, act=act)
        layers["dw"] = ConvNormAct(exp, exp, k, cfg.stride, ctx, groups=exp, act=act)
        if cfg.se:
            squeeze = make_divisible(exp * cfg.se, ctx.round_to)
            layers["se"] = SqueezeExcite(exp, squeeze, cfg.args.get("se_act", "relu"), cfg.args.get("se_gate", "hsigmoid"))
        layers["pwl"] = ConvNormAct(exp, cfg.out_chs, 1, 1, ctx)
        self.layers = nn.Sequential(layers)  # one Sequential, as torchvision's InvertedResidual.block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        if self.use_res:
            y += x  # in place: y is the projection's fresh output (torchvision does the same)
        return y


@register_block("ir")
class MBv2Bottleneck(InvertedResidual):
    """MobileNetV2 bottleneck row: hidden width round(t * input channels) for every repeat."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        t: float = rows.number("expansion factor (hidden = t x input channels)", high=64.0)
        c: int = rows.channels("output channels")
        n: int = rows.repeats()
        s: int = rows.stride()
        k: int = rows.kernel("depthwise kernel size", 3)
        se: float = rows.se("squeeze-and-excitation on the hidden channels", 0.0)
        nl: str = rows.activation("nonlinearity", "relu6")

    @classmethod
    def expand(cls, row: "MBv2Bottleneck.Row", ex: Expander) -> None:
        out = ex.channels(row.c)
        for i in range(ex.repeats(row.n)):
            exp = int(round(ex.chs * row.t))  # torchvision: int(round(inp * expand_ratio)), not rounded to 8
            if exp < 1:
                raise SpecError(f"{ex.where} (ir): field 't' must give at least 1 hidden channel, got {row.t!r} x {ex.chs} channels")
            ex.emit(cls.type_name, out, stride=row.s if i == 0 else 1, kernel=row.k, exp=exp, se=row.se, act=row.nl)


@register_block("bneck")
class MBv3Bneck(InvertedResidual):
    """MobileNetV3 bneck row: one block with an absolute, width-scaled expansion size."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        k: int = rows.kernel("depthwise kernel size")
        exp: int = rows.channels("expansion size (channels of the depthwise conv)")
        c: int = rows.channels("output channels")
        se: float = rows.se("squeeze-and-excite: true means squeeze = make_divisible(exp / 4)")
        nl: str = rows.activation("nonlinearity: RE (ReLU) or HS (h-swish)")
        s: int = rows.stride("stride of the depthwise conv")
        se_act: str = rows.activation("activation inside the SE", "relu")
        se_gate: Optional[str] = rows.activation("gate of the SE", "hsigmoid")
