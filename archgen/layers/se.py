"""Channel attention: squeeze-and-excitation (Hu et al. 2018, as MobileNetV3, EfficientNet and
MnasNet use it) and VoVNetV2's effective SE (Lee & Park 2020, one FC layer, no squeeze)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SpecError
from .activations import make_act
from .helpers import make_divisible

SE_FROM = ("exp", "in")  # the width an SE ratio is taken of: the block's expanded width, or its input
SE_SETTINGS = ("se_from", "se_round_to", "se_act", "se_gate")  # a block's SE settings, in its args


def squeeze_channels(ratio: float, in_chs: int, exp_chs: int, se_from: str = "exp", round_to: int = 8,
                     where: str = "") -> int:
    """Width of the SE's squeeze layer: ``make_divisible(base * ratio, round_to)``.

    ``base`` is the expanded width for ``se_from="exp"`` (MobileNetV3, Sec. 5.3: exp / 4 rounded
    to 8) or the block's input width for ``"in"``: EfficientNet (Tan & Le 2019; torchvision's
    ``max(1, in // 4)``, which is ``round_to=1`` on widths that are multiples of 4) and MnasNet
    (Tan et al. 2019; timm's ``round(in * ratio)``).
    """
    if se_from not in SE_FROM:  # only an expanded spec's block can get here: table rows are checked
        raise SpecError(f"{where}: field 'se_from' must be one of {', '.join(SE_FROM)}, got {se_from!r}")
    return make_divisible((exp_chs if se_from == "exp" else in_chs) * ratio, round_to)


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(mean(x))))), with 1x1 convs (with bias) as the FC layers."""

    def __init__(self, chs: int, squeeze_chs: int, act: str = "relu", gate: str = "hsigmoid") -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(chs, squeeze_chs, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(squeeze_chs, chs, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class EffectiveSE(nn.Module):
    """eSE of VoVNetV2: x * gate(fc(mean(x))), one 1x1 conv keeping the channel count."""

    def __init__(self, chs: int, gate: str = "hsigmoid") -> None:
        super().__init__()
        self.fc = nn.Conv2d(chs, chs, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))
