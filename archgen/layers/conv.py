"""Convolution -> BatchNorm -> activation, the unit nearly every block is made of."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .activations import make_act
from .context import BuildContext


class ConvNormAct(nn.Sequential):
    """``conv`` (with bias only when there is no norm), then ``bn`` and ``act`` where asked.

    A ``Sequential``, as torchvision's ``Conv2dNormActivation``: its forward iterates over its
    children instead of fetching each through ``nn.Module.__getattr__``, which at batch 1 on a
    CPU is time the reference implementations do not spend. State-dict order is conv then bn,
    as in torchvision and timm, so reference weights map onto it in order.
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
        padding = (kernel - 1) // 2 if padding is None else padding
        bias = not norm if bias is None else bias
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_chs, out_chs, kernel, stride, padding, groups=groups, bias=bias)
        )
        if norm:
            layers["bn"] = ctx.norm(out_chs)
        if act is not None:
            layers["act"] = make_act(act)
        super().__init__(layers)
