"""Primitives the blocks are made of: activations, conv-norm-act, squeeze-excitation, rounding."""

from .activations import ACTIVATIONS, make_act
from .context import BuildContext
from .conv import ConvNormAct
from .helpers import make_divisible
from .se import EffectiveSE, SqueezeExcite

__all__ = ["ACTIVATIONS", "BuildContext", "ConvNormAct", "EffectiveSE", "SqueezeExcite", "make_act", "make_divisible"]
