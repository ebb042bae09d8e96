"""MobileNet blocks, and the MnasNet and EfficientNet rows written with them.

* ``ds``: MobileNetV1's depthwise-separable convolution (Howard et al. 2017, Table 1 rows
  "Conv dw / s" + "Conv 1x1"), columns ``c n s``; with ``pw_act: false`` and an optional SE
  it is MnasNet's SepConv (Tan et al. 2019, Fig. 7; timm's ``DepthwiseSeparableConv``).
* ``ir``: MobileNetV2's inverted residual bottleneck (Sandler et al. 2018, Table 2),
  columns ``t c n s``: expansion ratio, output channels, repeats, stride; also MnasNet's and
  EfficientNet's MBConv rows (EfficientNet-B0: Tan & Le 2019, Table 1, ``t k c n s``).
* ``bneck``: MobileNetV3's bneck (Howard et al. 2019, Tables 1 and 2), columns
  ``k exp c se nl s``: kernel, expansion size, output channels, SE, nonlinearity, stride.

``ir`` and ``bneck`` build the same module; they differ in how the paper's table states the
expansion (a ratio of the input vs. an absolute width). Every type takes the same SE settings
(``se``, ``se_from``, ``se_round_to``, ``se_act``, ``se_gate``); a setting left at its default
is not written into the block's ``args``, nor is any on a block without SE, so the shipped
specs' expanded forms (and the latency-table keys made from them) are what they were before
the settings existed.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from ..layers.se import SE_FROM, SE_SETTINGS, SqueezeExcite, squeeze_channels
from .base import Block, Expander, SequentialBlock, register_block


def _se_from() -> Any:
    return rows.choice(
        "width the SE ratio is taken of: exp (the expanded width, MobileNetV3) or in (the block's input, "
        "EfficientNet, MnasNet)", SE_FROM, "exp",
    )


def _se_round_to() -> Any:
    return rows.integer("divisor of the SE squeeze width, make_divisible(base x se, .) (default: the spec's round_to)", None)


def _se_act() -> Any:
    return rows.activation("activation inside the SE", "relu")


def _se_gate() -> Any:
    return rows.activation("gate of the SE", "hsigmoid")


def _se_args(row: Any, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row's SE settings as block args: those in ``always``, and, where the row has an SE,
    those off their default (a block without SE carries no settings of one)."""
    defaults = {f.name: f.default for f in dataclasses.fields(row)}
    return {k: getattr(row, k) for k in SE_SETTINGS if k in always or (row.se and getattr(row, k) != defaults[k])}


def _make_se(cfg: BlockConfig, chs: int, ctx: BuildContext) -> SqueezeExcite:
    """The SE of a block acting on ``chs`` (its expanded) channels, from the block's settings."""
    a = cfg.args
    squeeze = squeeze_channels(cfg.se, cfg.in_chs, chs, a.get("se_from", "exp"), a.get("se_round_to") or ctx.round_to,
                               cfg.source)
    return SqueezeExcite(chs, squeeze, a.get("se_act", "relu"), a.get("se_gate", "hsigmoid"))


