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
    assert len(acc) == 4 and all(0 <= a <= 1 for a in acc)
    assert report.spread == {"min": min(acc), "median": statistics.median(acc), "max": max(acc), "std": statistics.stdev(acc)}
    assert report.tau_seeds == pytest.approx(kendalltau(acc, [r.accuracy_reseeded for r in report.rows]).statistic)
    assert report.tau_naswot == pytest.approx(kendalltau([r.naswot for r in report.rows], acc).statistic)
    # the second seed's figure is a real training with train.seed + 1: it repeats on its own
    first = space.random(random.Random(2)).spec
    again = train(first, data, TrainSettings(epochs=1, batch_size=32, seed=1)).accuracy
    assert again == report.rows[0].accuracy_reseeded


def test_too_few_samples_to_rank_is_an_error():
    with pytest.raises(SpecError, match="samples must be an integer >= 3, got 2"):
        proxy_study(Space(SPACE), load_data(DataSettings(limit=200)), TrainSettings(), NaswotSettings(), samples=2)
