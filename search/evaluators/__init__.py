"""Evaluators by name (``evaluator=``): what a search ranks a space's architectures by.

An evaluator is one module of this package that registers a subclass of ``Evaluator``
(``search.evaluators.base``): ``train.py`` (a short training), ``naswot.py`` (the training-free
score of Mellor et al. 2021), ``macs.py`` (the multiply-adds). Every module here is imported, so
a new file plugs in; ``EVALUATORS.names()`` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    EVALUATORS, Candidate, Evaluator, Footprint, Report, Score, Trainer, TrialFailed, check_fits, make_evaluator,
    register_evaluator,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "EVALUATORS", "Candidate", "Evaluator", "Footprint", "Report", "Score", "Trainer", "TrialFailed", "check_fits",
    "make_evaluator", "register_evaluator",
]
