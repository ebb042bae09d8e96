"""Search strategies by name (``strategy=``): MnasNet's reward, an NSGA-II Pareto search, NetAdapt."""

from __future__ import annotations

from typing import Any, Mapping

from archgen import SpecError

from .netadapt import NetAdapt
from .sampled import MnasNet, Pareto

STRATEGIES: dict[str, type] = {"mnasnet": MnasNet, "netadapt": NetAdapt, "pareto": Pareto}


def make_strategy(name: str, settings: Mapping[str, Any] | None = None) -> MnasNet | Pareto | NetAdapt:
    """The strategy ``name`` with its settings (the ``<name>:`` section of the config)."""
    if name not in STRATEGIES:
        raise SpecError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    settings = dict(settings or {})
    known = tuple(cls.__dataclass_fields__)
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise SpecError(f"unknown setting {name}.{unknown[0]}; {name} has: {', '.join(known)}")
    return cls(**settings)
