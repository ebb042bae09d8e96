"""Block types, one module per family, each registered by the name its spec rows use."""

from .base import BLOCKS, Block, Expander, Knobs, PassThrough, RowType, conv_out, register_block
from . import classic, densenet, inception, layers, mobilenet, resnet, shufflenet, vovnet  # noqa: F401  (registration)

__all__ = ["BLOCKS", "Block", "Expander", "Knobs", "PassThrough", "RowType", "conv_out", "register_block"]
