"""``evaluator=table``: a tabular benchmark's trained results as the score, for any such benchmark.

A tabular benchmark trained every network of a space several times and published the results:
NAS-Bench-Macro (Su et al., CVPR 2021) trained each of its 6,561 networks three times on CIFAR-10
for 50 epochs; it ships in ``search/tables/`` (``NOTICE`` gives its license and citation). The
space declares how a point's choices make its key in the file (``key:``, ``archgen.space``).

Each trial's score is **one** of the point's trainings, drawn with the trial's seed, so a search
sees the seed noise a real training has (about 0.2 points on NAS-Bench-Macro); the mean of the
trainings is the point's true score (``true_acc``), which the report and ``python -m
search.compare`` judge the answer by. A network outside a trial (a baseline) scores its true score.

The file is JSON: ``{key: {<field>: [score, ...], ...}}`` (``field``: which entry holds the
trainings' scores) or ``{key: [score, ...]}`` (``field: null``), in the benchmark's own units
(NAS-Bench-Macro: percent).
"""

from __future__ import annotations

import functools
import json
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from archgen import SpecError
from archgen.checks import check_setting

from ..data import Dataset
from .base import Candidate, Evaluator, Report, Score, TrialFailed, register_evaluator

TABLES_DIR = Path(__file__).resolve().parent.parent / "tables"
DEFAULT_FILE = "nas-bench-macro_cifar10.json"


@dataclass(frozen=True)
class TableSettings:
    """``table.*``: which benchmark file, and where its entries keep the trainings' scores."""

    file: str = DEFAULT_FILE  # a file of search/tables/, or a path
    field: str | None = "test_acc"  # the entry's list of the trainings' scores; null: the entry is that list

    def __post_init__(self) -> None:
        check_setting("table.file", self.file, isinstance(self.file, str) and bool(self.file), "a file name or path")
        check_setting("table.field", self.field, self.field is None or (isinstance(self.field, str) and bool(self.field)),
                      "the name of the entries' list of scores, or null")

    @property
    def path(self) -> Path:
        shipped = TABLES_DIR / self.file
        return shipped if "/" not in self.file and shipped.is_file() else Path(self.file)


@functools.lru_cache(maxsize=4)
def load_table(path: Path, field: str | None) -> Mapping[str, tuple[float, ...]]:
    """Every key's scores, checked: a list of at least one finite number per key. SpecError names the
    file, the key and the field on anything else."""
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        known = ", ".join(sorted(p.name for p in TABLES_DIR.glob("*.json")))
        raise SpecError(f"table.file: cannot read {path} ({e.strerror or e}); shipped: {known}") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: not JSON ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{path}: expected an object mapping architecture keys to results")
    out = {}
    for key, entry in raw.items():
        scores = entry.get(field) if field is not None and isinstance(entry, dict) else (entry if field is None else None)
        if not (isinstance(scores, list) and scores and all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores)):
            where = f"entry {key!r}" + (f", field {field!r}" if field is not None else "")
            raise SpecError(f"{path}: {where}: expected a non-empty list of finite scores (one per training), got "
                            f"{str(scores)[:80]}")
        out[str(key)] = tuple(float(v) for v in scores)
    return out


@register_evaluator("table")
class Table(Evaluator):
    """A tabular benchmark's trainings: one drawn per trial, their mean the truth."""

    Settings = TableSettings
    metric = "accuracy"  # in the benchmark's units (NAS-Bench-Macro: percent)
    needs_data = False
    tabular = True
    columns = ("arch", "true_acc")

    @property
    def scores(self) -> Mapping[str, tuple[float, ...]]:
        return load_table(self.settings.path, self.settings.field)

    def runs(self, key: str | None) -> tuple[float, ...]:
        """The trainings of the network with ``key``; TrialFailed where the table has none."""
        if key is None:
            raise TrialFailed("not a point of the space (no key in the benchmark): a tabular benchmark cannot score it")
        runs = self.scores.get(key)
        if runs is None:
            raise TrialFailed(f"{self.settings.path.name} has no entry {key!r}")
        return runs

    def truth(self, key: str) -> float:
        """The network's true score: the mean of its trainings."""
        return statistics.fmean(self.runs(key))

    def cost(self, data: Dataset | None) -> str:
        scores = self.scores
        n = statistics.median(len(v) for v in scores.values())
        return (f"a lookup in {self.settings.path.name} ({len(scores)} keys, {n:g} trainings each): one training "
                "drawn per trial, no data, no training")

    def evaluate(self, candidate: Candidate, data: Dataset | None, report: Report | None = None) -> Score:
        start = time.perf_counter()
        runs = self.runs(candidate.key)
        truth = statistics.fmean(runs)
        value = truth if candidate.draw is None else runs[random.Random(candidate.draw).randrange(len(runs))]
        attrs: dict[str, Any] = {"arch": candidate.key, "true_acc": truth}
        return Score(value, time.perf_counter() - start, (value,), attrs)
