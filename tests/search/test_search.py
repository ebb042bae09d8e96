"""``python -m search``: every strategy end to end, resuming, two workers, failures, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
import torch
import yaml
from optuna.trial import TrialState

import archgen
from archgen.cost.latency import LatencySettings
from archgen.space import Space
from archgen.zoo import CONF_DIR
from search.data import DataSettings, load_data
from search.evaluators import TrialFailed
from search.evaluators.naswot import Naswot
from search.evaluators.train import TrainSettings, train
from archgen.cli import path_component
from search.__main__ import register_resolvers
from search.pipeline import check_budget, run
from search.evaluators import EVALUATORS
from search.storage import open_storage
from search.strategies import STRATEGIES
from search.problem import Problem

from tests.conftest import full_disk, user_block_module

from .conftest import SPACE, fast_overrides, run_search

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _study(tmp_path: Path, name: str) -> optuna.Study:
    # through the search's own opener: it takes the lock a worker holds while it creates the tables
    return optuna.load_study(study_name=name, storage=open_storage(f"sqlite:///{tmp_path / 'studies.db'}").backend)


# NetAdapt's proposals are chosen by the lookup table's figures: entries timed 3 times each are noisy
# enough to reverse a cut, so its tests time each block 20 times. And the table's scale is fitted on
# three networks of a space that spans a few milliseconds, so a prediction may move by much less than
# the blocks' sum: the tests take a step (netadapt.step=0.0001) that any cut the table sees makes
NETADAPT_TIMING = {"warmup": 3, "repeats": 20}


def _with_width(space_file: Path) -> Path:
    """The tiny space plus a per-stage width: kernel and SE cut some hundredths of a millisecond
    each at 64x64, a measured figure that noise can reverse, so NetAdapt's tests need one knob
    whose cut the lookup table always sees."""
    space = yaml.safe_load(space_file.read_text())
    wide = space_file.with_name("tiny_width.yaml")
    wide.write_text(yaml.safe_dump({**space, "per_stage": {"width": [0.5, 0.75, 1.0]}}))
    return wide


def _halfway_budget(space_file: Path) -> float:
    """A budget between the space's cheapest point and the base, by the lookup table NetAdapt uses."""
    problem = Problem(space_file, 1.0, LatencySettings(source="lut", **NETADAPT_TIMING), Naswot(), DataSettings(limit=200))
    ends = [problem.latency_ms(problem.space.cheapest().spec), problem.latency_ms(problem.space.nearest_to_base().spec)]
    return round(sum(ends) / 2, 3)


# what a strategy needs beyond the defaults to show what it does in a few trials
N_TRIALS = {"netadapt": 16}  # a proposal per unit (10 here) each iteration: room for two iterations
SETTINGS = {"netadapt": ["netadapt.step=0.0001"],
            "evolution": ["evolution.population=3", "evolution.tournament=2"]}  # children in 6 trials


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_searches_and_writes_what_a_user_acts_on(compose_search, space_file, tmp_path, strategy):
    out = tmp_path / "run"
    n_trials = N_TRIALS.get(strategy, 6)
    extra = list(SETTINGS.get(strategy, []))
    if STRATEGIES.get(strategy).needs_table:  # it chooses by the table: timed well enough, a budget it must shrink to
        space_file = _with_width(space_file)
        extra += [f"budget_ms={_halfway_budget(space_file)}", "latency=lut",
                  *(f"latency.{k}={v}" for k, v in NETADAPT_TIMING.items())]
    summary = run_search(compose_search, out, *fast_overrides(space_file, tmp_path, f"strategy={strategy}",
                                                              f"n_trials={n_trials}", "study_name=s", *extra))
    study = _study(tmp_path, "s")
    trials = study.get_trials()
    assert 0 < len(trials) <= n_trials and summary["trials"] == len(trials), study.user_attrs
    # best.yaml is the best trial's architecture, as its base's table (python -m archgen spec=...)
    best = study.trials[summary["best_trial"]]
    space = Space(space_file)
    written = archgen.load_spec(out / "best.yaml")
    assert [b.to_dict() for b in written.blocks] == [b.to_dict() for b in space.apply(best.params).blocks]
    table = yaml.safe_load((out / "best.yaml").read_text())
    assert "blocks" not in table and table["body"]["columns"] == yaml.safe_load(
        (REPO / "conf" / "model" / "mbv3_small.yaml").read_text())["body"]["columns"]
    mine = archgen.load_spec(out / "best.yaml", num_classes=10, in_chans=1, input_size=32, width_mult=0.5)
    assert mine.num_classes == 10 and mine.blocks[0].in_chs == 1 and mine.blocks[-1].out_chs == 10
    # trials.csv: one row per trial with the parameters as the space names them
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == len(trials) + 1 and "s2_b0_k" in rows[0] and "latency_ms" in rows[0]
    assert (out / "pareto.png").read_bytes().startswith(PNG) and (out / "history.png").read_bytes().startswith(PNG)
    report = (out / "report.md").read_text()
    assert f"best found (trial {best.number})" in report and "base mbv3_small" in report
    assert ("MnasNet's baseline" in report) == (summary["scaled_width"] is not None)
    assert ("there is no width-scaled baseline" in report) == (summary["scaled_width"] is None)
    # the best is re-measured, and the report says whether it meets the budget
    assert summary["latency_ms"] > 0 and summary["meets_budget"] == (summary["latency_ms"] <= summary["budget_ms"])
    assert json.loads((out / "summary.json").read_text())["best_trial"] == best.number
    if strategy in ("evolution", "local"):  # a child of a parent, a neighbour of the current point: one parameter changed
        key = {"evolution": "evolution:parent", "local": "local_search:current"}[strategy]
        derived = [t for t in trials if key in t.system_attrs]
        assert derived and all(sum(v != trials[t.system_attrs[key]].params[k] for k, v in t.params.items()) == 1
                               for t in derived)
    if strategy == "netadapt":
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert all("change" in t.user_attrs and t.user_attrs["lut_ms"] > 0 for t in done)
        accepted = [study.trials[v] for k, v in sorted(study.user_attrs.items()) if k.startswith("netadapt_iter_")]
        lut = [t.user_attrs["lut_ms"] for t in accepted]
        assert accepted and lut == sorted(lut, reverse=True)  # every iteration cuts the table's latency


