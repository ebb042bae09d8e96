"""The proxy's quality report: spread of accuracies and rank stability over random architectures."""

from __future__ import annotations

import random
import statistics

import pytest
from scipy.stats import kendalltau

from archgen import SpecError
from archgen.space import Space
from search.data import DataSettings, load_data
from search.evaluate import NaswotSettings, TrainSettings, train
from search.proxy import proxy_study

from .conftest import SPACE


def test_the_report_is_what_its_rows_say():
    data = load_data(DataSettings(limit=200))
    space = Space(SPACE, num_classes=10, in_chans=1, input_size=32)
    settings = TrainSettings(epochs=1, batch_size=32)
    report = proxy_study(space, data, settings, NaswotSettings(batch_size=16), samples=4, seed=2)
    acc = [r.accuracy for r in report.rows]
    again = [r.accuracy_reseeded for r in report.rows]
    assert len(acc) == 4 and all(0 <= a <= 1 for a in acc)
    assert report.spread == {"min": min(acc), "median": statistics.median(acc), "max": max(acc), "std": statistics.stdev(acc)}
    assert report.seed_noise == pytest.approx(statistics.pstdev([a - b for a, b in zip(acc, again)], mu=0) / 2**0.5)
    assert report.tau_seeds == pytest.approx(kendalltau(acc, again).statistic)
    assert report.tau_seeds_loss == pytest.approx(kendalltau([r.loss for r in report.rows], [r.loss_reseeded for r in report.rows]).statistic)
    assert report.tau_naswot == pytest.approx(kendalltau([r.naswot for r in report.rows], acc).statistic)
    # the second figure is a real training with train.seed + 1: it repeats on its own
    first = space.random(random.Random(2)).spec
    alone = train(first, data, TrainSettings(epochs=1, batch_size=32, seed=1))
    assert (alone.accuracy, alone.loss) == (report.rows[0].accuracy_reseeded, report.rows[0].loss_reseeded)


def test_with_repeats_the_two_evaluations_share_no_seed():
    data = load_data(DataSettings(limit=200))
    space = Space(SPACE, num_classes=10, in_chans=1, input_size=32)
    settings = TrainSettings(epochs=1, batch_size=32, repeats=2)
    report = proxy_study(space, data, settings, NaswotSettings(batch_size=16), samples=3, seed=2)
    first = space.random(random.Random(2)).spec
    # seeds 0-1 make the first evaluation, seeds 2-3 the second
    alone = [train(first, data, TrainSettings(epochs=1, batch_size=32, seed=s)).accuracy for s in range(4)]
    assert report.rows[0].accuracy == pytest.approx((alone[0] + alone[1]) / 2)
    assert report.rows[0].accuracy_reseeded == pytest.approx((alone[2] + alone[3]) / 2)


def test_too_few_samples_to_rank_is_an_error():
    with pytest.raises(SpecError, match="samples must be an integer >= 3, got 2"):
        proxy_study(Space(SPACE), load_data(DataSettings(limit=200)), TrainSettings(), NaswotSettings(), samples=2)
