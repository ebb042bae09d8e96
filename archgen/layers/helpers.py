"""Channel rounding shared by every family."""

from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never more than 10 % below ``v``.

    The rounding of the MobileNet papers' reference code (``_make_divisible`` in the
    TensorFlow MobileNet repo, torchvision and timm): nearest multiple, at least
    ``min_value`` (default ``divisor``), bumped up one step if it fell below ``round_limit * v``.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v
