"""Every registered evaluator (``search.evaluators.EVALUATORS``) keeps the contract the search
relies on: a new evaluator is tested here without a new test."""

from __future__ import annotations

import dataclasses
import math

import pytest

import archgen
from archgen.space import Space
from search.evaluators import EVALUATORS, Candidate, Evaluator, Score, make_evaluator

from .conftest import TINY, assert_same_state, torch_state

NAMES = EVALUATORS.names()


def _quick(name: str) -> Evaluator:
    """The evaluator at settings that take a second (an evaluator that trains: one epoch, one thread)."""
    cls = EVALUATORS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    quick = {k: v for k, v in {"epochs": 1, "threads": 1, "batch_size": 16}.items() if k in fields}
    return make_evaluator(name, quick)


def _candidate(evaluator: Evaluator) -> Candidate:
    if evaluator.tabular:  # a point of the benchmark's space, with its key
        point = Space("nasbench_macro").cheapest()
        return Candidate(point.params, point.spec, None, Space("nasbench_macro").key(point.params), draw=7)
    spec = archgen.load_spec(TINY)
    return Candidate(None, spec, spec if evaluator.needs_data else None)


def test_the_shipped_evaluators_are_registered():
    assert {"train", "naswot"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_an_evaluator_declares_its_settings_metric_and_cost(name, digits):
    evaluator = _quick(name)
    assert evaluator.name == name and isinstance(evaluator.metric, str) and evaluator.metric
    assert dataclasses.is_dataclass(evaluator.settings)
    assert evaluator.local_settings <= {f.name for f in dataclasses.fields(evaluator.settings)}
    identity = evaluator.identity()
    assert not set(identity) & evaluator.local_settings
    assert set(identity) | evaluator.local_settings == {f.name for f in dataclasses.fields(evaluator.settings)}
    assert evaluator.cost(digits if evaluator.needs_data else None).strip()
    assert evaluator.epochs_reported() >= 1


@pytest.mark.parametrize("name", NAMES)
def test_an_evaluator_scores_a_candidate_the_same_twice_and_leaves_torch_alone(name, digits):
    evaluator = _quick(name)
    data = digits if evaluator.needs_data else None
    before = torch_state()
    first = evaluator.evaluate(_candidate(evaluator), data)
    assert_same_state(before)
    assert isinstance(first, Score) and math.isfinite(first.value) and first.seconds >= 0
    assert evaluator.evaluate(_candidate(evaluator), data).value == first.value


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_setting_is_refused_naming_the_known_ones(name):
    fields = ", ".join(f.name for f in dataclasses.fields(EVALUATORS.get(name).Settings))
    with pytest.raises(archgen.SpecError, match=rf"^unknown setting {name}\.colour; {name} has: {fields}$"):
        make_evaluator(name, {"colour": "red"})


@pytest.mark.parametrize("name", NAMES)
def test_settings_of_another_evaluator_are_refused(name):
    class Other:
        pass

    with pytest.raises(TypeError, match=f"takes {EVALUATORS.get(name).Settings.__name__}, got Other"):
        EVALUATORS.get(name)(Other())


@pytest.mark.parametrize("name", [n for n in NAMES if EVALUATORS.get(n).needs_data])
def test_a_spec_that_does_not_fit_the_data_names_every_mismatch(name, digits):
    spec = archgen.load_spec("mbv3_small", input_size=64)  # 3 channels, 1000 classes
    message = r"does not fit data digits: in_chans 3 \(the data's: 1\), input_size \(64, 64\) \(the data's: \(32, 32\)\), num_classes 1000 \(the data's: 10\)"
    with pytest.raises(archgen.SpecError, match=message):
        _quick(name).evaluate(Candidate(None, spec, spec), digits)


def test_an_unknown_evaluator_lists_the_known_ones():
    with pytest.raises(archgen.SpecError, match=rf"^unknown evaluator 'zen'; known: {', '.join(NAMES)}; an evaluator of"):
        make_evaluator("zen")


def test_registering_what_is_not_an_evaluator_is_refused():
    from search.evaluators import register_evaluator

    with pytest.raises(TypeError, match="expects a subclass of search.evaluators.Evaluator"):
        register_evaluator("test_not_an_evaluator")(dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        register_evaluator("train")(type(_quick("naswot")))