@pytest.mark.parametrize("evaluator", EVALUATORS.names())
def test_every_evaluator_scores_a_search_and_the_report_says_what_one_evaluation_costs(compose_search, space_file,
                                                                                       tmp_path, evaluator):
    cls = EVALUATORS.get(evaluator)
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    quick = [f"{evaluator}.{k}={v}" for k, v in {"epochs": 1, "batch_size": 32, "threads": 1}.items() if k in fields]
    space = "nasbench_macro" if cls.tabular else space_file  # a tabular benchmark scores the points of its own space
    args = [a for a in fast_overrides(space, tmp_path, "study_name=e", "n_trials=2", "baselines=false", "fresh_seeds=0")
            if not a.startswith(("evaluator=", "naswot."))]
    out = tmp_path / "run"
    summary = run_search(compose_search, out, *args, f"evaluator={evaluator}", *quick)
    metric = cls.metric
    assert summary["evaluator"] == evaluator and summary["metric"] == metric and summary["complete"] == 2
    trials = _study(tmp_path, "e").trials
    assert all(math.isfinite(t.user_attrs[metric]) for t in trials)
    assert (out / "trials.csv").read_text().splitlines()[0].split(",")[2] == metric
    report = (out / "report.md").read_text()
    assert f"- **evaluator**: {evaluator} on " in report and "; one evaluation: " in report
    assert ("no data" in report) == (not cls.needs_data)
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert header[3:3 + len(cls.columns)] == list(cls.columns)
    if cls.tabular:  # the best's true score, and its rank among the space's networks within the budget
        assert "ground truth" in report and 1 <= summary["true_rank"] <= summary["networks_within_budget"]
        assert summary["regret"] == pytest.approx(summary["optimum"] - summary["true_score"])


def test_a_training_search_trains_the_report_networks_again_from_fresh_seeds(compose_search, space_file, tmp_path,
                                                                             monkeypatch):
    naswot = ("evaluator=", "naswot.")
    common = [a for a in fast_overrides(space_file, tmp_path, "study_name=t") if not a.startswith(naswot)]
    common += ["evaluator=train", "train.epochs=1", "train.batch_size=32", "train.seed=5", "fresh_seeds=2"]
    summary = run_search(compose_search, tmp_path / "a", *common, "n_trials=2")
    study = _study(tmp_path, "t")
    best = study.trials[summary["best_trial"]]
    # the search evaluated seed 5; the fresh trainings are the seeds after it, 6 and 7
    proxy = Space(space_file, num_classes=10, in_chans=1, input_size=32).apply(best.params)
    data = load_data(DataSettings(limit=200))
    again = tuple(train(proxy, data, TrainSettings(epochs=1, batch_size=32, seed=s)).accuracy for s in (6, 7))
    assert summary["entries"]["best"]["fresh"] == again and summary["fresh_score"] == pytest.approx(sum(again) / 2)
    assert summary["score"] == train(proxy, data, TrainSettings(epochs=1, batch_size=32, seed=5)).accuracy
    assert len(summary["entries"]["base"]["fresh"]) == 2 and summary["base_fresh_score"] is not None
    report = (tmp_path / "a" / "report.md").read_text()
    assert "| accuracy (search) | accuracy, 2 fresh seeds |" in report
    # kept on the study: resuming with more trials trains only a new best again
    kept = study.user_attrs["fresh_seeds"]
    assert list(kept[f"trial {best.number}, seeds 6-7"]) == list(again)
    calls = []
    real = Problem.score
    monkeypatch.setattr(Problem, "score", lambda self, *a, evaluator=None: (
        evaluator is not None and calls.append(a)) or real(self, *a, evaluator=evaluator))
    resumed = run_search(compose_search, tmp_path / "b", *common, "n_trials=3")
    assert len(calls) == (resumed["best_trial"] != best.number)
    assert resumed["entries"]["base"]["fresh"] == summary["entries"]["base"]["fresh"]


