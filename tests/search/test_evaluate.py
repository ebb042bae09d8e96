"""The accuracy evaluators: short training and the NASWOT score (Mellor et al., 2021).

Everything trains or scores on digits at 32x32 with the evaluators' default of one thread,
so that the tests take seconds and their results do not depend on the machine's core count.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import archgen
from search.data import DataSettings, load_data
from search.evaluate import (
    EVALUATORS,
    NaswotResult,
    NaswotSettings,
    TrainResult,
    TrainSettings,
    TrialFailed,
    evaluate,
    naswot_score,
)

# two inverted residuals: a few thousand parameters, an epoch on digits in a fraction of a second
TINY = {
    "name": "tiny",
    "num_classes": 10,
    "in_chans": 1,
    "input_size": 32,
    "stem": [{"type": "conv", "c": 8, "k": 3, "s": 2, "nl": "RE"}],
    "body": {
        "type": "bneck",
        "columns": ["k", "exp", "c", "se", "nl", "s"],
        "rows": [[3, 16, 16, False, "RE", 2], [3, 32, 16, False, "HS", 1]],
    },
    "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
}
ONE_EPOCH = TrainSettings(epochs=1)


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSettings())


def _torch_state() -> tuple:
    return (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_rng_state(),
    )


def _assert_same_state(before: tuple) -> None:
    after = _torch_state()
    assert after[:2] == before[:2]
    assert torch.equal(after[2], before[2])


def test_training_a_small_mobilenet_beats_chance(digits):
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=32, width_mult=0.5)
    result = evaluate(spec, "train", digits)
    assert isinstance(result, TrainResult)
    assert result.accuracy > 0.5  # chance is 0.1; the defaults reach 0.96
    assert result.score == result.accuracy
    assert result.epochs == TrainSettings().epochs and result.seconds > 0
    assert result.params == sum(p.numel() for p in archgen.build(spec).parameters())
    assert 0 < result.loss < math.log(10)  # below the loss of a uniform guess


def test_training_repeats_bit_for_bit_and_leaves_torch_as_it_found_it(digits):
    spec = archgen.load_spec(TINY)
    before = _torch_state()
    first = evaluate(spec, "train", digits, ONE_EPOCH)
    _assert_same_state(before)
    second = evaluate(spec, "train", digits, ONE_EPOCH)
    assert (first.accuracy, first.loss) == (second.accuracy, second.loss)
    other = evaluate(spec, "train", digits, dataclasses.replace(ONE_EPOCH, seed=1))
    assert other.loss != first.loss


def test_repeats_average_trainings_from_consecutive_seeds(digits):
    spec = archgen.load_spec(TINY)
    before = _torch_state()
    both = evaluate(spec, "train", digits, dataclasses.replace(ONE_EPOCH, seed=3, repeats=2))
    _assert_same_state(before)
    alone = [evaluate(spec, "train", digits, dataclasses.replace(ONE_EPOCH, seed=s)) for s in (3, 4)]
    assert both.accuracies == (alone[0].accuracy, alone[1].accuracy)
    assert both.accuracy == pytest.approx((alone[0].accuracy + alone[1].accuracy) / 2)
    assert both.loss == pytest.approx((alone[0].loss + alone[1].loss) / 2)
    assert both.params == alone[0].params and both.epochs == 1


def test_adamw_trains_too(digits):
    settings = dataclasses.replace(ONE_EPOCH, optimizer="adamw", lr=3e-3, weight_decay=0.05)
    result = evaluate(archgen.load_spec(TINY), "train", digits, settings)
    assert 0 < result.loss < math.log(10)


def test_a_diverging_loss_fails_the_trial(digits):
    before = _torch_state()
    with pytest.raises(TrialFailed, match=r"tiny: training loss is nan at epoch 1, step \d+") as failure:
        evaluate(archgen.load_spec(TINY), "train", digits, dataclasses.replace(ONE_EPOCH, lr=1e6))
    assert failure.value.reason == str(failure.value)
    _assert_same_state(before)


def test_a_spec_that_does_not_fit_the_data_names_every_mismatch(digits):
    spec = archgen.load_spec("mbv3_small", input_size=64)  # 3 channels, 1000 classes
    message = r"does not fit data digits: in_chans 3 \(the data's: 1\), input_size \(64, 64\) \(the data's: \(32, 32\)\), num_classes 1000 \(the data's: 10\)"
    for evaluator in EVALUATORS:
        with pytest.raises(archgen.SpecError, match=message):
            evaluate(spec, evaluator, digits)


def test_batch_larger_than_the_training_set_is_refused(digits):
    few = dataclasses.replace(digits, train_x=digits.train_x[:10], train_y=digits.train_y[:10])
    with pytest.raises(archgen.SpecError, match=r"train.batch_size must be at most the 10 training samples of data digits, got 16"):
        evaluate(archgen.load_spec(TINY), "train", few, ONE_EPOCH)
    with pytest.raises(archgen.SpecError, match=r"naswot.batch_size must be at most the 10 training samples"):
        evaluate(archgen.load_spec(TINY), "naswot", few)


def test_unknown_evaluator_and_mismatched_settings(digits):
    with pytest.raises(archgen.SpecError, match=r"^unknown evaluator 'zen'; known: naswot, train$"):
        evaluate(archgen.load_spec(TINY), "zen", digits)
    with pytest.raises(TypeError, match="takes NaswotSettings, got TrainSettings"):
        evaluate(archgen.load_spec(TINY), "naswot", digits, ONE_EPOCH)


@pytest.mark.parametrize(
    "settings, message",
    [
        (lambda: TrainSettings(optimizer="lamb"), "train.optimizer must be sgd or adamw, got 'lamb'"),
        (lambda: TrainSettings(batch_size=1), "train.batch_size must be an integer >= 2, got 1"),
        (lambda: TrainSettings(lr=0), "train.lr must be a positive number, got 0"),
        (lambda: TrainSettings(threads=0), "train.threads must be a positive integer or null, got 0"),
        (lambda: TrainSettings(repeats=0), "train.repeats must be a positive integer, got 0"),
        (lambda: NaswotSettings(batch_size=1.5), "naswot.batch_size must be an integer >= 2, got 1.5"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(archgen.SpecError) as err:
        settings()
    assert str(err.value) == message


def test_naswot_is_finite_and_repeats(digits):
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=32)
    before = _torch_state()
    first = evaluate(spec, "naswot", digits, NaswotSettings())
    _assert_same_state(before)
    assert isinstance(first, NaswotResult) and math.isfinite(first.score)
    assert evaluate(spec, "naswot", digits, NaswotSettings()).score == first.score
    assert evaluate(spec, "naswot", digits, NaswotSettings(seed=1)).score != first.score


def test_naswot_score_is_the_log_determinant_of_the_code_kernel():
    """Against the paper's definition, written out: concatenate every rectifier's on/off bits
    per image, count the agreements between each pair of images, take log|K|. The sigmoid is
    a gate, positive everywhere, and codes nothing."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 9), nn.Hardswish(), nn.Linear(9, 4), nn.Sigmoid())
    x = torch.randn(6, 5)
    with torch.no_grad():
        h1 = model[1](model[0](x))
        h2 = model[3](model[2](h1))
    codes = torch.cat([h1 > 0, h2 > 0], dim=1).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot_score(model, x) == pytest.approx(torch.linalg.slogdet(kernel).logabsdet.item(), abs=1e-9)


def test_naswot_ranks_a_real_network_above_a_degenerate_one(digits):
    """The degenerate network is the same MobileNetV3-Small with its stem convolution zeroed:
    every later layer then sees the same input for every image, so all images get the same
    code, every row of K is the same and det K = 0: log|K| = -inf, below any real score."""
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=32)
    x = digits.train_x[:32]
    model = archgen.build(spec).train()
    real = naswot_score(model, x)
    with torch.no_grad():
        model.stem[0].conv.weight.zero_()
    assert math.isfinite(real) and naswot_score(model, x) == -math.inf


def test_naswot_refuses_a_network_without_rectifiers():
    data = load_data(DataSettings(size=28))  # LeNet-5's 28x28 input, sigmoid activations
    with pytest.raises(archgen.SpecError, match="naswot needs rectifier activations .*; the model has none"):
        evaluate(archgen.load_spec("lenet5", num_classes=10), "naswot", data)
