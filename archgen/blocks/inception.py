"""GoogLeNet's Inception module (Szegedy et al. 2015, "Going Deeper with Convolutions",
Fig. 2b and Table 1).

``inception`` rows carry Table 1's columns under torchvision's names: ``ch1x1`` (#1x1),
``ch3x3red`` (#3x3 reduce), ``ch3x3`` (#3x3), ``ch5x5red`` (#5x5 reduce), ``ch5x5`` (#5x5)
and ``pool_proj`` (pool proj), plus ``k5x5``, the kernel of the "5x5" branch: torchvision
builds it with 3x3 (a known bug, pytorch/vision#906, kept for its trained weights), so the
GoogLeNet spec sets it to 3 in its table defaults and states that convention.

The module is torchvision's ``Inception`` with its ``BasicConv2d`` (conv without bias, BN,
ReLU): four branches on the same input, concatenated in the table's column order. Branch
names and registration order are torchvision's, so its weights map onto it in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import rows
from ..ir import BlockConfig, Size
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from .base import Block, Expander, register_block

_BRANCH_CHANNELS = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")


@register_block("inception")
class Inception(Block):
    """1x1 | 1x1 -> 3x3 | 1x1 -> k5x5 | 3x3 max-pool -> 1x1, concatenated along channels."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        ch1x1: int = rows.channels("#1x1: channels of the 1x1 branch")
        ch3x3red: int = rows.channels("#3x3 reduce: 1x1 channels before the 3x3 conv")
        ch3x3: int = rows.channels("#3x3: channels of the 3x3 conv")
        ch5x5red: int = rows.channels("#5x5 reduce: 1x1 channels before the 5x5 conv")
        ch5x5: int = rows.channels("#5x5: channels of the 5x5 conv")
        pool_proj: int = rows.channels("pool proj: 1x1 channels after the 3x3 max-pool")
        k5x5: int = rows.kernel("kernel of the 5x5 branch (the paper: 5; torchvision: 3)", 5)

    @classmethod
    def expand(cls, row: "Inception.Row", ex: Expander) -> None:
        chs = {name: ex.channels(getattr(row, name)) for name in _BRANCH_CHANNELS}
        out = chs["ch1x1"] + chs["ch3x3"] + chs["ch5x5"] + chs["pool_proj"]
        ex.emit(cls.type_name, out, **chs, k5x5=row.k5x5)  # no single main kernel: BlockConfig.kernel stays None

    @classmethod
    def output_size(cls, cfg: BlockConfig) -> Size:
        return cfg.in_size  # every branch is stride 1 and padded to keep the size

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        a, cin = cfg.args, cfg.in_chs

        def conv(i: int, o: int, k: int) -> ConvNormAct:
            return ConvNormAct(i, o, k, 1, ctx, act="relu")

        self.branch1 = conv(cin, a["ch1x1"], 1)
        self.branch2 = nn.Sequential(conv(cin, a["ch3x3red"], 1), conv(a["ch3x3red"], a["ch3x3"], 3))
        self.branch3 = nn.Sequential(conv(cin, a["ch5x5red"], 1), conv(a["ch5x5red"], a["ch5x5"], a["k5x5"]))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(cin, a["pool_proj"], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


__all__ = ["Inception"]
