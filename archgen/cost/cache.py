"""Figures of a network kept by its shapes (``ModelSpec.key``), for the counts a search asks for
again and again: the same network is timed, then evaluated, then re-measured for the report."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from ..spec import ModelSpec

T = TypeVar("T")


class SpecCache(Generic[T]):
    """``compute(spec)`` once per network shape; the least recently used of more than ``size`` is dropped.
    What it keeps must not be changed by its callers (frozen dataclasses, tuples)."""

    def __init__(self, compute: Callable[[ModelSpec], T], size: int = 256) -> None:
        self._compute = compute
        self._size = size
        self._kept: OrderedDict[tuple, T] = OrderedDict()

    def __call__(self, spec: ModelSpec) -> T:
        key = spec.key()
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        value = self._kept[key] = self._compute(spec)
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return value
