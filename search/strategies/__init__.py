"""Search strategies by name (``strategy=``):

* ``mnasnet``: MnasNet's reward ``ACC x (LAT/T)^w``, maximised by TPE;
* ``pareto``: NSGA-II over (score, latency) with the budget as a constraint;
* ``netadapt``: NetAdapt's progressive shrinking, guided by the latency lookup table.

A strategy is one module of this package that registers a ``Strategy`` dataclass
(``search.strategies.base``), and its settings' section in ``conf/search.yaml``; every module
here is imported, so a new file plugs in.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import STRATEGIES, Strategy, make_strategy, register_strategy

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "Strategy", "make_strategy", "register_strategy"]
