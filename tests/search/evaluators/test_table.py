"""evaluator=table and the NAS-Bench-Macro space it ships with: every key builds the nasbench's
network (its parameter count, its multiply-adds, the authors' logits), a trial draws one of the
trainings, and a bad table file is one precise line."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

import archgen
from archgen.space import Space
from search.evaluators import Candidate, TrialFailed, make_evaluator
from search.evaluators.table import TABLES_DIR, load_table
from tests.archgen.ref_impl import nasbench_macro_authors

FILE = TABLES_DIR / "nas-bench-macro_cifar10.json"


@pytest.fixture(scope="module")
def space() -> Space:
    return Space("nasbench_macro")


@pytest.fixture(scope="module")
def nasbench() -> dict:
    return json.loads(FILE.read_text())


def test_every_key_builds_the_benchmarks_network_its_params_and_macs(space, nasbench):
    """All 6,561 points: each key once, params equal to the file's, MACs equal to its `flops` (the
    authors' counter counts a multiply-add as one FLOP, and only convolutions and the FC, as ours)."""
    seen, wrong = set(), []
    for point in space.points():
        key = space.key(point.params)
        cost = archgen.count(point.spec)
        if (cost.params, cost.macs) != (nasbench[key]["params"], nasbench[key]["flops"]):
            wrong.append((key, cost.params, nasbench[key]["params"], cost.macs, nasbench[key]["flops"]))
        seen.add(key)
    assert seen == set(nasbench) and len(seen) == 3**8
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("key", ["00000000", "01200201", "21021102", "22222222"])
def test_a_point_gives_the_authors_logits_with_their_weights(space, key):
    """Identity at a stage's first layer (a strided 1x1 projection) and at its later ones (nothing)."""
    params = dict(zip(sorted(space.nearest_to_base().params), ("id mb3_k3 mb6_k5".split()[int(c)] for c in key)))
    assert space.key(params) == key
    model = archgen.build(space.apply(params))
    reference = nasbench_macro_authors.network(key)
    archgen.load_reference_weights(model, reference)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model.eval()(x) - reference.eval()(x)).abs().max().item() < 1e-4


def test_a_trial_draws_one_training_by_its_seed_and_a_baseline_scores_the_mean(space):
    table = make_evaluator("table", {})
    point = space.dearest()
    key = space.key(point.params)
    runs = load_table(FILE, "test_acc")[key]
    draws = {table.evaluate(Candidate(point.params, point.spec, None, key, draw=d), None).value for d in range(40)}
    assert draws == set(runs)  # every training turns up, and nothing else
    again = table.evaluate(Candidate(point.params, point.spec, None, key, draw=3), None)
    assert again.value == table.evaluate(Candidate(point.params, point.spec, None, key, draw=3), None).value
    mean = table.evaluate(Candidate(point.params, point.spec, None, key), None)
    assert mean.value == pytest.approx(statistics.fmean(runs)) and mean.attrs == {"arch": key, "true_acc": mean.value}


def test_a_network_without_a_key_or_outside_the_table_fails_the_trial(space):
    table = make_evaluator("table", {})
    spec = space.base
    with pytest.raises(TrialFailed, match="no key"):
        table.evaluate(Candidate(None, spec, None), None)
    with pytest.raises(TrialFailed, match="no entry '9'"):
        table.evaluate(Candidate({}, spec, None, "9"), None)


@pytest.mark.parametrize("content, field, message", [
    ("{not json", "test_acc", "not JSON"),
    ('{"0": {"acc": [1.0]}}', "test_acc", "entry '0', field 'test_acc': expected a non-empty list"),
    ('{"0": {"test_acc": []}}', "test_acc", "entry '0', field 'test_acc'"),
    ('{"0": [1.0, "x"]}', None, "entry '0': expected"),
    ("[]", None, "expected an object"),
])
def test_a_bad_table_file_names_the_file_the_entry_and_the_field(tmp_path, content, field, message):
    path = tmp_path / "bench.json"
    path.write_text(content)
    table = make_evaluator("table", {"file": str(path), "field": field})
    with pytest.raises(archgen.SpecError, match=message) as e:
        table.scores  # noqa: B018
    assert str(path) in str(e.value)


def test_another_benchmark_is_a_file_and_a_field(tmp_path, space):
    """A width nasbench's form: {key: [scores]}, keys joined by the space's separator."""
    path = tmp_path / "widths.json"
    path.write_text(json.dumps({"a": [70.0, 72.0]}))
    table = make_evaluator("table", {"file": str(path), "field": None})
    assert table.truth("a") == 71.0
    with pytest.raises(archgen.SpecError, match="cannot read .*missing.json .*; shipped: nas-bench-macro_cifar10.json"):
        make_evaluator("table", {"file": str(tmp_path / "missing.json")}).scores  # noqa: B018
