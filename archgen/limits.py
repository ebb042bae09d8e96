"""The bounds a spec is held to before anything is built or allocated.

A spec file may come from anyone, so what it asks for is bounded, and a value past a bound
is a one-line ``SpecError`` instead of an allocation failure deep inside torch or a build that
runs for minutes. The bounds sit far above every network of the papers archgen implements
(the widest layer in the zoo has 4,096 channels, the longest row repeats 48 times, the deepest
network has 120 blocks, ImageNet-21k has 21,841 classes), and far below what would exhaust a
machine.
"""

from __future__ import annotations

MAX_CHANNELS = 1 << 16  # of any layer, after the width multiplier; also in_chans
MAX_NUM_CLASSES = 1 << 17
MAX_REPEATS = 1000  # a row's n, before the depth multiplier
MAX_BLOCKS = 2000  # of a whole network, after the depth multiplier
MAX_INPUT_SIZE = 8192  # each side of the input, in pixels
MAX_MULT = 100  # width_mult and depth_mult
MAX_SPEC_BYTES = 1 << 20  # a spec file of a real network is a few kB
MAX_SPEC_DEPTH = 32  # nesting of mappings and lists in a spec file; a real one is 5 deep
