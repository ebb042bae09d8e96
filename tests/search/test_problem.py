"""``search.problem.Problem``: a point's two networks, its latency, its score and costs, for an
evaluator that scores on data and for one that needs none."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import yaml

import archgen
from archgen.cost.latency import LatencySettings
from search.data import DataSettings
from search.evaluators import Evaluator, Score, TrialFailed
from search.evaluators.naswot import Naswot, NaswotSettings
from search.problem import Problem

from .conftest import SPACE

LUT = LatencySettings(source="lut", warmup=1, repeats=3)


@dataclasses.dataclass(frozen=True)
class _NoSettings:
    pass


class _Params(Evaluator):
    """An evaluator that needs no data: the deployment network's parameter count (or a fixed value)."""

    Settings = _NoSettings
    metric = "params"
    needs_data = False
    name = "params"
    value: float | None = None

    def cost(self, data):
        return "a count"

    def evaluate(self, candidate, data, report=None):
        assert data is None and candidate.proxy is None
        return Score(self.value if self.value is not None else float(archgen.count(candidate.spec).params), 0.0)


@pytest.fixture(scope="module")
def space_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


@pytest.fixture(scope="module")
def problem(space_path) -> Problem:
    return Problem(space_path, 50.0, LUT, Naswot(NaswotSettings(batch_size=16, threads=1)), DataSettings(limit=100))


def test_a_point_gives_the_deployment_network_and_the_proxy_at_the_datas_shape(problem):
    params = dict(problem.space.random(random.Random(0)).params)
    point = problem.candidate(params)
    assert point.params == params
    assert [b.to_dict() for b in point.spec.blocks] == [b.to_dict() for b in problem.space.apply(params).blocks]
    assert (point.spec.in_chans, point.spec.input_size, point.spec.num_classes) == (3, (64, 64), 1000)
    assert (point.proxy.in_chans, point.proxy.input_size, point.proxy.num_classes) == (1, (32, 32), 10)
    # the same choices: every block of the searched stages has the deployment network's settings
    assert [(b.kernel, b.se) for b in point.proxy.blocks] == [(b.kernel, b.se) for b in point.spec.blocks]


def test_the_base_at_a_width_is_outside_the_space_and_scaled_in_both_forms(problem):
    base, narrow = problem.base_at_width(1.0), problem.base_at_width(0.5)
    # at width 1 the base is the space's point where the choices hold its settings (a table scores it by its key)
    nearest = problem.space.nearest_to_base()
    in_space = nearest.spec.key() == problem.space.base.key()
    assert base.params == (dict(nearest.params) if in_space else None)
    assert narrow.params is None and narrow.spec.width_mult == 0.5 == narrow.proxy.width_mult
    assert archgen.count(narrow.spec).params < archgen.count(base.spec).params
    assert narrow.proxy.num_classes == 10 and narrow.spec.num_classes == 1000


def test_an_outcome_holds_the_score_and_the_deployment_networks_latency_and_costs(problem):
    point = problem.candidate(dict(problem.space.cheapest().params))
    outcome = problem.evaluate(point)
    cost = archgen.count(point.spec)
    assert (outcome.macs, outcome.params) == (cost.macs, cost.params)
    assert outcome.latency_ms == problem.lut_ms(point.spec) and math.isfinite(outcome.score)
    assert problem.evaluate(point, latency_ms=1.25).latency_ms == 1.25  # a latency the caller timed is kept


def test_a_score_that_is_not_finite_fails_the_trial(space_path):
    nan = _Params()
    nan.value = math.nan
    problem = Problem(space_path, 50.0, LUT, nan)
    with pytest.raises(TrialFailed, match="params score is nan"):
        problem.evaluate(problem.candidate(dict(problem.space.cheapest().params)))


def test_an_evaluator_that_needs_no_data_gets_none_and_scores_the_deployment_network(space_path):
    problem = Problem(space_path, 50.0, LUT, _Params(), DataSettings(name="imagefolder"))  # never loaded
    assert problem.data is None and problem.proxy is None and problem.data_settings is None
    point = problem.candidate(dict(problem.space.nearest_to_base().params))
    assert point.proxy is None
    assert problem.evaluate(point).score == archgen.count(point.spec).params
    assert "the deployment network (3x64x64), no data" in problem.describe_evaluator()


def test_with_budget_shares_what_was_loaded_and_checks_the_budget(problem):
    other = problem.with_budget(12.5)
    assert other.budget_ms == 12.5 and problem.budget_ms == 50.0
    assert other.data is problem.data and other.space is problem.space and other.table is problem.table
    for bad in (0, -1, math.inf, "10", True):
        with pytest.raises(archgen.SpecError, match="budget_ms must be a positive, finite number of milliseconds"):
            problem.with_budget(bad)


def test_a_network_over_max_memory_gb_is_refused_before_it_is_scored(space_path):
    problem = Problem(space_path, 50.0, LUT, Naswot(NaswotSettings(batch_size=16, threads=1)), DataSettings(limit=100),
                      max_memory_gb=1e-6)
    with pytest.raises(archgen.SpecError, match="above max_memory_gb=1e-06"):
        problem.score(problem.candidate(dict(problem.space.cheapest().params)))


def test_the_latency_range_spans_the_cheapest_point_to_the_dearest(problem):
    reach = problem.latency_range()
    assert reach["cheapest"] <= reach["base"] <= reach["dearest"]
    assert reach == {k: problem.lut_ms(s) for k, s in (("cheapest", problem.space.cheapest().spec),
                                                        ("base", problem.space.base), ("dearest", problem.space.dearest().spec))}


def test_remeasure_times_networks_side_by_side_in_the_order_given(space_path):
    problem = Problem(space_path, 50.0, LatencySettings(warmup=1, repeats=3), _Params())
    specs = [problem.space.cheapest().spec, problem.space.dearest().spec]
    timed = problem.remeasure(specs)
    assert len(timed) == 2 and all(t.repeats == 3 and t.median_ms > 0 for t in timed)
