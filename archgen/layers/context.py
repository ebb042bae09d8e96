"""Model-wide settings a block needs when it is built (from the spec's top level)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

# make_divisible's divisor where a spec states no round_to: width-scaled channels and SE widths are
# not rounded (the zoo's specs state their own, 8 for most, 1 for LeNet-5's 6 maps)
ROUND_TO = 1


@dataclass(frozen=True)
class BuildContext:
    """Settings shared by every block of one model."""

    bn_eps: float = 1e-5  # BatchNorm epsilon (torchvision MobileNetV3 and GoogLeNet use 1e-3)
    bn_momentum: float = 0.1  # BatchNorm momentum (PyTorch convention: weight of the new batch)
    round_to: int = ROUND_TO  # divisor of make_divisible, also for SE squeeze widths

    def norm(self, chs: int) -> nn.BatchNorm2d:
        """A BatchNorm2d with the model's eps and momentum."""
        return nn.BatchNorm2d(chs, eps=self.bn_eps, momentum=self.bn_momentum)

    @property
    def norm_layer(self) -> partial:
        return partial(nn.BatchNorm2d, eps=self.bn_eps, momentum=self.bn_momentum)
