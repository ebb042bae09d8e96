"""Type checks for values read from YAML, a config or the command line, the one-line refusal,
and settings dataclasses read from a config section.

Python's bools are ints, and YAML reads ``true`` as one: as a size, a count or a seed, ``true``
is a mistake, not a 1. Every setting and every table field is checked with these.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real
from typing import Any, Mapping, TypeVar

from .errors import SpecError

T = TypeVar("T")


def is_int(value: object) -> bool:
    """An integer, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (an int or a float), and not a bool; NaN and infinity included."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_finite(value: object) -> bool:
    """A real number that is neither NaN nor infinite."""
    return is_real(value) and math.isfinite(value)  # type: ignore[arg-type]


def check_setting(setting: str, value: object, ok: bool, expected: str) -> None:
    """Refuse a bad setting with the one-line message the commands print: ``data.size must be ..., got 0``."""
    if not ok:
        raise SpecError(f"{setting} must be {expected}, got {value!r}")


def load_settings(cls: type[T], section: str, values: Mapping[str, Any]) -> T:
    """A settings dataclass from a config section; an unknown key is an error listing the known ones."""
    known = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = [k for k in values if k not in known]
    if unknown:
        raise SpecError(f"unknown setting {section}.{unknown[0]}; {section} has: {', '.join(known)}")
    return cls(**values)
