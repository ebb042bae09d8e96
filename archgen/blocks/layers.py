"""Plain layers for stems, heads and the classic layer lists (LeNet-5, AlexNet, NiN...):
convolution, pooling, flatten, linear, dropout, BatchNorm-activation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig, Size
from ..layers.activations import make_act
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from .base import Block, Expander, PassThrough, SequentialBlock, conv_out, register_block

_LAYER_STRIDES = (1, 2, 3, 4)  # plain layers may stride more than blocks (AlexNet's conv1 has stride 4)


@register_block("conv")
class Conv(SequentialBlock):
    """Conv2d (``groups``: a grouped conv, as ResNeXt's and ShuffleNet's) -> BatchNorm (``bn``) -> activation (``nl``)."""

    table_fields = {"c": "out", "t": "out/in", "k": "kernel"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: Optional[int] = rows.channels("output channels", None, classes=True)
        t: Optional[float] = rows.number("output channels as a multiple of the input (instead of c)", None, high=64.0)
        k: int = rows.kernel("kernel size", 1)
        s: int = rows.stride("stride", 1, choices=_LAYER_STRIDES)
        p: Optional[int] = rows.integer("padding (default k // 2, which keeps the size at stride 1)", None, minimum=0)
        groups: int = rows.integer("groups of the convolution: must divide the input and output channels (1: dense)", 1)
        bn: bool = rows.flag("BatchNorm after the conv (the conv then has no bias)", True)
        nl: Optional[str] = rows.activation("activation after the conv/BN (null: none)", None, optional=True)
        scale: str = rows.choice("how width_mult scales c: width, up (only when > 1) or fixed", ("width", "up", "fixed"), "width")

    @classmethod
    def expand(cls, row: "Conv.Row", ex: Expander) -> None:
        if (row.c is None) == (row.t is None):
            raise SpecError(f"{ex.where} (conv): give exactly one of 'c' (channels) and 't' (multiple of the input)")
        out = ex.channels(row.c, row.scale) if row.c is not None else int(round(ex.chs * row.t))
        if out < 1:
            raise SpecError(f"{ex.where} (conv): field 't' must give at least 1 channel, got {row.t!r} x {ex.chs} channels")
        if ex.chs % row.groups or out % row.groups:
            raise SpecError(f"{ex.where} (conv): field 'groups' must divide the input ({ex.chs}) and output ({out}) "
                            f"channels, got {row.groups}")
        p = (row.k - 1) // 2 if row.p is None else row.p
        grouped = {"groups": row.groups} if row.groups != 1 else {}  # a dense conv's expanded form and LUT key stay as they were
        ex.emit(cls.type_name, out, stride=row.s, kernel=row.k, act=row.nl, p=p, bn=row.bn, **grouped)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        groups = cfg.args.get("groups", 1)
        if not isinstance(groups, int) or groups < 1 or cfg.in_chs % groups or cfg.out_chs % groups:
            # only an expanded spec gets here (a hand edit, or a search that changed the input's width)
            raise SpecError(f"{cfg.source}: field 'groups' must divide the input ({cfg.in_chs}) and output "
                            f"({cfg.out_chs}) channels, got {groups!r}")
        self.conv = nn.Conv2d(
            cfg.in_chs, cfg.out_chs, cfg.kernel, cfg.stride, cfg.args["p"], groups=groups, bias=not cfg.args["bn"]
        )
        if cfg.args["bn"]:
            self.bn = ctx.norm(cfg.out_chs)
        if cfg.act is not None:
            self.act = make_act(cfg.act)


class _Pool(PassThrough, SequentialBlock):
    """Shared row and size rule of the max and average pools."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        k: int = rows.kernel("window size", odd=False)
        s: Optional[int] = rows.stride("stride (default: the window size)", None, choices=_LAYER_STRIDES)
        p: int = rows.integer("padding", 0, minimum=0)
        ceil: bool = rows.flag("ceil_mode: keep a last partial window", False)

    @classmethod
    def expand(cls, row: "_Pool.Row", ex: Expander) -> None:
        if row.p > row.k // 2:  # PyTorch refuses more padding than half the window
            raise SpecError(f"{ex.where} ({cls.type_name}): field 'p' must be at most k // 2 = {row.k // 2}, got {row.p}")
        ex.emit(cls.type_name, ex.chs, stride=row.s or row.k, kernel=row.k, p=row.p, ceil=row.ceil)

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        assert cfg.in_size is not None and cfg.kernel is not None
        a = cfg.args
        return tuple(conv_out(x, cfg.kernel, cfg.stride, a["p"], a["ceil"]) for x in cfg.in_size)  # type: ignore[return-value]


