"""The inference form: BatchNorm folded, no-ops dropped, channels-last; the same logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archgen
from archgen.deploy import deploy
from tests.conftest import calibrate_bn

from .references import PORTED

ZOO = archgen.list_models()
PRE_ACTIVATION = {"densenet121"}  # BN before the conv: nothing to fold it into


def _small_spec(name: str) -> archgen.ModelSpec:
    """The zoo spec at the smallest of a few input sizes it takes (fast to run)."""
    for size in (64, 96, 128):
        try:
            return archgen.load_spec(name, input_size=min(size, archgen.load_spec(name).input_size[0]))
        except archgen.SpecError:
            continue
    return archgen.load_spec(name)


def _model(name: str, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor]:
    spec = _small_spec(name)
    size = spec.input_size[0]
    model = archgen.build(spec).to(dtype)
    x = torch.randn(2, spec.in_chans, size, size, dtype=dtype)
    return calibrate_bn(model, torch.randn(8, spec.in_chans, size, size, dtype=dtype)), x


@pytest.mark.parametrize("name", ZOO)
def test_inference_form_is_the_same_function_with_no_batchnorm_left(name):
    # In float64 the rewrite must be exact up to rounding far below any float32 effect, on every
    # zoo model; float32 rounding alone moves deep random-weight nets' logits by ~1e-4.
    model, x = _model(name, torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = deploy(model)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-9 * max(1.0, expected.abs().max().item())
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    if name in PRE_ACTIVATION:
        assert 0 < bns < sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    else:
        assert bns == 0
    assert not any(isinstance(m, (nn.Identity, nn.Dropout)) for m in fast.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the training form is untouched


@pytest.mark.parametrize("name", PORTED)
def test_mobile_and_ported_models_stay_within_1e4_of_the_logits_in_float32(name):
    # relative to the logits' scale: ResNeXt-50's and EfficientNet's random-weight logits reach
    # 3 and 30, and float32 rounding alone moves them by 1e-4 (eager float32 against float64)
    model, x = _model(name)
    with torch.no_grad():
        expected = model(x)
        assert (deploy(model)(x) - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


def test_inference_form_keeps_the_spec_and_takes_a_plain_input():
    model, x = _model("mbv3_small")
    fast = deploy(model)
    assert fast.spec == model.spec and fast.feature_info == model.feature_info
    assert any(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters() if p.dim() == 4)
    with torch.no_grad():
        assert torch.allclose(fast(x.contiguous()), model(x), atol=1e-4)


def test_features_only_backbones_deploy_too():
    model = archgen.create_model("mbv3_large", features_only=True, out_indices=(1, 3), input_size=64)
    model = calibrate_bn(model, torch.randn(4, 3, 64, 64))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), deploy(model)(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)


def test_a_model_that_cannot_be_traced_is_a_short_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(archgen.SpecError, match="deploy: the model cannot be traced"):
        deploy(DataDependent())
