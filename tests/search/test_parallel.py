"""``search.parallel``: trainings in worker processes give what they give in this one, in the jobs'
order, and a diverged training comes back as a result.

Three networks of the tiny MobileNetV3-Small space, one epoch on 200 digits: a couple of seconds each.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from archgen.space import Space
from search.data import DataSettings, load_data
from search.evaluators import TrialFailed
from search.evaluators.train import TrainResult, TrainSettings, train
from search.parallel import Job, train_all

from .conftest import SPACE

DATA = DataSettings(limit=200)


def _job(k: int, **train: object) -> Job:
    spec = Space(SPACE, num_classes=10, in_chans=1, input_size=32).random(random.Random(k)).spec
    # one thread, fixed: a worker owns one core, this process two, and the thread count changes
    # a training's rounding (what the default, the cores a process owns, would give)
    settings = {"epochs": 1, "batch_size": 32, "seed": k, "threads": 1, **train}
    return Job(spec, DATA, TrainSettings(**settings))  # type: ignore[arg-type]


def _figures(outcome: TrainResult) -> TrainResult:
    """Everything a training reports but its wall time and throughput."""
    return replace(outcome, seconds=0.0, images_per_s=0.0)


@pytest.fixture(scope="module")
def jobs() -> list[Job]:
    return [_job(k) for k in range(3)]


@pytest.fixture(scope="module")
def in_process(jobs) -> list[TrainResult]:
    return train_all(jobs, workers=1)


def test_one_worker_trains_each_job_as_train_does(jobs, in_process):
    data = load_data(DATA)
    assert [_figures(r) for r in in_process] == [_figures(train(j.spec, data, j.train)) for j in jobs]
    assert len({r.loss for r in in_process}) == 3  # different networks: an order mix-up would show


def test_two_workers_give_the_same_results_in_the_jobs_order(jobs, in_process):
    calls = []
    outcomes = train_all(jobs, workers=2, done=lambda i, o: calls.append((i, o)))
    assert all(isinstance(o, TrainResult) and o.runtime == "cpu, 1 thread, fp32, channels-last" for o in outcomes)
    assert [_figures(o) for o in outcomes] == [_figures(r) for r in in_process]
    assert [(o.accuracy, o.loss) for o in outcomes] == [(r.accuracy, r.loss) for r in in_process]
    # done: once per job, with its index and the outcome that lands at that index
    assert sorted(i for i, _ in calls) == [0, 1, 2]
    assert all(outcomes[i] is o for i, o in calls)


def test_a_diverged_training_comes_back_as_trial_failed_not_as_an_exception():
    bad, good = _job(0, lr=1e6), _job(1)
    with pytest.raises(TrialFailed, match=r"^mbv3_small: training loss is nan at epoch 1, step \d+ \(seed 0\)$") as raised:
        train(bad.spec, load_data(DATA), bad.train)
    outcomes = train_all([bad, good], workers=2)
    assert isinstance(outcomes[0], TrialFailed) and outcomes[0].reason == raised.value.reason
    assert isinstance(outcomes[1], TrainResult) and 0 <= outcomes[1].accuracy <= 1
    (alone,) = train_all([bad], workers=1)
    assert isinstance(alone, TrialFailed) and alone.reason == raised.value.reason
