"""ShuffleNetV2's unit (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", Fig. 3 (c) and (d), Table 5).

* ``shuffle``: columns ``c n s`` as Table 5 reads a stage (output channels, repeats, stride of
  the first). The stride-1 unit (Fig. 3 (c)) splits its input's channels in two, keeps one half
  and runs the other through 1x1 conv -> BN -> ReLU -> 3x3 depthwise -> BN -> 1x1 conv -> BN ->
  ReLU; the stride-2 unit (Fig. 3 (d)) has no split: both branches see the whole input, the
  left one a 3x3 depthwise (stride 2) -> BN -> 1x1 conv -> BN -> ReLU. Either way the halves are
  concatenated and the channels shuffled in two groups, so that the next unit's split mixes
  both branches (Sec. 4).

Submodules and their order are torchvision's ``InvertedResidual`` (``branch1``, only at stride
2, then ``branch2``), so torchvision's weights map onto them in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import rows
from ..errors import SpecError
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from .base import Block, Expander, register_block


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (Zhang et al. 2018, Fig. 1 (c)): (g, c/g) -> (c/g, g).
    ``unflatten``/``flatten`` rather than ``view(*x.size())``, so that FX can trace it (deploy)."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _check(where: str, in_chs: int, out_chs: int, stride: int, scaled: str = "", field: str = "c") -> None:
    """The unit's channel rules: two equal halves out, and a stride-1 unit keeps its input's width."""
    if out_chs % 2:
        raise SpecError(f"{where}: field {field!r} must be an even number of channels (the unit concatenates two "
                        f"branches of c / 2), got {out_chs}{scaled}")
    if stride == 1 and in_chs != out_chs:
        raise SpecError(f"{where}: field {field!r} must equal the input's {in_chs} channels at stride 1 (the unit splits "
                        f"its input in two and keeps one half; only a stride-2 unit changes the width), got {out_chs}{scaled}")


@register_block("shuffle")
class ShuffleUnit(Block):
    """ShuffleNetV2's unit: channel split (stride 1) or two branches (stride 2), concat, shuffle."""

    table_fields = {"c": "out", "k": "kernel"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels (even: two branches of c / 2)")
        n: int = rows.repeats("number of units (Table 5's repeats: the stride-2 unit and the stride-1 ones)", 1)
        s: int = rows.stride("stride of the first unit (Table 5: 2 at the start of every stage)")
        k: int = rows.kernel("kernel size of the depthwise convs", 3)
        nl: str = rows.activation("activation after the 1x1 convs", "relu")

    @classmethod
    def expand(cls, row: "ShuffleUnit.Row", ex: Expander) -> None:
        out = ex.channels(row.c)
        for i in range(ex.repeats(row.n)):
            stride = row.s if i == 0 else 1
            scaled = f" ({row.c} x width_mult {ex.knobs.width_mult:g})" if out != row.c else ""
            _check(f"{ex.where} (shuffle)", ex.chs, out, stride, scaled)
            ex.emit(cls.type_name, out, stride=stride, kernel=row.k, act=row.nl)

    @classmethod
    def output_chs(cls, cfg: BlockConfig, in_chs: int) -> int:
        return in_chs if cfg.stride == 1 else cfg.out_chs  # a stride-1 unit keeps its input's width

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        _check(cfg.source, cfg.in_chs, cfg.out_chs, cfg.stride, field="out")  # an expanded spec's blocks come here unchecked
        k, half, inp = cfg.kernel or 3, cfg.out_chs // 2, cfg.in_chs
        self.stride = cfg.stride
        if cfg.stride > 1:
            self.branch1 = nn.Sequential(
                ConvNormAct(inp, inp, k, cfg.stride, ctx, groups=inp),
                ConvNormAct(inp, half, 1, 1, ctx, act=cfg.act),
            )
        self.branch2 = nn.Sequential(
            ConvNormAct(inp if cfg.stride > 1 else half, half, 1, 1, ctx, act=cfg.act),
            ConvNormAct(half, half, k, cfg.stride, ctx, groups=half),
            ConvNormAct(half, half, 1, 1, ctx, act=cfg.act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(x)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


__all__ = ["ShuffleUnit", "channel_shuffle"]