@register_block("maxpool")
class MaxPool(_Pool):
    """nn.MaxPool2d."""

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.pool = nn.MaxPool2d(cfg.kernel, cfg.stride, cfg.args["p"], ceil_mode=cfg.args["ceil"])


@register_block("avgpool")
class AvgPool(_Pool):
    """nn.AvgPool2d."""

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.pool = nn.AvgPool2d(cfg.kernel, cfg.stride, cfg.args["p"], ceil_mode=cfg.args["ceil"])


@register_block("adaptive_avgpool")
class AdaptiveAvgPool(PassThrough, SequentialBlock):
    """nn.AdaptiveAvgPool2d to a fixed ``size`` (AlexNet's 6x6, VGG's 7x7 before the classifier)."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        size: int = rows.integer("output height and width")

    @classmethod
    def expand(cls, row: "AdaptiveAvgPool.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.chs, pool_size=row.size)  # "size" is the expanded form's input size

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        return (cfg.args["pool_size"], cfg.args["pool_size"])

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.pool = nn.AdaptiveAvgPool2d(cfg.args["pool_size"])


@register_block("global_pool")
class GlobalPool(PassThrough):
    """Global average (or max) pooling to a flat vector of the channels."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        pool: str = rows.choice("avg or max", ("avg", "max"), "avg")

    @classmethod
    def expand(cls, row: "GlobalPool.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.chs, pool=row.pool)

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        return None

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.max = cfg.args["pool"] == "max"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3)) if self.max else x.mean((2, 3))


@register_block("flatten")
class Flatten(Block):
    """C x H x W feature map -> flat vector of C*H*W features."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        pass

    @classmethod
    def expand(cls, row: "Flatten.Row", ex: Expander) -> None:
        h, w = ex.size or (1, 1)  # a flat input is rejected by emit (Flatten takes a map)
        ex.emit(cls.type_name, ex.chs * h * w)

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        return None

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        h, w = cfg.in_size or (1, 1)  # a flat input is rejected when the spec is checked
        return in_chs * h * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


@register_block("linear")
class Linear(SequentialBlock):
    """nn.Linear -> activation (MobileNetV3's "conv2d 1x1, NBN" rows after the pool are these)."""

    input = "flat"

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output features (num_classes for the classifier)", classes=True)
        nl: Optional[str] = rows.activation("activation after the layer (null: none)", None, optional=True)
        scale: str = rows.choice("how width_mult scales c: width, up (only when > 1) or fixed", ("width", "up", "fixed"), "width")

    @classmethod
    def expand(cls, row: "Linear.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.channels(row.c, row.scale), act=row.nl)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.fc = nn.Linear(cfg.in_chs, cfg.out_chs)
        if cfg.act is not None:
            self.act = make_act(cfg.act)


@register_block("dropout")
class Dropout(PassThrough, SequentialBlock):
    """nn.Dropout; without ``p`` it takes the model's ``dropout`` knob."""

    input = "any"

    @dataclass(frozen=True, kw_only=True)
    class Row:
        p: Optional[float] = rows.number("drop probability (default: the model's dropout)", None, low_open=False)

    @classmethod
    def expand(cls, row: "Dropout.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.chs, p=ex.knobs.dropout if row.p is None else row.p)

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        return cfg.in_size

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.drop = nn.Dropout(cfg.args["p"])


@register_block("bn_act")
class NormAct(PassThrough, SequentialBlock):
    """BatchNorm -> activation on its own (DenseNet's final norm5 + ReLU)."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        nl: Optional[str] = rows.activation("activation after the norm (null: none)", "relu", optional=True)

    @classmethod
    def expand(cls, row: "NormAct.Row", ex: Expander) -> None:
        ex.emit(cls.type_name, ex.chs, act=row.nl)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.bn = ctx.norm(cfg.out_chs)
        if cfg.act is not None:
            self.act = make_act(cfg.act)


@register_block("skip")
class Skip(SequentialBlock):
    """The skip op of a per-layer search (FBNet, ProxylessNAS; NAS-Bench-Macro's ``Identity``, Su et
    al. 2021): the identity, or, where the layer strides or changes the width, a 1x1 conv with the
    layer's stride and a BatchNorm (``downsample``; ResNet's projection shortcut), so that the
    layers after it see the shapes they would have seen."""

    table_fields = {"c": "out"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels (the input's: the identity)")
        n: int = rows.repeats()
        s: int = rows.stride("stride of the first repeat's projection (1 with the input's width: the identity)")

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        if cfg.stride != 1 or cfg.in_chs != cfg.out_chs:
            self.downsample = ConvNormAct(cfg.in_chs, cfg.out_chs, 1, cfg.stride, ctx, padding=0)


__all__ = ["AdaptiveAvgPool", "AvgPool", "Conv", "Dropout", "Flatten", "GlobalPool", "Linear", "MaxPool", "NormAct", "Skip"]
