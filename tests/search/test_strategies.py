"""The strategies' rules: MnasNet's reward, the Pareto front, NetAdapt's proposals."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState, create_trial

from archgen import SpecError
from archgen.cost.latency import LatencySettings
from archgen.space import KNOBS, parse_param
from search.data import DataSettings
from search.evaluate import NaswotSettings
from search.problem import Problem
from search.strategies import make_strategy
from search.strategies.netadapt import NetAdapt
from search.strategies.sampled import pareto_front, reward

from .conftest import SPACE


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


@dataclasses.dataclass
class _Budget:
    metric: str = "accuracy"
    budget_ms: float = 10.0


def test_pareto_front_keeps_the_undominated_trials_within_the_budget():
    trials = [_trial(0, 0.90, 5), _trial(1, 0.85, 6), _trial(2, 0.95, 9), _trial(3, 0.99, 12), _trial(4, 0.95, 8),
              _trial(5, 0.80, 4)]
    front = pareto_front(trials, _Budget())
    assert [t.number for t in front] == [5, 0, 4]  # 1 is beaten by 0; 2 by 4; 3 is over the budget


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("mnasnet", {"sampler": "cmaes"}, "mnasnet.sampler must be one of: tpe, random"),
        ("mnasnet", {"alpha_": 1}, "unknown setting mnasnet.alpha_; mnasnet has: alpha, beta"),
        ("pareto", {"population": 1}, "pareto.population must be an integer >= 2"),
        ("netadapt", {"step": 1.5}, "netadapt.step must be a fraction in (0, 1)"),
        ("netadapt", {"decay": 0}, "netadapt.decay must be a number in (0, 1]"),
        ("greedy", {}, "unknown strategy 'greedy'; known: mnasnet, netadapt, pareto"),
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
        space=path, budget_ms=1.0, latency=LatencySettings(source="lut", warmup=1, repeats=3), evaluator="naswot",
        evaluator_settings=NaswotSettings(batch_size=16), data=DataSettings(limit=100),
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
