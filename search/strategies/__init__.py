"""Search strategies by name (``strategy=``): how a study's trials choose points of the space.

A strategy is one module of this package that registers a ``Strategy`` dataclass
(``search.strategies.base``), with its settings' section in ``conf/search.yaml``:
``mnasnet.py`` (MnasNet's reward, TPE), ``pareto.py`` (NSGA-II), ``netadapt.py`` (NetAdapt's
progressive shrinking), ``random_search.py`` (random search), ``evolution.py`` (regularized
evolution), ``local.py`` (local search). Every module here is imported, so a new file plugs in;
``STRATEGIES.names()`` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import STRATEGIES, Strategy, make_strategy, register_strategy

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "Strategy", "make_strategy", "register_strategy"]
