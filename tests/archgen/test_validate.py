"""The lookup table's validation: predicted vs measured over random architectures of a space."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy.stats import kendalltau

from archgen.cost.latency import LatencySettings
from archgen.cost.lut import LatencyTable
from archgen.validate import validate
from archgen.space import Space

SMALL = {"base": "mbv3_small", "knobs": {"input_size": 64}, "per_block": {"k": [3, 5, 7], "exp": [3, 6], "se": [False, True]}}
REPO = Path(__file__).resolve().parents[2]


def test_validation_reports_the_error_and_the_rank_agreement_it_measured(tmp_path):
    table = LatencyTable(LatencySettings(warmup=1, repeats=5), tmp_path)
    result = validate(table, Space(SMALL), samples=6, calibration=1, seed=1)
    assert len(result.checks) == 6 and result.calibration.networks == 3  # cheapest, dearest, one random
    errors = [abs(c.predicted_ms - c.measured_ms) / c.measured_ms for c in result.checks]
    assert result.mape == pytest.approx(statistics.fmean(errors))
    tau = kendalltau([c.predicted_ms for c in result.checks], [c.measured_ms for c in result.checks]).statistic
    assert result.kendall_tau == pytest.approx(tau)
    assert table.calibration == result.calibration  # the table keeps the calibration it was validated with


def test_the_command_writes_its_figures_and_refuses_bad_settings(tmp_path):
    space = tmp_path / "small.yaml"
    space.write_text(yaml.safe_dump(SMALL))
    env = {**os.environ}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archgen.validate", f"space={space}", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300, env=env)

    r = cli("samples=4", "calibration=0", "latency.repeats=3", "latency.warmup=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "run" / "validation.csv").read_text().splitlines()
    assert rows[0] == "index,predicted_ms,measured_ms,error_pct" and len(rows) == 5
    doc = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert doc["samples"] == 4 and 0 <= doc["mape"] and -1 <= doc["kendall_tau"] <= 1
    assert f"MAPE {100 * doc['mape']:.1f} %" in r.stdout
    bad = cli("samples=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and bad.stderr.strip() == "archgen.validate: error: samples must be an integer >= 2, got 1"
