"""A tabular benchmark's ground truth over a whole space: every point's key, true score and latency,
so that an answer is judged by where it stands, not by its noisy trial score.

The latency of every point is the lookup table's prediction (``archgen.cost.lut``: no space of
thousands of networks is timed end to end); with ``latency=lut`` it is the search's own latency,
so the optimum within the budget is the optimum of the problem the search solved. Points that are
one network (NAS-Bench-Macro's identity at a stage's later positions) share one entry of the table
and count once in a rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .evaluators.table import Table
from .problem import Problem


@dataclass(frozen=True)
class GroundTruth:
    """Every point of a tabular space: its parameters, key, true score and predicted latency."""

    params: tuple[Mapping[str, Any], ...]
    keys: tuple[str, ...]
    truth: np.ndarray  # mean of the table's trainings, per point
    latency_ms: np.ndarray  # the lookup table's prediction, per point
    network: np.ndarray  # an id per distinct network (its table entry): equal ids are one network

    @classmethod
    def of(cls, problem: Problem) -> GroundTruth:
        """The whole space of ``problem``, whose evaluator is a table and whose space declares a key."""
        evaluator = problem.evaluator
        if not isinstance(evaluator, Table):
            raise TypeError(f"ground truth needs evaluator=table, not {evaluator.name}")
        params, keys, latency = [], [], []
        for point in problem.space.points():
            params.append(dict(point.params))
            keys.append(problem.space.key(point.params))
            latency.append(problem.lut_ms(point.spec))
        entries: dict[tuple[float, ...], int] = {}
        network = [entries.setdefault(evaluator.runs(k), len(entries)) for k in keys]
        return cls(tuple(params), tuple(keys), np.array([evaluator.truth(k) for k in keys]), np.array(latency),
                   np.array(network))

    def within(self, budget_ms: float) -> np.ndarray:
        return self.latency_ms <= budget_ms

    def optimum(self, budget_ms: float) -> float:
        """The best true score of a point within the budget (-inf where none is)."""
        inside = self.truth[self.within(budget_ms)]
        return float(inside.max()) if inside.size else -np.inf

    def rank(self, truth: float, budget_ms: float) -> tuple[int, int]:
        """(1 + how many distinct networks within the budget are truly better, how many there are)."""
        inside = self.within(budget_ms)
        _, first = np.unique(self.network[inside], return_index=True)
        distinct = self.truth[inside][first]
        return int((distinct > truth).sum()) + 1, int(distinct.size)

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of the space's latency."""
        return float(np.percentile(self.latency_ms, q))

    def notes(self, key: str, budget_ms: float, metric: str) -> tuple[list[str], dict[str, Any]]:
        """What the report says of an answer with ``key``, and the figures summary.json keeps."""
        i = self.keys.index(key)
        true, best = float(self.truth[i]), self.optimum(budget_ms)
        rank, n = self.rank(true, budget_ms)
        top = self.keys[int(np.flatnonzero(self.within(budget_ms) & (self.truth == best))[0])] if n else None
        lines = [f"ground truth (the table's mean of {metric} over its trainings; the latency of every point the "
                 f"lookup table's): the best found, arch {key}, is truly {true:.2f}, rank {rank} of the {n} distinct "
                 f"networks within {budget_ms:g} ms; the best within the budget is arch {top}, {best:.2f}: regret "
                 f"{best - true:.2f} points" + ("" if self.latency_ms[i] <= budget_ms else
                                                 "; the best found is over the budget by the lookup table's latency")]
        figures = {"true_score": true, "true_rank": rank, "networks_within_budget": n, "optimum": best,
                   "regret": best - true}
        return lines, figures
