"""The networks a searched one is compared with: the base, and the base width-scaled to a latency
(MnasNet's baseline, Tan et al. 2019, Sec. 5: MobileNetV2 scaled by its width multiplier), and
the report's networks trained again from fresh seeds.

The width-scaled base is found by one search, ``width_search``: a bisection over the width
multiplier for the widest base whose latency is within a target's, since latency grows with
width. The search's report asks it for the widest base within the budget (``width_within``);
``search.benchmark`` for the base at a searched network's latency, measured side by side with it
(``width_matching``).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial

from archgen import ModelSpec

from .evaluators import Candidate, Trainer
from .problem import Problem
from .trials import TRIAL_ERRORS

WIDTH_RANGE = (0.1, 3.0)  # where a width-scaled base is looked for
BUDGET_STEP = 0.05  # the search's baseline: the widest multiplier of 0.1, 0.15, ... 3.0 within the budget
MATCH_STEP = 0.001  # the benchmark's: far finer than make_divisible's steps of the channels


def width_search(latency_ratio: Callable[[float], float], step: float, tolerance: float = 0.0) -> tuple[float, float] | None:
    """The widest width multiplier of ``WIDTH_RANGE`` (in steps of ``step``) at which the base is
    no slower than the target, within ``tolerance``: ``latency_ratio(w)``, the base's latency at
    width w over the target's, is at most ``1 + tolerance``. A bisection, since latency grows with
    width; with a ``tolerance``, it stops at the first width whose ratio is within it of 1.
    Returns (width, ratio), or None when even the narrowest base is slower than the target."""
    lo, hi = 0, round((WIDTH_RANGE[1] - WIDTH_RANGE[0]) / step)
    found = None
    while lo <= hi:
        mid = (lo + hi) // 2
        width = round(WIDTH_RANGE[0] + mid * step, 3)
        ratio = latency_ratio(width)
        if ratio > 1 + tolerance:
            hi = mid - 1
            continue
        found, lo = (width, ratio), mid + 1
        if tolerance and ratio >= 1 - tolerance:
            break
    return found


def width_within(problem: Problem) -> float | None:
    """The widest base (multipliers 0.1 ... 3.0, steps of 0.05) within the budget, by the search's
    latency (measured, or predicted by the lookup table); None when no width fits."""
    found = width_search(lambda w: problem.latency_ms(problem.base_at_width(w).spec) / problem.budget_ms, BUDGET_STEP)
    return None if found is None else found[0]


def width_matching(problem: Problem, target: ModelSpec, tolerance: float) -> tuple[float, float] | None:
    """The widest base whose latency, measured side by side with ``target``'s, is within ``tolerance``
    of it (or the widest below it, when none is within), and that latency ratio; None when even
    the narrowest base is slower."""
    def ratio(width: float) -> float:
        ours, theirs = problem.remeasure([target, problem.base_at_width(width).spec])
        return theirs.median_ms / ours.median_ms

    return width_search(ratio, MATCH_STEP, tolerance)


def baselines(problem: Problem, study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Score of the base network and of the base width-scaled to the budget (kept on the study, so
    that a resumed run does not evaluate them again). One the evaluator cannot score (a tabular
    benchmark has no width-scaled base) is left out, with the reason on the study (``unscored``)."""
    cached = study.user_attrs.get("baselines")
    if cached is not None:
        return cached
    out: dict[str, dict[str, Any]] = {}
    unscored: dict[str, str] = {}
    for label, width in (("base", 1.0), ("scaled", width_within(problem))):
        if width is None:
            continue
        try:
            outcome = problem.evaluate(problem.base_at_width(width))
        except TRIAL_ERRORS as e:  # what fails a trial leaves a baseline out: the report is still written
            unscored[label] = f"the base at width {width:g} has no {problem.metric}: {e}"
            continue
        out[label] = {"width_mult": width, "score": outcome.score, "latency_ms": outcome.latency_ms}
    study.set_user_attr("unscored", unscored)
    study.set_user_attr("baselines", out)
    return out


def fresh_scores(problem: Problem, study: optuna.Study, best: FrozenTrial | None, base_info: dict[str, Any],
                 seeds: int) -> dict[str, tuple[float, ...]]:
    """The report's networks (key -> scores, one a seed) evaluated again from ``seeds`` seeds no
    trial used, kept on the study so that a resumed run does not train them again; empty where
    the evaluator does not train.

    The best trial's score is the highest of many noisy evaluations (the seed moves a short
    training's accuracy by about as much as the architecture does), so it flatters the best
    against the baselines; fresh seeds compare them on equal terms."""
    if seeds == 0 or not isinstance(problem.evaluator, Trainer):
        return {}
    fresh = problem.evaluator.fresh(seeds)
    which = fresh.seeds_label
    networks: dict[str, tuple[str, Candidate]] = {
        label: (f"width {info['width_mult']:g}, {which}", problem.base_at_width(info["width_mult"]))
        for label, info in base_info.items()}
    if best is not None:
        networks = {"best": (f"trial {best.number}, {which}", problem.candidate(best.params)), **networks}
    kept = dict(study.user_attrs.get("fresh_seeds", {}))
    todo = {key: (tag, candidate) for key, (tag, candidate) in networks.items() if tag not in kept}
    if todo:
        print(f"training {', '.join(todo)} again from {which} (fresh_seeds={seeds})", file=sys.stderr)
    for tag, candidate in todo.values():
        kept[tag] = list(problem.score(candidate, evaluator=fresh).seed_scores)
        study.set_user_attr("fresh_seeds", kept)
    return {key: tuple(kept[tag]) for key, (tag, _) in networks.items()}
