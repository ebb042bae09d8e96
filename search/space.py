"""The one module that calls Optuna's ``trial.suggest_*``: a trial's choices -> a concrete spec.

The space itself (which knobs, which blocks, how a choice edits the flat block list) is
``archgen.space.Space``; this module only lets an Optuna trial make its choices, so that a
trial's ``params`` are the space's flat labels (``s3_k``, ``s3_b1_exp``) and replay with
``Space.apply``.
"""

from __future__ import annotations

import optuna

from archgen.space import Sample, Space


def suggest(trial: optuna.Trial, space: Space) -> Sample:
    """Let ``trial`` choose every parameter of ``space``; returns its choices and the spec they give."""
    return space.sample(lambda name, knob, values: trial.suggest_categorical(name, values))