def test_pareto_prunes_a_point_over_the_budget_before_training_it(compose_search, space_file, tmp_path):
    settings = LatencySettings(source="lut", warmup=1, repeats=3)
    probe = Problem(space_file, 1.0, settings, Naswot(), DataSettings(limit=200))
    budget = round(probe.latency_ms(probe.space.cheapest().spec) * 1.001, 4)  # the cheapest point fits, little else
    out = tmp_path / "run"
    summary = run_search(compose_search, out, *fast_overrides(space_file, tmp_path, "strategy=pareto", "latency=lut",
                                                              f"budget_ms={budget}", "n_trials=6", "study_name=p"))
    trials = _study(tmp_path, "p").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(trials) == 6 and pruned, "random points of the space cost more than its cheapest one"
    for t in trials:  # pruned exactly when over the budget; a pruned point has its latency and no score
        assert (t.state == TrialState.PRUNED) == (t.user_attrs["latency_ms"] > budget)
    for t in pruned:
        assert t.user_attrs["fail_reason"] == f"over the budget: {t.user_attrs['latency_ms']:.2f} ms > {budget:g} ms, not trained"
        assert "naswot" not in t.user_attrs and t.values is None
    assert summary["pruned"] == len(pruned) and summary["complete"] + summary["fail"] + summary["pruned"] == 6
    assert summary["best_trial"] is None or trials[summary["best_trial"]].state == TrialState.COMPLETE
    assert f"{len(pruned)} pruned over the budget" in (out / "report.md").read_text()
    states = [row.split(",")[1] for row in (out / "trials.csv").read_text().splitlines()[1:]]
    assert states.count("PRUNED") == len(pruned)


def test_a_study_resumes_where_it_stopped(compose_search, space_file, tmp_path):
    common = fast_overrides(space_file, tmp_path, "study_name=r", "baselines=false")
    run_search(compose_search, tmp_path / "a", *common, "n_trials=3")
    first = [(t.number, t.params) for t in _study(tmp_path, "r").trials]
    run_search(compose_search, tmp_path / "b", *common, "n_trials=5")
    trials = _study(tmp_path, "r").trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [(t.number, t.params) for t in trials[:3]] == first  # nothing lost or repeated
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len((tmp_path / "b" / "trials.csv").read_text().splitlines()) == 6


@pytest.fixture(scope="module")
def one_trial_study(tmp_path_factory) -> Path:
    """A study of one trial, made once for the settings it is resumed with below (a refused run leaves it as it was)."""
    folder = tmp_path_factory.mktemp("identity")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(SPACE))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("search", overrides=fast_overrides(folder / "tiny.yaml", folder, "study_name=k", "baselines=false",
                                                         "n_trials=1"))
    run(cfg, folder / "a")
    return folder


@pytest.mark.parametrize(("change", "named"), [
    ("budget_ms=40", "budget_ms=50.0, not 40.0"),
    ("mnasnet.hard=false", "mnasnet.hard=True, not False"),
    ("mnasnet.alpha=-0.1", "mnasnet.alpha=-0.07, not -0.1"),
    ("data.size=16", "data.size=32, not 16"),
    ("data.limit=100", "data.limit=200, not 100"),
    ("naswot.batch_size=16", "naswot.batch_size=32, not 16"),
    ("latency.repeats=4", "latency.repeats=3, not 4"),
    ("seed=3", "seed=0, not 3"),
])
def test_a_resumed_study_must_keep_every_setting_that_gives_its_trials_their_meaning(compose_search, one_trial_study,
                                                                                   tmp_path, change, named):
    common = fast_overrides(one_trial_study / "tiny.yaml", one_trial_study, "study_name=k", "baselines=false")
    with pytest.raises(archgen.SpecError, match=re.escape(f"study 'k' was created with {named}; resume it with its settings")):
        run_search(compose_search, tmp_path / "b", *common, change, "n_trials=2")
    assert len(_study(one_trial_study, "k").trials) == 1  # refused before any trial