@register_block("ds")
class DepthwiseSeparable(SequentialBlock):
    """Depthwise k x k conv -> BN -> act (``dw``), [SE] (``se``), pointwise 1x1 conv -> BN
    (``pw``) -> act where ``pw_act``: MobileNetV1's layer pair (act after both) or, with a
    linear pointwise conv, MnasNet's SepConv (no residual in either)."""

    table_fields = {"c": "out", "k": "kernel", "se": "se"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels of the pointwise conv")
        n: int = rows.repeats()
        s: int = rows.stride("stride of the depthwise conv of the first repeat")
        k: int = rows.kernel("depthwise kernel size", 3)
        nl: str = rows.activation("activation after the depthwise conv (and the pointwise one, where pw_act)", "relu")
        pw_act: bool = rows.flag("activation after the pointwise conv too (MobileNetV1); false: linear (MnasNet's SepConv)", True)
        se: float = rows.se("squeeze-and-excitation between the two convs, a ratio of the input channels", 0.0)
        se_from: str = _se_from()
        se_round_to: Optional[int] = _se_round_to()
        se_act: str = _se_act()
        se_gate: str = _se_gate()

    @classmethod
    def expand(cls, row: "DepthwiseSeparable.Row", ex: Expander) -> None:
        out = ex.channels(row.c)
        args = _se_args(row) | ({} if row.pw_act else {"pw_act": False})
        for i in range(ex.repeats(row.n)):
            ex.emit(cls.type_name, out, stride=row.s if i == 0 else 1, kernel=row.k, se=row.se, act=row.nl, **args)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        k = cfg.kernel or 3
        self.dw = ConvNormAct(cfg.in_chs, cfg.in_chs, k, cfg.stride, ctx, groups=cfg.in_chs, act=cfg.act)
        if cfg.se:
            self.se = _make_se(cfg, cfg.in_chs, ctx)
        self.pw = ConvNormAct(cfg.in_chs, cfg.out_chs, 1, 1, ctx, act=cfg.act if cfg.args.get("pw_act", True) else None)


class InvertedResidual(Block):
    """1x1 expand (``layers.pw``) -> depthwise k x k (``layers.dw``) -> [SE] (``layers.se``) ->
    1x1 linear projection (``layers.pwl``), plus the identity when the shapes allow.

    The expand conv is left out when the expansion width equals the input width (the first
    MobileNetV2 row, t = 1; MobileNetV3's first bneck; EfficientNet's MBConv1). SE acts on the
    expanded channels with ``make_divisible(base * se, se_round_to)`` squeeze channels, ``base``
    the expanded width (MobileNetV3 Sec. 5.3) or the block's input (``se_from: in``).
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
            layers["se"] = _make_se(cfg, exp, ctx)
        layers["pwl"] = ConvNormAct(exp, cfg.out_chs, 1, 1, ctx)
        self.layers = nn.Sequential(layers)  # one Sequential, as torchvision's InvertedResidual.block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        if self.use_res:
            y += x  # in place: y is the projection's fresh output (torchvision does the same)
        return y


@register_block("ir")
class MBv2Bottleneck(InvertedResidual):
    """MobileNetV2 bottleneck row (MnasNet's and EfficientNet's MBConv): hidden width
    round(t * input channels) for every repeat."""

    table_fields = {"c": "out", "t": "exp/in", "k": "kernel", "se": "se"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        t: float = rows.number("expansion factor (hidden = t x input channels)", high=64.0)
        c: int = rows.channels("output channels")
        n: int = rows.repeats()
        s: int = rows.stride()
        k: int = rows.kernel("depthwise kernel size", 3)
        se: float = rows.se("squeeze-and-excitation on the hidden channels", 0.0)
        nl: str = rows.activation("nonlinearity", "relu6")
        se_from: str = _se_from()
        se_round_to: Optional[int] = _se_round_to()
        se_act: str = _se_act()
        se_gate: str = _se_gate()

    @classmethod
    def expand(cls, row: "MBv2Bottleneck.Row", ex: Expander) -> None:
        out, args = ex.channels(row.c), _se_args(row)
        for i in range(ex.repeats(row.n)):
            exp = int(round(ex.chs * row.t))  # torchvision: int(round(inp * expand_ratio)), not rounded to 8
            if exp < 1:
                raise SpecError(f"{ex.where} (ir): field 't' must give at least 1 hidden channel, got {row.t!r} x {ex.chs} channels")
            ex.emit(cls.type_name, out, stride=row.s if i == 0 else 1, kernel=row.k, exp=exp, se=row.se, act=row.nl, **args)


@register_block("bneck")
class MBv3Bneck(InvertedResidual):
    """MobileNetV3 bneck row: one block with an absolute, width-scaled expansion size."""

    table_fields = {"k": "kernel", "exp": "exp", "c": "out", "se": "se"}

    se_always = ("se_act", "se_gate")  # in a bneck's args with or without SE (the shipped expanded forms keep them)

    @dataclass(frozen=True, kw_only=True)
    class Row:
        k: int = rows.kernel("depthwise kernel size")
        exp: int = rows.channels("expansion size (channels of the depthwise conv)")
        c: int = rows.channels("output channels")
        se: float = rows.se("squeeze-and-excite: true means squeeze = make_divisible(exp / 4)")
        nl: str = rows.activation("nonlinearity: RE (ReLU) or HS (h-swish)")
        s: int = rows.stride("stride of the depthwise conv")
        se_act: str = _se_act()
        se_gate: Optional[str] = _se_gate()
        se_from: str = _se_from()
        se_round_to: Optional[int] = _se_round_to()

    @classmethod
    def expand(cls, row: "MBv3Bneck.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.channels(row.c), stride=row.s, kernel=row.k, exp=ex.channels(row.exp), se=row.se,
                act=row.nl, **_se_args(row, always=cls.se_always))
