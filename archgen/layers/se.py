"""Channel attention: squeeze-and-excitation (Hu et al. 2018, as MobileNetV3 uses it) and
VoVNetV2's effective SE (Lee & Park 2020, one FC layer, no squeeze)."""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_act


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
