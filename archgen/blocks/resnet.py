"""ResNet blocks (He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1).

* ``basic``: the two-layer building block of ResNet-18/34 (Fig. 5 left; Table 1's
  "[3x3, c; 3x3, c] x n"), columns ``c n s``: output channels, repeats, stride.
* ``bottleneck``: the three-layer bottleneck of ResNet-50/101/152 (Fig. 5 right; Table 1's
  "[1x1, mid; 3x3, mid; 1x1, c] x n"), columns ``mid c n s``. Its 3x3 conv may be grouped:
  ResNeXt's aggregated transformations (Xie et al. 2017, "Aggregated Residual Transformations
  for Deep Neural Networks", Fig. 3 (c) and Table 1's "[1x1, 128; 3x3, 128, C=32; 1x1, 256]")
  are ``cardinality`` C groups of the ``mid`` channels. Instead of ``mid`` a row may give
  torchvision's ``base_width`` (``width_per_group``): the width is then
  ``int(c / 4 * base_width / 64) * cardinality``, ResNeXt-50 32x4d's 4 and Wide ResNet-50-2's
  128 (Zagoruyko & Komodakis 2016, "Wide Residual Networks": the inner convs twice as wide).

Each block adds a shortcut: the identity where the shapes allow it, otherwise a projection
(option B of Sec. 3.3: a 1x1 conv with the block's stride, then BN). Attribute names and
registration order are torchvision's ``BasicBlock`` / ``Bottleneck`` (conv1, bn1, ...,
``downsample`` last), so torchvision's weights map onto them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig
from ..layers.activations import make_act
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from .base import Block, Expander, register_block


def _shortcut(cfg: BlockConfig, ctx: BuildContext) -> nn.Module:
    """The projection shortcut where the block changes the shape, else the identity."""
    if cfg.stride != 1 or cfg.in_chs != cfg.out_chs:
        return ConvNormAct(cfg.in_chs, cfg.out_chs, 1, cfg.stride, ctx)
    return nn.Identity()


def _conv(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)


@register_block("basic")
class BasicBlock(Block):
    """k x k conv (stride s) -> BN -> act -> k x k conv -> BN, + shortcut, then act."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels (of both convs)")
        n: int = rows.repeats()
        s: int = rows.stride("stride of the first block (its first conv and its projection shortcut)")
        k: int = rows.kernel("kernel size of both convs", 3)
        nl: str = rows.activation("activation after the first conv and after the addition", "relu")

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        k = cfg.kernel or 3
        self.conv1 = _conv(cfg.in_chs, cfg.out_chs, k, cfg.stride)
        self.bn1 = ctx.norm(cfg.out_chs)
        self.conv2 = _conv(cfg.out_chs, cfg.out_chs, k)
        self.bn2 = ctx.norm(cfg.out_chs)
        self.act = make_act(cfg.act)
        self.downsample = _shortcut(cfg, ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.downsample(x))


@register_block("bottleneck")
class Bottleneck(Block):
    """1x1 conv to mid -> BN -> act -> k x k conv (stride s, ``groups`` C) -> BN -> act -> 1x1 conv
    to c -> BN, + shortcut, then act. The stride sits on the k x k conv (torchvision's "ResNet v1.5")."""

    table_fields = {"mid": "exp", "c": "out", "k": "kernel"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        mid: Optional[int] = rows.channels(
            "bottleneck width: channels of the 1x1 reduction and the 3x3 conv (default: from base_width)", None
        )
        c: int = rows.channels("output channels (of the last 1x1 conv)")
        n: int = rows.repeats()
        s: int = rows.stride("stride of the first block (its 3x3 conv and its projection shortcut)")
        k: int = rows.kernel("kernel size of the middle conv", 3)
        cardinality: int = rows.integer("groups C of the 3x3 conv (ResNeXt's cardinality; 1: ResNet)", 1)
        base_width: int = rows.integer(
            "width per group at planes 64 when the row gives no mid: mid = int(c / 4 * base_width / 64) * cardinality "
            "(torchvision's width_per_group)", 64
        )
        nl: str = rows.activation("activation after the first two convs and after the addition", "relu")

    @classmethod
    def expand(cls, row: "Bottleneck.Row", ex: Expander) -> None:
        desc = f"{ex.where} (bottleneck)"
        if row.mid is not None and row.base_width != 64:
            raise SpecError(f"{desc}: give 'mid' (the bottleneck width) or 'base_width' (torchvision's width per "
                            f"group, which sets it), not both")
        if row.mid is None:  # torchvision's Bottleneck: planes = c / expansion 4
            width = int(row.c // 4 * (row.base_width / 64.0)) * row.cardinality
        else:
            width = row.mid
        out, mid = ex.channels(row.c), ex.channels(width)
        if mid % row.cardinality:
            scaled = f" after width_mult {ex.knobs.width_mult:g}" if ex.knobs.width_mult != 1.0 else ""
            raise SpecError(f"{desc}: field 'cardinality' must divide the bottleneck width ({mid} channels{scaled}), "
                            f"got {row.cardinality}")
        grouped = {"groups": row.cardinality} if row.cardinality != 1 else {}  # ResNet's expanded form stays as it was
        for i in range(ex.repeats(row.n)):
            ex.emit(cls.type_name, out, stride=row.s if i == 0 else 1, kernel=row.k, exp=mid, act=row.nl, **grouped)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        mid, k = cfg.exp or max(1, cfg.out_chs // 4), cfg.kernel or 3  # Table 1: c = 4 x mid
        groups = cfg.args.get("groups", 1)
        if not isinstance(groups, int) or groups < 1 or mid % groups:  # only a hand-edited expanded spec gets here
            raise SpecError(f"{cfg.source}: field 'groups' must divide the bottleneck width (exp, {mid} channels), "
                            f"got {groups!r}")
        self.conv1 = _conv(cfg.in_chs, mid, 1)
        self.bn1 = ctx.norm(mid)
        self.conv2 = _conv(mid, mid, k, cfg.stride, groups)
        self.bn2 = ctx.norm(mid)
        self.conv3 = _conv(mid, cfg.out_chs, 1)
        self.bn3 = ctx.norm(cfg.out_chs)
        self.act = make_act(cfg.act)
        self.downsample = _shortcut(cfg, ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.act(y + self.downsample(x))


__all__ = ["BasicBlock", "Bottleneck"]
