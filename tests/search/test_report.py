"""What a run writes from its study (``search.report`` and ``search.outputs``): trials.csv, the
report's tables and notes, the counts of trials by how they ended, and the sweep's table."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from archgen.cost.latency import Latency
from search.outputs import Counts
from search.report import Entry, aggregate, report_md, write_trials
from search.trials import INTERRUPTED

FP = {"cpu": "test cpu", "threads": 1, "torch": "x", "device": "cpu", "allocator": "-", "backend": "eager",
      "runtime": "eager"}
PARAMS = {"s10_b2_k": 3, "s2_b0_k": 5, "s2_k": 3, "s10_depth": 0}  # stage 10 after stage 2, per-stage before per-block
DISTS = {k: CategoricalDistribution([3, 5] if k.endswith("_k") else [0]) for k in PARAMS}


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    attrs = {"accuracy": 0.9, "latency_ms": 4.0, "macs": 10, "num_params": 2, "eval_seconds": 1.0}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params=PARAMS, distributions=DISTS, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.FAIL, params=PARAMS, distributions=DISTS,
                                 user_attrs={"fail_reason": "training loss is nan at epoch 1, step 3"}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=PARAMS, distributions=DISTS,
                                 user_attrs={"latency_ms": 9.0, "pruned_at_epoch": 1, "pruned_accuracy": 0.2}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=PARAMS, distributions=DISTS, user_attrs={"latency_ms": 12.0}))
    study.add_trial(create_trial(state=TrialState.FAIL, params=PARAMS, distributions=DISTS,
                                 user_attrs={"fail_reason": INTERRUPTED}))
    return study


def test_trials_csv_has_a_row_per_trial_the_reason_of_each_failure_and_the_parameters_in_space_order(tmp_path):
    write_trials(tmp_path / "trials.csv", _study(), "accuracy")
    with (tmp_path / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    header = (tmp_path / "trials.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["s2_k", "s2_b0_k", "s10_depth", "s10_b2_k"]
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "PRUNED", "PRUNED", "FAIL"]
    assert rows[0]["accuracy"] == "0.9" and rows[0]["value"] == "0.9" and rows[0]["s2_b0_k"] == "5"
    assert rows[1]["fail_reason"] == "training loss is nan at epoch 1, step 3" and rows[2]["pruned_at_epoch"] == "1"


def test_counts_say_what_ended_how_and_leave_out_what_does_not_count():
    counts = Counts.of(_study())
    assert (counts.complete, counts.fail, counts.pruned, counts.pruned_early, counts.not_counted) == (1, 2, 2, 1, 1)
    assert counts.done == 4  # the interrupted trial is not counted toward n_trials
    assert counts.describe(10) == ("4 of n_trials=10 done (1 complete, 2 failed, 1 pruned over the budget, 1 pruned early "
                                   "by the pruner); 1 not counted (lost and retried, or interrupted)")


def _entry(label: str, ms: float, score: float, fresh: tuple[float, ...] = ()) -> Entry:
    return Entry(label, Latency(ms, ms * 0.9, ms * 1.1, 50, 1, FP), score, 200_000_000, 3_000_000, 5.0, fresh)


def test_the_report_compares_the_networks_and_lists_the_best_the_front_the_failures_and_the_notes():
    study = _study()
    best = study.trials[0]
    entries = [_entry("best found (trial 0)", 4.0, 0.9, (0.88, 0.9)), _entry("base x", 6.0, 0.92, (0.91, 0.93))]
    md = report_md(title="Search: tiny within 5 ms", settings={"space": "tiny"}, entries=entries, metric="accuracy",
                   best=best, study=study, budget_ms=5.0, front=[best], notes=["a note"])
    assert md.startswith("# Search: tiny within 5 ms\n") and "- **space**: tiny" in md
    assert "| network | latency (ms) | p10-p90 (ms) | meets 5 ms | accuracy (search) | accuracy, 2 fresh seeds |" in md
    assert "| best found (trial 0) | 4.00 | 3.60-4.40 | yes | 0.9000 | 0.8900 ± 0.0141 | 200.0 | 3.00 |" in md
    assert "| base x | 6.00 | 5.40-6.60 | **no** |" in md
    assert "## Best found: trial 0" in md and "| s2_k | 3 |" in md
    assert "## Pareto front within the budget" in md and "| 0 | 4.00 | 0.9000 |" in md
    assert "## Failed trials" in md and "| 1 | training loss is nan at epoch 1, step 3 |" in md
    assert md.rstrip().endswith("- a note")


def test_entry_knows_whether_it_meets_the_budget_and_its_fresh_mean():
    assert _entry("a", 5.0, 0.5).meets and not _entry("b", 5.01, 0.5).meets
    assert _entry("a", 1.0, 0.5, (0.2, 0.4)).fresh_mean == pytest.approx(0.3) and _entry("a", 1.0, 0.5).fresh_mean is None
    assert _entry("a", 1.0, 0.5).to_dict()["latency"]["fingerprint"] == FP


def test_the_sweep_table_collects_every_jobs_summary_in_order(tmp_path):
    for job, budget, score in (("1_budget_ms=20", 20, 0.8), ("0_budget_ms=10", 10, 0.7), ("10_budget_ms=30", 30, 0.9)):
        (tmp_path / job).mkdir()
        (tmp_path / job / "summary.json").write_text(json.dumps(
            {"space": "tiny", "strategy": "mnasnet", "budget_ms": budget, "score": score, "trials": 3}))
    rows = aggregate(tmp_path)
    assert [r["budget_ms"] for r in rows] == [10, 20, 30] and [r["job"] for r in rows][0] == "0_budget_ms=10"
    assert (tmp_path / "best_per_budget.csv").read_text().count("\n") == 4
    assert "| 0_budget_ms=10 | tiny | mnasnet | 10 |" in (tmp_path / "best_per_budget.md").read_text()
