"""Blocks of the classic plain networks.

* ``vgg``: one VGG stage (Simonyan & Zisserman 2015, Table 1), columns ``c n s``: ``n``
  3x3 convolutions of ``c`` channels (pad 1, ReLU, with bias, no BN) and the 2x2 max-pool
  that the table puts after each group of convs. A row type only: it emits ``conv`` and
  ``maxpool`` blocks, so VGG builds from the same modules as LeNet-5 and AlexNet. The pool
  ends the row, and a row with a stride-2 block opens a new stage, so each VGG stage is one
  column group of Table 1 with its pool.
* ``nin``: the NiN block (Lin et al. 2014, "Network In Network", Sec. 3.1: an mlpconv
  layer), as Dive into Deep Learning builds it: a k x k convolution followed by two 1x1
  convolutions, each with bias and ReLU, no BN. Columns ``c k s p``.

LeNet-5 and AlexNet need no block of their own: their specs are layer lists of ``conv``,
pooling, ``flatten`` and ``linear`` rows (``archgen.blocks.layers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import rows
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from .base import Expander, RowType, SequentialBlock, register_block


@register_block("vgg")
class VGGStage(RowType):
    """n x (3x3 conv, pad 1 -> ReLU), then a 2x2 max-pool with stride s (none when s is 1)."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels of every conv of the stage")
        n: int = rows.repeats("number of 3x3 convs of the stage")
        s: int = rows.stride("stride of the 2x2 max-pool that ends the stage (1: no pool)", 2)

    @classmethod
    def expand(cls, row: "VGGStage.Row", ex: Expander) -> None:
        out = ex.channels(row.c)
        for _ in range(ex.repeats(row.n)):
            ex.emit("conv", out, kernel=3, act="relu", p=1, bn=False)
        if row.s > 1:
            ex.emit("maxpool", out, stride=row.s, kernel=2, p=0, ceil=False)


@register_block("nin")
class NiNBlock(SequentialBlock):
    """k x k conv (stride s, padding p) -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU.

    The two 1x1 convolutions are the paper's per-pixel MLP; every conv has a bias (no BN).
    """

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels of all three convs (num_classes for the last block)", classes=True)
        k: int = rows.kernel("kernel size of the first conv")
        s: int = rows.stride("stride of the first conv", 1, choices=(1, 2, 4))
        p: Optional[int] = rows.integer("padding of the first conv (default k // 2)", None, minimum=0)

    @classmethod
    def expand(cls, row: "NiNBlock.Row", ex: Expander) -> None:
        p = row.k // 2 if row.p is None else row.p
        ex.emit(cls.type_name, ex.channels(row.c), stride=row.s, kernel=row.k, act="relu", p=p)

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        k, out = cfg.kernel or 1, cfg.out_chs
        self.conv1 = ConvNormAct(cfg.in_chs, out, k, cfg.stride, ctx, padding=cfg.args["p"], norm=False, act=cfg.act)
        self.conv2 = ConvNormAct(out, out, 1, 1, ctx, norm=False, act=cfg.act)
        self.conv3 = ConvNormAct(out, out, 1, 1, ctx, norm=False, act=cfg.act)


__all__ = ["NiNBlock", "VGGStage"]
