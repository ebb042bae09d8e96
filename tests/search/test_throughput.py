"""``python -m search.throughput``: training variants timed side by side and checked against eager."""

from __future__ import annotations

import json
import subprocess
import sys

from .test_search import REPO


def test_the_quick_form_times_each_variant_and_checks_it_against_eager(tmp_path):
    r = subprocess.run([sys.executable, "-m", "search.throughput", "quick=true", "network=mbv3_small", "data=digits",
                        "data.limit=200", "train.batch_size=32", "train.device=cpu",
                        "variants=[channels_last,eager]", f"hydra.run.dir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "throughput.json").read_text())
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == ["eager", "channels_last"]  # eager first: the reference
    assert rows["eager"]["speedup"] == 1 and rows["eager"]["first_loss_diff"] == 0 and rows["eager"]["agrees"]
    assert rows["channels_last"]["images_per_s"] > 0 and rows["channels_last"]["first_loss_diff"] < 1e-2
    assert result["rounding"] is not None and rows["channels_last"]["check_s"] > 0
    assert "| channels_last |" in (tmp_path / "throughput.md").read_text()


def test_an_unknown_variant_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "search.throughput", "variants=[eager,jit]", f"hydra.run.dir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "search.throughput: error: unknown variant 'jit'; known: eager, channels_last, compile, compile_channels_last"
