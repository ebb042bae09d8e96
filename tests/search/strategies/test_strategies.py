"""Every registered strategy keeps the contract the search relies on (parametrized over the
registry, so a new strategy is tested without a new test), and the strategies' own rules:
MnasNet's reward, the Pareto front, NetAdapt's proposals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState, create_trial

from archgen import SpecError
from archgen.cost.latency import LatencySettings
from archgen.knobs import KNOBS
from archgen.space import parse_param
from search.data import DataSettings
from search.evaluators import make_evaluator
from search.evaluators.naswot import Naswot, NaswotSettings
from search.problem import Problem
from search.storage import memory_storage
from search.strategies import STRATEGIES, Strategy, make_strategy, register_strategy
from search.strategies.mnasnet import reward
from search.strategies.netadapt import NetAdapt
from search.trials import pareto_front

from ..conftest import SPACE


def test_mnasnet_reward_is_eq_2_of_the_paper():
    # soft: w = -0.07 on both sides of the budget
    assert reward(0.8, 30, 30, -0.07, -0.07) == pytest.approx(0.8)
    assert reward(0.8, 60, 30, -0.07, -0.07) == pytest.approx(0.8 * 2**-0.07)
    assert reward(0.8, 15, 30, -0.07, -0.07) == pytest.approx(0.8 * 0.5**-0.07)
    # a model twice as slow needs ~5 % more accuracy to score the same (the paper's rationale)
    assert reward(0.8 * 2**0.07, 60, 30, -0.07, -0.07) == pytest.approx(reward(0.8, 30, 30, -0.07, -0.07))
    # hard: no bonus within the budget, a steep penalty above it
    assert reward(0.8, 15, 30, 0.0, -1.0) == pytest.approx(0.8)
    assert reward(0.8, 60, 30, 0.0, -1.0) == pytest.approx(0.4)
    assert make_strategy("mnasnet", {"hard": True}).weights == (0.0, -1.0)


def _trial(number: int, acc: float, lat: float) -> FrozenTrial:
    t = create_trial(state=TrialState.COMPLETE, value=acc, user_attrs={"accuracy": acc, "latency_ms": lat})
    t.number = number
    return t


def test_pareto_front_keeps_the_undominated_trials_within_the_budget():
    trials = [_trial(0, 0.90, 5), _trial(1, 0.85, 6), _trial(2, 0.95, 9), _trial(3, 0.99, 12), _trial(4, 0.95, 8),
              _trial(5, 0.80, 4)]
    front = pareto_front(trials, "accuracy", 10.0)
    assert [t.number for t in front] == [5, 0, 4]  # 1 is beaten by 0; 2 by 4; 3 is over the budget


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("mnasnet", {"sampler": "cmaes"}, "mnasnet.sampler must be one of: tpe, random"),
        ("mnasnet", {"alpha_": 1}, "unknown setting mnasnet.alpha_; mnasnet has: alpha, beta"),
        ("pareto", {"population": 1}, "pareto.population must be an integer >= 2"),
        ("netadapt", {"step": 1.5}, "netadapt.step must be a fraction in (0, 1)"),
        ("netadapt", {"decay": 0}, "netadapt.decay must be a number in (0, 1]"),
    ],
)
def test_bad_strategy_settings_are_short_errors(name, settings, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_strategy(name, settings)


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Problem:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return Problem(
        space=path, budget_ms=1.0, latency=LatencySettings(source="lut", warmup=1, repeats=3),
        evaluator=Naswot(NaswotSettings(batch_size=16)), data=DataSettings(limit=100),
        cache=tmp_path_factory.mktemp("lut"), lut=True,
    )


def test_netadapt_proposes_per_unit_the_smallest_cut_that_meets_the_step(problem):
    current = dict(problem.space.nearest_to_base().params)
    now = problem.lut_ms(problem.space.apply(current))
    target = now - 0.002 * now
    proposals = NetAdapt().proposals(problem, current, target)
    assert proposals, "some block can cut 0.2 % of the latency"
    units = {p.unit for p in proposals}
    assert len(units) == len(proposals)  # one proposal per unit at most
    for p in proposals:
        assert p.lut_ms <= target
        changed = [k for k in p.params if p.params[k] != current[k]]
        assert len(changed) == 1 and p.change.startswith(changed[0])
        stage, block, knob = parse_param(changed[0])
        assert p.unit == (f"s{stage}_b{block}" if block is not None else f"s{stage}")
        assert KNOBS[knob].rank(p.params[changed[0]]) < KNOBS[knob].rank(current[changed[0]])
        # no other one-knob cut of the same unit that meets the target removes less latency
        for name in (n for n in current if n.startswith(p.unit + "_")):
            knob = parse_param(name)[2]
            for value in problem.space.per_block[knob]:
                if KNOBS[knob].rank(value) < KNOBS[knob].rank(current[name]):
                    other = problem.lut_ms(problem.space.apply({**current, name: value}))
                    assert not (target >= other > p.lut_ms)


# -- the contract, for every registered strategy ----------------------------------------------------

NAMES = STRATEGIES.names()


def test_the_shipped_strategies_are_registered():
    assert {"mnasnet", "pareto", "netadapt"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_strategy_is_a_dataclass_of_its_settings_with_defaults(name):
    strategy = make_strategy(name)
    assert isinstance(strategy, Strategy) and strategy.name == name
    fields = [f.name for f in dataclasses.fields(strategy)]
    assert list(strategy.settings()) == fields
    assert set(strategy.identity()) == {f for f in fields if not f.endswith("_dir")}
    assert strategy.directions in (("maximize",), ("maximize", "minimize"))
    assert str(strategy).startswith(f"{name} (")
    assert isinstance(strategy.make_sampler(0), optuna.samplers.BaseSampler)
    for field in fields[:1]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(strategy, field, None)


@pytest.mark.parametrize("name", NAMES)
def test_a_strategys_settings_are_the_ones_conf_search_yaml_documents(name):
    """conf/search.yaml has a section per strategy that lists every setting with its default."""
    conf = yaml.safe_load((Path(__file__).resolve().parents[3] / "conf" / "search.yaml").read_text())
    assert name in conf, f"conf/search.yaml has no {name}: section"
    assert make_strategy(name, conf[name]) == make_strategy(name)
    assert list(conf[name]) == list(make_strategy(name).settings())


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_setting_is_refused_naming_the_known_ones(name):
    fields = ", ".join(f.name for f in dataclasses.fields(STRATEGIES.get(name)))
    with pytest.raises(SpecError, match=rf"^unknown setting {name}\.colour; {name} has: {fields}$"):
        make_strategy(name, {"colour": "red"})


def test_an_unknown_strategy_lists_the_known_ones():
    with pytest.raises(SpecError, match=rf"^unknown strategy 'greedy'; known: {', '.join(NAMES)}; a strategy of"):
        make_strategy("greedy")


def test_registering_what_is_not_a_strategy_dataclass_is_refused():
    class Plain(Strategy):  # not a dataclass: its settings would not be read from the config
        pass

    with pytest.raises(TypeError, match="expects a dataclass subclass of search.strategies.Strategy"):
        register_strategy("test_plain")(Plain)
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("mnasnet")(STRATEGIES.get("pareto"))


def test_netadapt_answers_with_its_start_network_where_that_meets_the_budget_already():
    """A budget above the base: no shrinking, one trial (the start), and it is the answer (a tabular
    benchmark's table evaluator, which does not train: no weights to inherit)."""
    problem = Problem("nasbench_macro", 1e3, LatencySettings(source="lut"), make_evaluator("table", {}), lut=True)
    strategy = make_strategy("netadapt", {})
    storage = memory_storage()
    study = optuna.create_study(storage=storage.backend, sampler=strategy.make_sampler(0))
    strategy.run(problem, study, storage, 10, [])
    best = strategy.best(problem, study)
    assert len(study.trials) == 1 and best is not None and best.params == problem.space.nearest_to_base().params
    assert study.user_attrs["netadapt_stop"].startswith("iteration 0:") and best.user_attrs["arch"] == "22222222"
