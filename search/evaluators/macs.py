"""``evaluator=macs``: the deployment network's multiply-adds as its score, more ranking higher.

The cheapest proxy of all, and the baseline a zero-cost proxy must beat: on NAS-Bench-201 the
FLOPs and the parameter count rank the networks at a Spearman correlation of 0.6-0.7 with their
trained accuracy (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021), and
no zero-cost proxy so far beats the parameter count consistently (Li et al., "ZiCo", ICLR 2023).
It needs no data and no training: the count is ``archgen.cost.count``'s, on the meta device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from archgen import count

from ..data import Dataset
from .base import Candidate, Evaluator, Report, Score, register_evaluator


@dataclass(frozen=True)
class MacsSettings:
    """``evaluator=macs`` has no settings: a count is a count."""


@register_evaluator("macs")
class Macs(Evaluator):
    """The multiply-adds of the deployment network, in millions."""

    Settings = MacsSettings
    metric = "mmacs"  # millions of multiply-adds (trials.csv's "macs" column is the count itself)
    needs_data = False

    def cost(self, data: Dataset | None) -> str:
        return "a count of the multiply-adds on the meta device, no data, no training"

    def evaluate(self, candidate: Candidate, data: Dataset | None, report: Report | None = None) -> Score:
        start = time.perf_counter()
        macs = count(candidate.spec).macs
        return Score(macs / 1e6, time.perf_counter() - start)
