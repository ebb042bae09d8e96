"""NAS-Bench-Macro's network as its authors wrote it: the reference of the ``nasbench_macro`` spec
and of every point of the ``nasbench_macro`` space.

Transcribed from xiusu/NAS-Bench-Macro, ``train/model.py`` (commit 61a2bfc), the code that trained
the benchmark (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search", CVPR
2021). Copyright the NAS-Bench-Macro authors, Apache License 2.0 (``search/tables/NOTICE``). Same
layers, names and order; left out: the unused ``use_se`` and ``t == 1`` paths, which no point takes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

CANDIDATE_OPS = ["id", "ir_3x3_t3", "ir_5x5_t6"]  # key digits 0, 1, 2


class Identity(nn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        if stride != 1 or inp != oup:
            self.downsample = nn.Sequential(
                nn.Conv2d(inp, oup, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(oup),
            )
        else:
            self.downsample = None

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t, k=3, activation=nn.ReLU):
        super().__init__()
        assert stride in [1, 2]
        hidden_dim = round(inp * t)
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False),  # pw
            nn.BatchNorm2d(hidden_dim),
            activation(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, k, stride, padding=k // 2, groups=hidden_dim, bias=False),  # dw
            nn.BatchNorm2d(hidden_dim),
            activation(inplace=True),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),  # pw-linear
            nn.BatchNorm2d(oup),
        )
        self.use_shortcut = inp == oup and stride == 1

    def forward(self, x):
        if self.use_shortcut:
            return self.conv(x) + x
        return self.conv(x)


OPS = OrderedDict(
    id=lambda inp, oup, stride: Identity(inp=inp, oup=oup, stride=stride),
    ir_3x3_t3=lambda inp, oup, stride: InvertedResidual(inp=inp, oup=oup, t=3, stride=stride, k=3),
    ir_5x5_t6=lambda inp, oup, stride: InvertedResidual(inp=inp, oup=oup, t=6, stride=stride, k=5),
)


class Network(nn.Module):
    def __init__(self, arch, num_classes=10, stages=(2, 3, 3), init_channels=32):
        super().__init__()
        assert len(arch) == sum(stages)
        self.stem = nn.Sequential(
            nn.Conv2d(3, init_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True),
        )
        arch_ = list(arch)
        features = []
        channels = init_channels
        for stage in stages:
            for idx in range(stage):
                op_func = OPS[CANDIDATE_OPS[arch_.pop(0)]]
                if idx == 0:
                    features.append(op_func(channels, channels * 2, 2))
                    channels *= 2
                else:
                    features.append(op_func(channels, channels, 1))
        self.features = nn.Sequential(*features)
        self.out = nn.Sequential(
            nn.Conv2d(channels, 1280, kernel_size=1, bias=False, stride=1),
            nn.BatchNorm2d(1280),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.features(x)
        x = self.out(x)
        return self.classifier(x.view(x.size(0), -1))


def network(key: str = "22222222") -> Network:
    """The benchmark's network for an architecture key ("0": identity, "1": MB3_K3, "2": MB6_K5 per layer)."""
    return Network([int(c) for c in key])


__all__ = ["Network", "network"]