def test_a_study_knows_its_space_by_content_not_by_where_the_file_is(compose_search, space_file, tmp_path):
    common = ["study_name=k", "baselines=false", "n_trials=1", "naswot.threads=1"]
    run_search(compose_search, tmp_path / "a", *fast_overrides(space_file, tmp_path, *common))
    elsewhere = tmp_path / "clone" / space_file.name  # another checkout's copy, and another thread count: it may join
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(space_file.read_bytes())
    run_search(compose_search, tmp_path / "b", *fast_overrides(elsewhere, tmp_path, *common[:2], "n_trials=2", "naswot.threads=2"))
    assert len(_study(tmp_path, "k").trials) == 2
    edited = yaml.safe_load(space_file.read_text())
    edited["per_block"]["k"] = [3, 5, 7]
    elsewhere.write_text(yaml.safe_dump(edited))
    with pytest.raises(archgen.SpecError, match="study 'k' was created with space.digest="):
        run_search(compose_search, tmp_path / "c", *fast_overrides(elsewhere, tmp_path, *common[:2], "n_trials=3"))


def test_a_study_an_earlier_archgen_made_is_refused_in_one_line(compose_search, space_file, tmp_path):
    common = fast_overrides(space_file, tmp_path, "study_name=old", "baselines=false", "n_trials=1")
    study = optuna.create_study(study_name="old", storage=open_storage(f"sqlite:///{tmp_path / 'studies.db'}").backend,
                                direction="maximize")
    study.set_user_attr("identity", {"space": str(space_file), "budget_ms": 50.0, "strategy": "mnasnet"})
    with pytest.raises(archgen.SpecError, match="^study 'old' was created by an earlier archgen"):
        run_search(compose_search, tmp_path / "a", *common)


def test_two_workers_share_one_study(space_file, tmp_path):
    args = [*fast_overrides(space_file, tmp_path, "study_name=w", "n_trials=6", "baselines=false")]
    workers = [
        subprocess.Popen([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / f'w{i}'}"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    trials = _study(tmp_path, "w").trials
    assert len(trials) == 6  # the workers claim their trials under a lock: none overshoots
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    params = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(params)) >= len(trials) - 1  # the workers sample, they do not repeat each other's trials


def test_failed_trials_are_recorded_with_their_reason_and_the_search_goes_on(compose_search, space_file, tmp_path,
                                                                            monkeypatch):
    calls = iter(range(100))
    real = Problem.score

    def flaky(self, proxy, report=None):
        if next(calls) % 2 == 1:
            raise TrialFailed("training loss is nan at epoch 1, step 3")
        return real(self, proxy, report)

    monkeypatch.setattr(Problem, "score", flaky)
    summary = run_search(compose_search, tmp_path / "run", *fast_overrides(space_file, tmp_path, "study_name=f",
                                                                           "n_trials=4", "baselines=false"))
    trials = _study(tmp_path, "f").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL] * 2
    assert trials[1].user_attrs["fail_reason"] == "training loss is nan at epoch 1, step 3"
    assert summary["fail"] == 2 and summary["complete"] == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Failed trials" in report and "training loss is nan" in report
    assert "FAIL" in (tmp_path / "run" / "trials.csv").read_text()


def test_a_fixed_seed_gives_the_same_trials(compose_search, space_file, tmp_path):
    def params(name: str) -> list[dict]:
        run_search(compose_search, tmp_path / name, *fast_overrides(
            space_file, tmp_path, f"study_name={name}", "n_trials=5", "baselines=false", "latency=lut",
            "mnasnet.startup_trials=2", "seed=3"))
        return [t.params for t in _study(tmp_path, name).trials]

    assert params("a") == params("b")


def test_a_budget_the_space_cannot_meet_stops_before_any_trial(space_file, tmp_path):
    r = _cli(*fast_overrides(space_file, tmp_path, "budget_ms=0.01", "study_name=x"), f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr
    assert "budget_ms=0.01 cannot be met: the smallest latency space tiny reaches is" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "studies.db").exists()


