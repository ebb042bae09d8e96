"""``evaluator=naswot``: the training-free score of Mellor et al., "Neural Architecture Search
without Training", ICML 2021."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import archgen
from search.data import DataSettings, load_data
from search.evaluators.naswot import NaswotResult, NaswotSettings, naswot, naswot_score

from .conftest import TINY, assert_same_state, torch_state


def test_naswot_is_finite_and_repeats(digits):
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=32)
    before = torch_state()
    first = naswot(spec, digits, NaswotSettings())
    assert_same_state(before)
    assert isinstance(first, NaswotResult) and math.isfinite(first.score)
    assert naswot(spec, digits, NaswotSettings()).score == first.score
    assert naswot(spec, digits, NaswotSettings(seed=1)).score != first.score


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
        naswot(archgen.load_spec("lenet5", num_classes=10), data)


def test_a_batch_larger_than_the_training_set_is_refused(digits):
    few = dataclasses.replace(digits, train_x=digits.train_x[:10], train_y=digits.train_y[:10])
    with pytest.raises(archgen.SpecError, match=r"naswot.batch_size must be at most the 10 training samples"):
        naswot(archgen.load_spec(TINY), few)


def test_bad_settings_name_the_setting():
    with pytest.raises(archgen.SpecError) as err:
        NaswotSettings(batch_size=1.5)
    assert str(err.value) == "naswot.batch_size must be an integer >= 2, got 1.5"
