"""Same network, not only the same count: reference weights give the same logits."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision.models as tvm

import archgen
from tests.conftest import randomize_bn, reference_logit_diff

from .references import PORTED, REFERENCES, TIMM, TIMM_BN


@pytest.mark.parametrize("name", PORTED)
def test_reference_weights_give_the_same_logits(name):
    assert reference_logit_diff(name, REFERENCES[name](), 224) <= 1e-4


def test_weights_of_another_network_are_refused():
    model = archgen.create_model("mbv3_small")
    with pytest.raises(archgen.SpecError, match="tensors|shape mismatch"):
        archgen.load_reference_weights(model, REFERENCES["mbv2"]().state_dict())


def _logit_diff(model: torch.nn.Module, reference: torch.nn.Module, size: int) -> float:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return (model.eval()(x) - reference.eval()(x)).abs().max().item()


@pytest.mark.parametrize("name", TIMM)
def test_timm_checkpoints_load_and_give_the_same_logits(name):
    """The timm model loads as a module, so its BN eps is checked against the spec's bn.eps too."""
    reference = randomize_bn(timm.create_model(TIMM[name], pretrained=False))
    model = archgen.build(archgen.load_spec(name, input_size=64, bn=TIMM_BN.get(name)))
    archgen.load_reference_weights(model, reference)
    diff = _logit_diff(model, reference, 64)
    print(f"{name} <- timm {TIMM[name]} at 64x64: max |logit diff| = {diff:.3g}")
    assert diff < 1e-4


def test_a_bn_eps_that_differs_is_refused_naming_the_knob():
    reference = randomize_bn(timm.create_model("mobilenetv3_small_100", pretrained=False))
    model = archgen.create_model("mbv3_small", input_size=64)  # the zoo's eps 1e-3, timm's 1e-5
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_reference_weights(model, reference)
    message = str(err.value)
    assert "\n" not in message
    assert "generated stem.0.bn has eps 0.001, reference bn1 has 1e-05" in message
    assert "model=mbv3_small model.bn.eps=1e-05" in message and "bn={'eps': 1e-05}" in message
    # loading anyway is possible, and shows why it is refused by default: the logits differ
    archgen.load_reference_weights(model, reference, check_eps=False)
    assert _logit_diff(model, reference, 64) > 1e-3
    # a state dict carries no eps: it loads unchecked
    archgen.load_reference_weights(archgen.create_model("mbv3_small"), reference.state_dict())


def test_a_1x1_conv_head_loads_into_a_linear_and_other_shapes_are_refused():
    reference = timm.create_model("mobilenetv3_small_100", pretrained=False)
    model = archgen.build(archgen.load_spec("mbv3_small", bn={"eps": 1e-5}))
    mapping = archgen.load_reference_weights(model, reference)
    assert reference.conv_head.weight.shape == (1024, 576, 1, 1) and model.head[2].fc.weight.shape == (1024, 576)
    assert mapping["head.2.fc.weight"] == "conv_head.weight"
    assert torch.equal(model.head[2].fc.weight, reference.conv_head.weight.flatten(1))
    state = reference.state_dict()
    state["conv_head.weight"] = torch.zeros(1024, 576, 3, 3)
    with pytest.raises(archgen.SpecError, match=r"^shape mismatch: generated head\.2\.fc\.weight \(1024, 576\) "
                                                r"vs reference conv_head\.weight \(1024, 576, 3, 3\)$"):
        archgen.load_reference_weights(model, state)


def test_a_torchvision_module_loads_with_its_eps_checked():
    reference = randomize_bn(tvm.mobilenet_v3_small())  # eps 1e-3 as the zoo spec
    model = archgen.create_model("mbv3_small", input_size=64)
    archgen.load_reference_weights(model, reference)
    assert _logit_diff(model, reference, 64) < 1e-4