@pytest.mark.parametrize("where", ["inside", "above"])
def test_the_run_says_where_the_budget_falls_in_the_space_and_warns_when_it_binds_nothing(space_file, capsys, where):
    # the lookup table's figures, so that the probe and the run see the same range (measured ones move on a busy machine)
    settings = LatencySettings(source="lut", warmup=1, repeats=5)
    probe = Problem(space_file, 1.0, settings, Naswot(), DataSettings(limit=200))
    reach = probe.latency_range()
    assert reach["cheapest"] < reach["dearest"]
    budget = round((reach["cheapest"] + reach["dearest"]) / 2, 2) if where == "inside" else round(reach["dearest"] * 10, 2)
    problem = Problem(space_file, budget, settings, Naswot(), DataSettings(limit=200))
    got = check_budget(problem)
    out, err = capsys.readouterr()
    assert got == reach
    line = (f"space tiny: latency {got['cheapest']:.2f} ms (cheapest point) to {got['dearest']:.2f} ms (dearest), "
            f"base mbv3_small {got['base']:.2f} ms (predicted by the lookup table, on cpu")
    assert line in out and f"the budget {budget:g} ms is {budget / got['base']:.2f}x the base" in out
    warning = f"search: warning: budget_ms={budget:g} is above the dearest point of space tiny"
    if where == "above":
        assert warning in err and "constrains nothing" in err and len(err.strip().splitlines()) == 1
        assert "100% of the way up the range" in out
    else:
        assert err == ""


