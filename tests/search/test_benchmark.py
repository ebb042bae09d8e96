"""``python -m search.benchmark``: the quick form end to end (outputs and their consistency), bad input.

One quick run (a tiny MobileNetV3-Small space at 64x64, digits, 4 trials, 2 fresh seeds) serves
every check of the outputs; it takes about a minute and a half on two loaded cores.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra
from optuna.trial import TrialState

from search.benchmark import COLUMNS, main

from .conftest import SPACE

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
# multiples of the base's latency, wide so that every trial of the tiny space (all near the base) fits
BUDGETS = (4, 8)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.benchmark", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def _verdict(d: float, se: float) -> str:
    """The house rule: better means a paired difference beyond 2 standard errors."""
    return "search better" if d > 2 * se else "base better" if d < -2 * se else "no difference measured"


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("benchmark")
    space = tmp / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp / "run"
    r = _cli("quick=true", "data=digits", f"space={space}", f"budgets=[{','.join(map(str, BUDGETS))}]",
             f"hydra.run.dir={out}")
    return {"result": r, "out": out, "json": json.loads((out / "benchmark.json").read_text()) if r.returncode == 0 else None}


@pytest.fixture(scope="module")
def summary(quick) -> dict[str, Any]:
    assert quick["result"].returncode == 0, quick["result"].stderr
    return quick["json"]


@pytest.fixture(scope="module")
def study(quick, summary) -> optuna.Study:
    return optuna.load_study(study_name="benchmark", storage=f"sqlite:///{quick['out'] / 'study.db'}")


def test_the_quick_run_exits_0_and_writes_its_four_files(quick, summary):
    out = quick["out"]
    assert {p.name for p in out.iterdir()} >= {"benchmark.md", "benchmark.csv", "benchmark.json", "benchmark.png", "study.db"}
    assert (out / "benchmark.png").read_bytes().startswith(PNG)
    assert "no trial within" not in quick["result"].stderr  # no budget was left out
    assert "Traceback" not in quick["result"].stderr


def test_there_is_one_comparison_per_budget_at_its_multiple_of_the_base(summary):
    comparisons = summary["comparisons"]
    assert [c["fraction"] for c in comparisons] == list(BUDGETS)
    assert summary["base_ms"] > 0
    for c in comparisons:
        assert c["budget_ms"] == pytest.approx(c["fraction"] * summary["base_ms"])
    assert 0 < summary["search_seconds"] < summary["seconds"]


def test_each_network_is_trained_from_the_quick_forms_two_fresh_seeds(summary):
    nets = [c[k] for c in summary["comparisons"] for k in ("searched", "scaled")] + [summary["base"]]
    for net in nets:
        assert len(net["accuracies"]) == 2 and all(0 <= a <= 1 for a in net["accuracies"])
        assert net["latency"]["median_ms"] > 0 and net["latency"]["repeats"] == 5


def test_the_difference_its_standard_error_and_the_verdict_follow_from_the_paired_accuracies(summary):
    for c in summary["comparisons"]:
        diffs = [a - b for a, b in zip(c["searched"]["accuracies"], c["scaled"]["accuracies"], strict=True)]
        d, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
        assert c["difference"] == pytest.approx(d, abs=1e-12)
        assert c["standard_error"] == pytest.approx(se, abs=1e-12)
        assert c["verdict"] == _verdict(d, se)
        assert c["latency_ratio"] == pytest.approx(c["scaled"]["latency"]["median_ms"] / c["searched"]["latency"]["median_ms"])
    assert summary["wins"] == sum(c["verdict"] == "search better" for c in summary["comparisons"])


def test_the_searched_network_of_a_budget_is_the_most_accurate_trial_within_it(summary, study):
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert summary["trials"] == len(study.trials) >= 4  # quick form: 4 trials (two workers may overshoot)
    # every completed trial re-measured against the base: the budgets apply to these ratios
    ratios = {int(k): v for k, v in summary["latency_ratios"].items()}
    assert sorted(ratios) == sorted(t.number for t in done) and all(r > 0 for r in ratios.values())
    for c in summary["comparisons"]:
        trial = study.trials[c["trial"]]
        assert trial.state == TrialState.COMPLETE and ratios[trial.number] <= c["fraction"]
        within = [t.user_attrs["accuracy"] for t in done if ratios[t.number] <= c["fraction"]]
        assert trial.user_attrs["accuracy"] == max(within)


def test_the_csv_has_two_rows_per_budget_and_the_base(quick, summary):
    with open(quick["out"] / "benchmark.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
    assert header == list(COLUMNS)
    assert len(rows) == 2 * len(BUDGETS) + 1
    for i, c in enumerate(summary["comparisons"]):
        searched, scaled = rows[2 * i], rows[2 * i + 1]
        budget = f"{c['fraction']:g}x ({c['budget_ms']:.2f} ms)"
        assert searched["budget"] == scaled["budget"] == budget
        assert searched["network"] == f"searched (trial {c['trial']})" and scaled["network"] == f"base x width {c['width']:g}"
        assert searched["verdict"] == c["verdict"] and scaled["verdict"] == ""
        assert searched["searched - scaled"] == f"{c['difference']:+.4f} ± {c['standard_error']:.4f}"
        assert searched["seeds"] == scaled["seeds"] == "2"
    assert rows[-1]["budget"] == "-" and rows[-1]["network"] == "base mbv3_small"


def test_the_markdown_states_the_table_the_wins_and_the_running_time(quick, summary):
    md = (quick["out"] / "benchmark.md").read_text()
    lines = md.splitlines()
    assert "| " + " | ".join(COLUMNS) + " |" in lines
    wins = sum(c["verdict"] == "search better" for c in summary["comparisons"])
    assert f"The search beat width-scaling by more than 2 standard errors at {wins} of {len(BUDGETS)} budgets." in lines
    assert f"- **running time**: {summary['seconds'] / 60:.1f} min" in md


def test_a_run_with_the_same_storage_resumes_the_search_instead_of_repeating_it(quick, summary, study, tmp_path):
    trials, budget = len(study.trials), study.user_attrs["identity"]["budget_ms"]
    space = quick["out"].parent / "tiny.yaml"
    again = tmp_path / "again"
    r = _cli("quick=true", "data=digits", f"space={space}", f"budgets=[{','.join(map(str, BUDGETS))}]",
             f"storage=sqlite:///{quick['out'] / 'study.db'}", "study_name=benchmark", f"hydra.run.dir={again}")
    assert r.returncode == 0, r.stderr
    resumed = optuna.load_study(study_name="benchmark", storage=f"sqlite:///{quick['out'] / 'study.db'}")
    # the study already held n_trials: no new trial, and the constraint it was searched with is kept
    assert len(resumed.trials) == trials and resumed.user_attrs["identity"]["budget_ms"] == budget
    assert json.loads((again / "benchmark.json").read_text())["trials"] == trials


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("budgets=[]", "budgets must be a non-empty list of positive multiples of the base's latency, got []"),
        ("budgets=[0]", "budgets must be a non-empty list of positive multiples of the base's latency, got [0]"),
        ("fresh_seeds=1", "fresh_seeds must be an integer >= 2, got 1"),
        ("tolerance=2", "tolerance must be a fraction in (0, 1), got 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, arg, message):
    # the command line's own entry point, in this process: a fresh interpreter per case would
    # spend ten seconds importing torch to print one line
    monkeypatch.setattr(sys, "argv", ["search.benchmark", arg, f"hydra.run.dir={tmp_path / 'run'}"])
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.strip().splitlines() == [f"search.benchmark: error: {message}"]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "study.db").exists()  # refused before any search
