"""Convolution -> BatchNorm -> activation, the unit nearly every block is made of."""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_act
from .context import BuildContext


class ConvNormAct(nn.Module):
    """``conv`` (with bias only when there is no norm), ``bn`` (optional), ``act`` (optional).

    State-dict order is conv then bn, as in torchvision's ``Conv2dNormActivation`` and
    timm's ``ConvNormAct``, so reference weights map onto it in order.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int = 1,
        stride: int = 1,
        ctx: BuildContext = BuildContext(),
        *,
        padding: int | None = None,
        groups: int = 1,
        norm: bool = True,
        act: str | None = None,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        padding = (kernel - 1) // 2 if padding is None else padding
        bias = not norm if bias is None else bias
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, padding, groups=groups, bias=bias)
        self.bn = ctx.norm(out_chs) if norm else nn.Identity()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