def test_ctrl_c_saves_the_study_and_exits_130(space_file, tmp_path):
    args = fast_overrides(space_file, tmp_path, "study_name=c", "n_trials=200", "baselines=false",
                          f"hydra.run.dir={tmp_path / 'run'}")
    proc = subprocess.Popen([sys.executable, "-m", "search", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.5)
        db = tmp_path / "studies.db"
        if db.exists():
            try:
                if len(_study(tmp_path, "c").get_trials(states=(TrialState.COMPLETE,))) >= 2:
                    break
            except KeyError:  # the study is not created yet
                continue
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; the study is saved" in err and "Traceback" not in err
    done = _study(tmp_path, "c").get_trials(states=(TrialState.COMPLETE,))
    assert len(done) >= 2
    assert len((tmp_path / "run" / "trials.csv").read_text().splitlines()) >= len(done) + 1


# two inverted residuals: a network ONNX Runtime's exporter takes in a second (each timing exports one)
SMALL_BASE = {
    "name": "small", "num_classes": 10, "in_chans": 3, "input_size": 32,
    "stem": [{"type": "conv", "c": 8, "k": 3, "s": 2, "nl": "RE"}],
    "body": {"type": "bneck", "columns": ["k", "exp", "c", "se", "nl", "s"],
             "rows": [[3, 16, 16, False, "RE", 2], [3, 32, 16, False, "HS", 1]]},
    "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
}


def test_the_budget_is_held_in_the_backend_it_names_and_the_report_says_so(compose_search, tmp_path):
    space = tmp_path / "small_space.yaml"
    space.write_text(yaml.safe_dump({"base": SMALL_BASE, "per_block": {"k": [3, 5]}}))
    summary = run_search(compose_search, tmp_path / "run", *fast_overrides(
        space, tmp_path, "study_name=ort", "n_trials=1", "baselines=false", "latency.backend=onnxruntime"))
    assert summary["latency_backend"] == "onnxruntime" and summary["latency_runtime"].startswith("onnxruntime ")
    assert summary["entries"]["best"]["latency"]["fingerprint"]["backend"] == "onnxruntime"  # re-measured in it
    report = (tmp_path / "run" / "report.md").read_text()
    assert "latency measured in cpu, " in report and summary["latency_runtime"] in report


def test_a_space_whose_networks_do_not_fit_max_memory_gb_stops_before_any_trial(space_file, tmp_path):
    r = _cli(*fast_overrides(space_file, tmp_path, "study_name=m", "max_memory_gb=0.001"), f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr
    assert re.fullmatch(r"search: error: model mbv3_small: needs an estimated [\d.]+ MB to run at batch 1 \(weights [\d.]+ MB, "
                        r"feature maps [\d.]+ MB\), above max_memory_gb=0\.001\n", r.stderr), r.stderr
    assert not (tmp_path / "studies.db").exists()


def test_a_space_whose_base_uses_a_users_block_is_searched_with_imports(tmp_path):
    env = user_block_module(tmp_path, "my_search_blocks", "search_test_conv_relu")
    (tmp_path / "user.yaml").write_text(yaml.safe_dump({
        "name": "user", "num_classes": 10, "in_chans": 1, "input_size": 32,
        "body": {"type": "search_test_conv_relu", "columns": ["c", "n", "s"], "rows": [[8, 1, 2], [16, 2, 2]]},
        "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
    }))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"base": "user.yaml", "per_stage": {"width": [0.5, 1.0]}}))
    args = [*fast_overrides(tmp_path / "space.yaml", tmp_path, "n_trials=2", "baselines=false")]
    without = _cli(*args, f"hydra.run.dir={tmp_path / 'a'}", env=env)
    assert without.returncode == 2, without.stderr
    assert "unknown block type 'search_test_conv_relu'" in without.stderr and "imports=" in without.stderr
    found = _cli(*args, "imports=[my_search_blocks]", f"hydra.run.dir={tmp_path / 'b'}", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["complete"] == 2
    bad = _cli(*args, "imports=[no_such_module_xyz]", f"hydra.run.dir={tmp_path / 'c'}", env=env)
    assert bad.returncode == 2 and "imports: cannot import 'no_such_module_xyz'" in bad.stderr


def test_a_strategy_and_an_evaluator_of_a_users_own_plug_in_through_imports(space_file, tmp_path):
    (tmp_path / "my_plugins.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from search.evaluators import Evaluator, Score, register_evaluator
        from search.strategies import register_strategy
        from search.strategies.random_search import RandomSearch


        @register_strategy("test_user_strategy")
        @dataclass(frozen=True)
        class Mine(RandomSearch):
            """Random search under another name: what matters is that it plugs in from outside."""


        @dataclass(frozen=True)
        class Nothing:
            pass


        @register_evaluator("test_user_depth")
        class Depth(Evaluator):
            """The number of blocks of the deployment network."""

            Settings = Nothing
            metric = "blocks"
            needs_data = False

            def cost(self, data):
                return "a count of the blocks"

            def evaluate(self, candidate, data, report=None):
                return Score(float(len(candidate.spec.blocks)), 0.0)
    '''))
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [*fast_overrides(space_file, tmp_path, "n_trials=2", "baselines=false"), "strategy=test_user_strategy",
            "evaluator=test_user_depth"]
    refused = _cli(*args, f"hydra.run.dir={tmp_path / 'a'}", env=env)
    assert refused.returncode == 2 and "unknown strategy 'test_user_strategy'" in refused.stderr
    found = _cli(*args, "imports=[my_plugins]", f"hydra.run.dir={tmp_path / 'b'}", env=env)
    assert found.returncode == 0, found.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert (summary["strategy"], summary["evaluator"], summary["metric"], summary["complete"]) == (
        "test_user_strategy", "test_user_depth", "blocks", 2)
    assert summary["score"] == len(Space(space_file).apply(_study(tmp_path, summary["study_name"]).trials[
        summary["best_trial"]].params).blocks)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    # the contract end to end, once: the other cases below raise the same error inside the same app
    r = _cli("budget_ms=0", "progress=false", f"storage=sqlite:///{tmp_path / 's.db'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip() == "search: error: budget_ms must be a positive, finite number of milliseconds, got 0"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["strategy=greedy"], f"unknown strategy 'greedy'; known: {', '.join(STRATEGIES.names())}"),
        (["evaluator=zen"], f"unknown evaluator 'zen'; known: {', '.join(EVALUATORS.names())}"),
        (["data=mnist"], "unknown data 'mnist'; known: cifar10, digits, fashion_mnist, imagefolder"),
        (["pruner=asha"], "unknown pruner 'asha'; known: none, median, sha, hyperband"),
    ],
)
def test_an_unknown_choice_is_one_line_before_hydra_runs(monkeypatch, capsys, args, fragment):
    from search.__main__ import main

    monkeypatch.setattr(sys, "argv", ["search", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"search: error: {fragment}\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["space=nope"], "unknown space 'nope'; known: mbv2, mbv3_large"),
        (["data=imagefolder", "data.root=/no/such/dir"], "data.root /no/such/dir: no such directory"),
        (["n_trials=0"], "n_trials must be an integer >= 1, got 0"),
        (["fresh_seeds=-1"], "fresh_seeds must be an integer >= 0, got -1"),
        (["timeout_min=0"], "timeout_min must be a positive number of minutes or null, got 0"),
        (["train.device=tpu"], "train.device must be one of auto, cpu, cuda or cuda:<index>, got 'tpu'"),
        (["strategy=pareto", "pruner=median"], "pruner=median needs a single objective (strategy=evolution or local or mnasnet or "),
        (["budget_ms=inf"], "budget_ms must be a positive, finite number of milliseconds, got inf"),
        (["seed=abc"], "seed must be an integer >= 0 (the sampler's, and each trial's with its number), got 'abc'"),
        (["seed=1.5"], "seed must be an integer >= 0 (the sampler's, and each trial's with its number), got 1.5"),
    ],
)
def test_bad_settings_are_refused_before_any_trial(compose_search, tmp_path, args, fragment):
    with pytest.raises(archgen.SpecError) as err:
        run_search(compose_search, tmp_path / "run", "progress=false", f"storage=sqlite:///{tmp_path / 's.db'}", *args)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("where", ["under a plain file", "in /sys"])
def test_a_storage_that_cannot_be_created_is_one_line(tmp_path, where):
    plain = tmp_path / "plain"
    plain.write_text("")
    db = plain / "sub" / "s.db" if where == "under a plain file" else Path("/sys/archgen-test.db")
    with pytest.raises(archgen.SpecError) as err:
        open_storage(f"sqlite:///{db}")
    assert str(err.value).startswith(f"storage 'sqlite:///{db}': cannot create ") and "\n" not in str(err.value)


def test_the_run_directory_is_named_by_the_space_files_stem_and_stays_under_outputs(compose_search, tmp_path):
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(archgen.zoo.CONF_DIR), version_base="1.3"):
        cfg = compose("search", overrides=["space=../../../../elsewhere/my space.yaml", "budget_ms=12.5"],
                      return_hydra_config=True)
    run_dir = Path(cfg.hydra.run.dir)
    outputs = (tmp_path / "outputs").resolve()
    assert (tmp_path / run_dir).resolve().is_relative_to(outputs / "search")
    # the stem, the strategy, the budget and the process: two workers started in the same second differ
    assert run_dir.name.endswith(f"_my-space_mnasnet_12.5ms_{os.getpid()}")
    assert path_component("budget_ms=10,space=../../x y.yaml") == "budget_ms=10,space=..-..-x-y.yaml"  # one name, no folders


def test_a_space_whose_choices_are_empty_is_refused(compose_search, tmp_path):
    bad = tmp_path / "empty.yaml"
    bad.write_text(yaml.safe_dump({"base": "mbv3_small", "per_block": {"k": []}}))
    with pytest.raises(archgen.SpecError, match=f"^{bad}: per_block.k: has no choices"):
        run_search(compose_search, tmp_path / "run", f"space={bad}", "progress=false")


def test_a_sweep_writes_one_table_of_the_best_per_budget(space_file, tmp_path):
    args = [a for a in fast_overrides(space_file, tmp_path, "n_trials=2", "baselines=false") if not a.startswith("budget")]
    r = _cli("-m", *args, "budget_ms=20,50", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "sweep" / "best_per_budget.csv").read_text().splitlines()
    assert lines[0].startswith("job,space,strategy,budget_ms")
    rows = list(csv.DictReader(lines))
    assert [float(r["budget_ms"]) for r in rows] == [20.0, 50.0]
    assert all(r["best_trial"] != "" and float(r["latency_ms"]) > 0 for r in rows)
    assert (tmp_path / "sweep" / "best_per_budget.md").read_text().startswith("| job |")


def test_netadapt_proposals_inherit_and_the_chosen_network_is_fine_tuned_long(compose_search, space_file, tmp_path):
    weights = tmp_path / "weights"
    naswot = ("evaluator=", "naswot.")
    space_file = _with_width(space_file)
    args = [a for a in fast_overrides(space_file, tmp_path, "study_name=n") if not a.startswith(naswot)]
    args += ["evaluator=train", "train.epochs=1", "train.batch_size=32", "strategy=netadapt", "latency=lut",
             f"budget_ms={_halfway_budget(space_file)}", "netadapt.step=0.0001", "netadapt.max_iterations=1",
             "netadapt.short_steps=3", "netadapt.long_epochs=1", f"netadapt.weights_dir={weights}", "n_trials=30",
             "baselines=false", "fresh_seeds=0", *(f"latency.{k}={v}" for k, v in NETADAPT_TIMING.items())]
    out = tmp_path / "run"
    summary = run_search(compose_search, out, *args)
    study = _study(tmp_path, "n")
    start = study.trials[study.user_attrs["netadapt_start"]]
    assert start.number == 0 and start.user_attrs["iteration"] == -1 and "inherited" not in start.user_attrs
    proposals = [t for t in study.trials if t.user_attrs.get("iteration", -1) >= 0 and t.state == TrialState.COMPLETE]
    assert proposals and all(t.user_attrs["inherited"].endswith("fresh") for t in proposals)
    assert all(int(t.user_attrs["inherited"].split()[0]) > 0 for t in proposals)  # kept blocks: most of the network
    final = study.user_attrs["netadapt_final"]
    assert final["trial"] == summary["best_trial"] == study.user_attrs["netadapt_iter_0"] and final["epochs"] == 1
    assert summary["netadapt_final_score"] == final["accuracy"]
    # what a resumed search needs and nothing more: the accepted network's weights, and the final ones
    assert sorted(p.name for p in (weights / "n").iterdir()) == ["final.pt", f"trial_{final['trial']}.pt"]
    best = archgen.build(Space(space_file, num_classes=10, in_chans=1, input_size=32).apply(study.trials[final["trial"]].params))
    best.load_state_dict(torch.load(out / "best.pt", weights_only=True))  # strict: the chosen proxy network
    assert "NetAdapt's long-term fine-tune" in (out / "report.md").read_text()


def test_an_out_of_memory_trial_fails_with_its_reason_frees_the_cache_and_the_search_goes_on(compose_search, space_file,
                                                                                         tmp_path, monkeypatch):
    calls = iter(range(100))
    real = Problem.score
    freed = []

    def greedy(self, proxy, report=None):
        if next(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return real(self, proxy, report)

    monkeypatch.setattr(Problem, "score", greedy)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    summary = run_search(compose_search, tmp_path / "run", *fast_overrides(space_file, tmp_path, "study_name=o",
                                                                           "n_trials=3", "baselines=false"))
    trials = _study(tmp_path, "o").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["fail_reason"] == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert freed == [True] and summary["fail"] == 1


@pytest.mark.parametrize("baselines", ["true", "false"])
def test_a_search_whose_every_trial_fails_writes_its_report_instead_of_a_zero_division(compose_search, space_file,
                                                                                       tmp_path, baselines):
    """Every network is refused (max_memory_gb): the trials fail, the baselines are left out with the
    reason, and the report says no trial completed (no network left to re-measure, nothing to divide)."""
    out = tmp_path / "run"
    summary = run_search(compose_search, out, *fast_overrides(space_file, tmp_path, "study_name=f", "n_trials=2",
                                                              "latency=lut", "max_memory_gb=0.00001",
                                                              f"baselines={baselines}"))
    assert (summary["complete"], summary["fail"], summary["best_trial"]) == (0, 2, None)
    report = (out / "report.md").read_text()
    assert "- no trial completed" in report and all(f in {p.name for p in out.iterdir()} for f in ("trials.csv", "summary.json"))
    assert ("has no naswot: model" in report and "above max_memory_gb" in report) == (baselines == "true")


@pytest.mark.parametrize(("evaluator", "setting", "message"), [
    ("naswot", "naswot.batch_size=500", "naswot.batch_size must be at most the 200 training samples of data digits"),
    ("train", "train.batch_size=500", "train.batch_size must be at most the 200 training samples of data digits"),
    ("table", "table.field=test_acc", "evaluator=table scores a point by its key in a benchmark's file, and space"),
])
def test_a_setting_every_trial_would_fail_on_is_refused_before_the_first_trial(compose_search, space_file, tmp_path,
                                                                               evaluator, setting, message):
    args = [a for a in fast_overrides(space_file, tmp_path, "study_name=b", "n_trials=2") if not a.startswith("evaluator=")]
    with pytest.raises(archgen.SpecError, match=re.escape(message)):
        run_search(compose_search, tmp_path / "run", *args, f"evaluator={evaluator}", setting)
    assert not (tmp_path / "studies.db").exists() or not _study(tmp_path, "b").trials


def test_with_hydra_job_chdir_the_default_storage_stays_where_the_command_started_and_a_rerun_resumes(space_file,
                                                                                                      tmp_path):
    """With chdir, the default study database moved into each run directory: a rerun silently started over."""
    args = [a for a in fast_overrides(space_file, tmp_path, "study_name=d", "n_trials=1", "baselines=false",
                                      "hydra.job.chdir=true") if not a.startswith("storage=")]
    outs = []
    for run_dir in ("run1", "run2"):
        r = subprocess.run([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / run_dir}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert "study d: 0 of 1 trials done" in outs[0] and "study d: 1 of 1 trials done" in outs[1]
    assert (tmp_path / "outputs" / "search" / "studies.db").is_file()
    assert not list((tmp_path / "run1").glob("**/studies.db"))


def test_a_search_that_fills_the_disk_stops_in_one_line_and_states_its_partial_run_directory(space_file, tmp_path):
    """It was a traceback, leaving best.yaml, trials.csv and pareto.png without report.md or summary.json, unsaid."""
    args = [a for a in fast_overrides(space_file, tmp_path, "n_trials=2", "baselines=false") if not a.startswith("storage=")]
    run = tmp_path / "run"
    # the journal of two trials, best.yaml and trials.csv fit; the plot does not
    r = subprocess.run([sys.executable, "-m", "search", *args, f"storage=journal:///{tmp_path / 'j.log'}",
                        f"hydra.run.dir={run}"], cwd=REPO, capture_output=True, text=True, timeout=300,
                       preexec_fn=full_disk(20_000))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]  # the other line: the budget constrains nothing
    assert errors == [f"search: error: File too large: {run / 'pareto.png'}; {run} is partial: it holds only "
                      "best.yaml, search.log, trials.csv (each file whole)"]
    assert len(optuna.load_study(study_name=None, storage=open_storage(f"journal:///{tmp_path / 'j.log'}").backend)
               .get_trials(states=(TrialState.COMPLETE,))) == 2  # the study survived whole
