"""Flat block list -> ``nn.Module``.

The module tree follows the spec: ``stem.<i>``, ``stages.<s>.<b>``, ``head.<i>``, one module
per ``BlockConfig``, named as the config names it, so a layer table row, a cost figure and a
module path all point at the same block. ``feature_info`` follows timm's convention.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .blocks import BLOCKS
from .errors import SpecError
from .layers.context import BuildContext
from .spec import ModelSpec


class ArchNet(nn.Module):
    """A network built from a ``ModelSpec``.

    ``forward(x)`` returns logits; ``forward_features(x)`` the last stage's feature map;
    with ``features_only=True`` the model has no head and ``forward(x)`` returns the feature
    maps of the stages in ``out_indices`` (``feature_info`` describes them).
    """

    def __init__(self, spec: ModelSpec, *, features_only: bool = False, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        self.spec = spec
        ctx = BuildContext(bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, round_to=spec.round_to)
        stem = [b for b in spec.blocks if b.section == "stem"]
        head = [b for b in spec.blocks if b.section == "head"]
        self.stem = nn.Sequential(*(_make(b, ctx) for b in stem))
        self.stages = nn.Sequential(
            *(nn.Sequential(*(_make(b, ctx) for b in spec.stage_blocks(s))) for s in range(spec.num_stages))
        )
        info = spec.feature_info()
        self.num_features = info[-1]["num_chs"]
        self.features_only = features_only
        if features_only:
            indices = tuple(range(len(info))) if out_indices is None else tuple(out_indices)
            bad = [i for i in indices if not -len(info) <= i < len(info)]
            if bad:
                raise SpecError(f"{spec.source}: out_indices {bad} out of range; the spec has {len(info)} stages")
            self.out_indices = tuple(i % len(info) for i in indices)
            self.feature_info = [info[i] for i in self.out_indices]
            self.head = nn.Sequential()
        else:
            self.out_indices = ()
            self.feature_info = info
            self.head = nn.Sequential(*(_make(b, ctx) for b in head))
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: the last stage's feature map."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Head layers (pooling, classifier) on a feature map from ``forward_features``."""
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.features_only:
            return self.forward_head(self.forward_features(x))
        x, feats = self.stem(x), []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
            if i >= max(self.out_indices):
                break
        return feats


def _make(cfg: Any, ctx: BuildContext) -> nn.Module:
    return BLOCKS.get(cfg.type)(cfg, ctx)


def _init_weights(model: nn.Module) -> None:
    """He init for convs (fan-out), unit BN, N(0, 0.01) linear layers: torchvision's MobileNet init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(spec: ModelSpec, *, features_only: bool = False, out_indices: Sequence[int] | None = None) -> ArchNet:
    """Build the network a spec describes (see ``ArchNet``)."""
    return ArchNet(spec, features_only=features_only, out_indices=out_indices)
