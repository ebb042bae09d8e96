"""``evaluator=train``: a short training from scratch on digits at 32x32, with the evaluators'
default of one thread, so that the tests take seconds and their results do not depend on the
machine's core count."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import archgen
from search.evaluators import Candidate, TrialFailed
from search.evaluators.train import Train, TrainResult, TrainSettings, train

from .conftest import TINY, assert_same_state, torch_state

ONE_EPOCH = TrainSettings(epochs=1)


def test_training_a_small_mobilenet_beats_chance(digits):
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=32, width_mult=0.5)
    result = train(spec, digits)
    assert isinstance(result, TrainResult)
    assert result.accuracy > 0.5  # chance is 0.1; the defaults reach 0.96
    assert result.score == result.accuracy
    assert result.epochs == TrainSettings().epochs and result.seconds > 0
    assert result.params == sum(p.numel() for p in archgen.build(spec).parameters())
    assert 0 < result.loss < math.log(10)  # below the loss of a uniform guess


def test_training_repeats_bit_for_bit_and_leaves_torch_as_it_found_it(digits):
    spec = archgen.load_spec(TINY)
    before = torch_state()
    first = train(spec, digits, ONE_EPOCH)
    assert_same_state(before)
    second = train(spec, digits, ONE_EPOCH)
    assert (first.accuracy, first.loss) == (second.accuracy, second.loss)
    other = train(spec, digits, dataclasses.replace(ONE_EPOCH, seed=1))
    assert other.loss != first.loss


def test_repeats_average_trainings_from_consecutive_seeds(digits):
    spec = archgen.load_spec(TINY)
    before = torch_state()
    both = train(spec, digits, dataclasses.replace(ONE_EPOCH, seed=3, repeats=2))
    assert_same_state(before)
    alone = [train(spec, digits, dataclasses.replace(ONE_EPOCH, seed=s)) for s in (3, 4)]
    assert both.accuracies == (alone[0].accuracy, alone[1].accuracy)
    assert both.accuracy == pytest.approx((alone[0].accuracy + alone[1].accuracy) / 2)
    assert both.loss == pytest.approx((alone[0].loss + alone[1].loss) / 2)
    assert both.params == alone[0].params and both.epochs == 1


def test_adamw_trains_too(digits):
    settings = dataclasses.replace(ONE_EPOCH, optimizer="adamw", lr=3e-3, weight_decay=0.05)
    result = train(archgen.load_spec(TINY), digits, settings)
    assert 0 < result.loss < math.log(10)


def test_a_diverging_loss_fails_the_trial(digits):
    before = torch_state()
    with pytest.raises(TrialFailed, match=r"tiny: training loss is nan at epoch 1, step \d+") as failure:
        train(archgen.load_spec(TINY), digits, dataclasses.replace(ONE_EPOCH, lr=1e6))
    assert failure.value.reason == str(failure.value)
    assert_same_state(before)


def test_batch_larger_than_the_training_set_is_refused(digits):
    few = dataclasses.replace(digits, train_x=digits.train_x[:10], train_y=digits.train_y[:10])
    with pytest.raises(archgen.SpecError, match=r"train.batch_size must be at most the 10 training samples of data digits, got 16"):
        train(archgen.load_spec(TINY), few, ONE_EPOCH)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "lamb"}, "train.optimizer must be sgd or adamw, got 'lamb'"),
        ({"batch_size": 1}, "train.batch_size must be an integer >= 2, got 1"),
        ({"lr": 0}, "train.lr must be a positive number, got 0"),
        ({"threads": 0}, "train.threads must be a positive integer or null, got 0"),
        ({"repeats": 0}, "train.repeats must be a positive integer, got 0"),
    ],
)
def test_bad_settings_name_the_setting(changes, message):
    with pytest.raises(archgen.SpecError) as err:
        TrainSettings(**changes)
    assert str(err.value) == message


def test_the_evaluator_scores_the_proxy_with_its_training(digits):
    """Train's score is train()'s accuracy, its seed scores the repeats', its throughput a figure
    for the trial; it reports one validation per epoch but the last."""
    spec = archgen.load_spec(TINY)
    settings = dataclasses.replace(ONE_EPOCH, epochs=2, repeats=2)
    reports: list[tuple[int, float]] = []
    score = Train(settings).evaluate(Candidate(None, spec, spec), digits, lambda epoch, acc: reports.append((epoch, acc)))
    result = train(spec, digits, settings)
    assert (score.value, score.seed_scores) == (result.accuracy, result.accuracies)
    assert score.attrs["images_per_s"] > 0 and score.seconds > 0
    assert [epoch for epoch, _ in reports] == [1, 2, 3]  # 2 epochs x 2 repeats, the last without a report
    assert Train(settings).epochs_reported() == 4


def test_fresh_seeds_follow_the_trials_seeds_none_shared():
    trainer = Train(dataclasses.replace(ONE_EPOCH, seed=5, repeats=2))
    fresh = trainer.fresh(3)
    assert list(fresh.settings.seeds) == [7, 8, 9] and not set(fresh.settings.seeds) & set(trainer.settings.seeds)
    assert fresh.seeds_label == "seeds 7-9" and fresh.settings.epochs == trainer.settings.epochs


def test_a_fine_tune_starts_from_the_weights_it_is_given_and_returns_the_trained_ones(digits):
    spec = archgen.load_spec(TINY)
    short = Train(ONE_EPOCH).with_schedule(steps=3, lr=1e-9)  # too few steps and too small a rate to move far
    assert (short.settings.steps, short.settings.warmup_epochs, short.settings.repeats) == (3, 0, 1)
    start = {k: torch.full_like(v, 0.01) if v.is_floating_point() else v for k, v in archgen.build(spec).state_dict().items()}
    _, weights = short.finetune(spec, digits, start)
    conv = "stem.0.conv.weight"
    assert torch.allclose(weights[conv], start[conv], atol=1e-6)
    assert not torch.allclose(weights[conv], archgen.build(spec).state_dict()[conv], atol=1e-3)
    longer = Train(dataclasses.replace(ONE_EPOCH, steps=7, repeats=3)).with_schedule(epochs=2, lr=0.01)
    assert (longer.settings.epochs, longer.settings.steps, longer.settings.lr, longer.settings.repeats) == (2, None, 0.01, 1)
