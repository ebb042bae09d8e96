"""python -m search.compare in its quick form: every strategy judged against NAS-Bench-Macro's ground
truth, and the claim it rests on, that an ``anytime`` strategy's answer after n trials of a longer run
is the answer of a run of n trials."""

from __future__ import annotations

import csv

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from archgen.zoo import CONF_DIR
from search import compare
from search.strategies import STRATEGIES, make_strategy


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("compare", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_the_quick_form_judges_every_strategy_against_the_optimum(tmp_path):
    cfg = _cfg("repeats=2", "trials=[4,12]", "percentiles=[50]", "workers=1")
    summary = compare.run(cfg, tmp_path)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cfg.compare) * 2 * 1 * 2
    for r in rows:
        assert float(r["regret"]) == pytest.approx(float(r["optimum"]) - float(r["true_acc"]))
        if r["optimal"] == "True":
            assert float(r["regret"]) == pytest.approx(0) and r["over_budget"] == "False"
        if r["over_budget"] == "False" and r["arch"]:
            assert float(r["regret"]) >= -1e-9  # within the budget nothing beats the optimum
        # the test counts an answer over the budget as the worst network: never a win
        assert (float(r["tested_regret"]) == pytest.approx(float(r["regret"]))) == (r["over_budget"] == "False")
    assert {(s["strategy"], s["trials"]) for s in summary} == {(v, n) for v in cfg.compare for n in (4, 12)}
    assert all(s["p"] is None if s["strategy"] == "random" else 0 <= s["p"] <= 1 for s in summary)
    assert all(s["q1"] <= s["median"] <= s["q3"] for s in summary)
    md = (tmp_path / "compare.md").read_text()
    assert all(f"| {v} | 12 |" in md for v in cfg.compare) and (tmp_path / "regret.png").stat().st_size > 0


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if STRATEGIES.get(n).anytime])
def test_an_anytime_strategys_answer_at_n_trials_is_that_of_a_run_of_n(name):
    cfg = _cfg()
    compare._init_worker(str(cfg.space), compare.LatencySettings(source="lut"), dict(cfg.table), None)
    strategy = make_strategy(name, {})
    budget = 0.8 * compare._problem.latency_range()["dearest"]  # binds: the dearest points are over it
    longer = compare.search_once(compare.Job(name, strategy, 3, 0, budget, (10, 25)))
    alone = compare.search_once(compare.Job(name, strategy, 3, 0, budget, (10,)))
    assert longer[0] == alone[0] and longer[0].arch is not None


def test_bad_settings_are_one_line():
    with pytest.raises(Exception, match="trials must be increasing integers"):
        compare.check_settings(_cfg("trials=[50,10]"))
    with pytest.raises(Exception, match="baseline must be one of compare"):
        compare.check_settings(_cfg("baseline=nope"))
