"""The proxy protocols compared side by side: the trainings each figure comes from, and the figures."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy.stats import kendalltau

from archgen import SpecError
from archgen.space import Space
from search.data import DataSettings, load_data
from search.evaluators.train import TrainSettings, train
from search.proxy import REFERENCE, compare, make_protocols, report, tau, tau_interval

from .conftest import SPACE

REPO = Path(__file__).resolve().parents[2]
DATA = {"name": "digits", "limit": 100}
TRAIN = {"epochs": 1, "batch_size": 32}
PROTOCOLS = {"small": {}, "tiny": {"data": {"size": 16}}}


def _protocols(longer: int = 2):
    return make_protocols(DATA, TRAIN, PROTOCOLS, ["small", "tiny"], longer)


def test_the_reference_is_the_first_protocol_trained_longer_from_other_seeds():
    small, tiny, reference = _protocols(longer=3)
    assert (small.name, tiny.name, reference.name) == ("small", "tiny", REFERENCE)
    assert tiny.data == DataSettings(name="digits", limit=100, size=16) and tiny.overrides == {"data.size": 16}
    assert reference.data == small.data
    assert reference.train.epochs == 3 * small.train.epochs and reference.train.repeats == 1
    # runs 0 and 1 train from seeds 0 and 1: the reference from neither
    assert reference.train.seed not in (*small.train.seeds, *small.train.after().seeds)
    with_repeats = make_protocols(DATA, {**TRAIN, "repeats": 2}, PROTOCOLS, ["small"], 4)
    assert with_repeats[-1].train.seed == 4 and with_repeats[-1].train.repeats == 1  # after seeds 0-1 and 2-3
    # a later protocol that averages seeds pushes the reference's seed past its runs too
    mixed = make_protocols(DATA, TRAIN, {**PROTOCOLS, "x3": {"train": {"repeats": 3}}}, ["small", "x3"], 4)
    assert mixed[-1].train.seed == 6 and mixed[-1].data == mixed[0].data and mixed[-1].train.repeats == 1


@pytest.mark.parametrize(
    ("protocols", "chosen", "longer", "message"),
    [
        (PROTOCOLS, ["small", "big"], 4, "compare: unknown protocol 'big'; known: small, tiny"),
        (PROTOCOLS, [], 4, "compare must be a non-empty list of protocol names, got []"),
        (PROTOCOLS, ["small", "small"], 4, "compare names a protocol twice: ['small', 'small']"),
        (PROTOCOLS, ["small"], 0, "longer must be an integer >= 1 (the reference's epochs, x the first protocol's), got 0"),
        ({"small": {"model": {}}}, ["small"], 4, "protocols.small must be a mapping with data and/or train overrides"),
        ({"small": {"train": {"epochs": 0}}}, ["small"], 4, "protocols.small: train.epochs must be a positive integer, got 0"),
        ({"small": {"train": {"epoch": 2}}}, ["small"], 4, "protocols.small: unknown setting train.epoch; train has:"),
        ({REFERENCE: {}}, [REFERENCE], 4, "protocols.reference: the name is taken"),
    ],
)
def test_bad_protocols_are_refused_naming_the_protocol_and_field(protocols, chosen, longer, message):
    with pytest.raises(SpecError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        make_protocols(DATA, TRAIN, protocols, chosen, longer)


def test_every_protocol_trains_every_architecture_twice_and_the_reference_once():
    space = Space(SPACE)
    protocols = _protocols()
    params, evaluations = compare(space, protocols, samples=3, seed=2)
    rng = random.Random(2)
    assert params == [dict(space.random(rng).params) for _ in range(3)]
    runs = sorted((e.protocol, e.arch, e.run) for e in evaluations)
    assert runs == sorted([(p, a, r) for a in range(3) for p in ("small", "tiny") for r in (0, 1)] +
                          [(REFERENCE, a, 0) for a in range(3)])
    # each figure is a real training of that architecture with that protocol and seed
    small = next(e for e in evaluations if (e.protocol, e.arch, e.run) == ("small", 0, 1))
    data = load_data(DataSettings(**DATA))
    alone = train(space.at(num_classes=10, in_chans=1, input_size=32).apply(params[0]), data, TrainSettings(**TRAIN, seed=1))
    assert (small.accuracy, small.loss, small.seeds) == (alone.accuracy, alone.loss, "seed 1")
    tiny = next(e for e in evaluations if (e.protocol, e.arch, e.run) == ("tiny", 0, 0))
    at16 = train(space.at(num_classes=10, in_chans=1, input_size=16).apply(params[0]), load_data(DataSettings(**DATA, size=16)),
                 TrainSettings(**TRAIN))
    assert tiny.accuracy == at16.accuracy

    reports = {r.protocol.name: r for r in report(protocols, evaluations)}
    assert set(reports) == {"small", "tiny"}
    r = reports["small"]
    by = {(e.protocol, e.arch, e.run): e for e in evaluations}
    first = [by["small", a, 0].accuracy for a in range(3)]
    second = [by["small", a, 1].accuracy for a in range(3)]
    ref = [by[REFERENCE, a, 0].accuracy for a in range(3)]
    assert r.first == tuple(first) and r.reference == tuple(ref)
    assert r.spread == {"min": min(first), "median": statistics.median(first), "max": max(first), "std": statistics.stdev(first)}
    assert r.seed_noise == pytest.approx(statistics.pstdev([a - b for a, b in zip(first, second)], mu=0) / 2**0.5)
    assert r.tau_seeds == pytest.approx(tau(first, second), nan_ok=True)
    assert r.tau_reference == pytest.approx(tau(first, ref), nan_ok=True)
    assert r.minutes_per_trial == pytest.approx(statistics.fmean(e.seconds for e in evaluations if e.protocol == "small") / 60)


def test_a_resumed_comparison_reuses_only_the_trainings_whose_settings_match():
    space = Space(SPACE)
    protocols = _protocols()
    _, first = compare(space, protocols[:1] + protocols[2:], samples=3, seed=2)  # "small" and the reference only
    saved: list[list] = []
    _, again = compare(space, protocols, samples=3, seed=2, previous=first, saved=saved.append)
    # the reused trainings come back as they were (same seconds: not trained again), the others are new
    reused = {e.key: e for e in first}
    assert sum(e.key in reused and e == reused[e.key] for e in again) == len(first)
    assert {e.protocol for e in again if e.key not in reused} == {"tiny"}
    assert len(saved) == 1 + 6 and len(saved[-1]) == len(again)  # the reused ones at once, then one per training
    # another training setting is another key: nothing is reused
    longer = make_protocols(DATA, TRAIN, PROTOCOLS, ["small"], 3)
    _, other = compare(space, longer, samples=3, seed=2, previous=first)
    assert not {e.key for e in other if e.protocol == REFERENCE} & set(reused)


def test_tau_and_its_bootstrap_interval():
    x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert tau(x, x) == pytest.approx(1.0) and tau(x, x[::-1]) == pytest.approx(-1.0)
    assert math.isnan(tau(x, [0.5] * 6)) and math.isnan(tau([math.nan, *x[1:]], x))
    y = [0.2, 0.1, 0.3, 0.5, 0.4, 0.6]
    lo, hi = tau_interval(x, y)
    assert lo <= kendalltau(x, y).statistic <= hi and -1 <= lo < hi <= 1
    assert tau_interval(x, y) == (lo, hi)  # seeded


def test_samples_and_workers_are_checked():
    with pytest.raises(SpecError, match="samples must be an integer >= 3, got 2"):
        compare(Space(SPACE), _protocols(), samples=2)
    with pytest.raises(SpecError, match="workers must be an integer >= 1, got 0"):
        compare(Space(SPACE), _protocols(), samples=3, workers=0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.proxy", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


def test_the_command_compares_protocols_and_writes_the_table(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "run"
    args = [f"space={space}", "data=digits", "data.limit=120", "train.epochs=1", "train.batch_size=32", "samples=3",
            "longer=2", "workers=2", "+protocols.a={}", "+protocols.b={data: {size: 16}}", "compare=[a,b]",
            "naswot.batch_size=16", f"hydra.run.dir={out}"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "proxy.json").read_text())
    assert [p["protocol"] for p in doc["protocols"]] == ["a", "b"] and doc["longer"] == 2
    assert doc["protocols"][1]["settings"] == "data.size=16" and doc["protocols"][0]["samples"] == 3
    assert set(doc["protocols"][0]) >= {"spread", "seed_noise", "tau_seeds", "tau_seeds_interval", "tau_reference",
                                        "tau_reference_interval", "minutes_per_trial"}
    assert doc["naswot"]["samples"] == 3 and len(doc["architectures"]) == 3
    rows = list(csv.DictReader((out / "evaluations.csv").open()))
    assert len(rows) == 3 * (2 * 2 + 1)
    table = (out / "protocols.md").read_text()
    assert "| protocol | settings | archs |" in table and "tau vs 2x longer [95% CI]" in table and "| b | data.size=16 | 3 |" in table
    # resumed: every training is reused, so the same table comes out without training anything
    again = tmp_path / "again"
    r = _cli(*args[:-1], f"resume={out}", f"hydra.run.dir={again}")
    assert r.returncode == 0, r.stderr
    assert "run 0 (" not in r.stdout and (again / "protocols.md").read_text() == table


def test_the_command_refuses_bad_input_in_one_line(tmp_path):
    r = _cli("data=digits", "compare=[nope]", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and r.stderr.startswith("search.proxy: error: compare: unknown protocol 'nope'; known: ")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("data=digits", f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and f"resume={tmp_path}: no evaluations.csv there" in r.stderr
