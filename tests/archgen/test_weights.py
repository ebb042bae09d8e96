"""Same network, not only the same count: reference weights give the same logits."""

from __future__ import annotations

import pytest
import torch

import archgen
from tests.conftest import randomize_bn

from .references import PORTED, REFERENCES


@pytest.mark.parametrize("name", PORTED)
def test_reference_weights_give_the_same_logits(name):
    reference = randomize_bn(REFERENCES[name]()).eval()
    model = archgen.create_model(name)
    archgen.load_reference_weights(model, reference.state_dict())
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    print(f"{name}: max |logit diff| = {diff:.3g}")
    assert diff <= 1e-4


def test_weights_of_another_network_are_refused():
    model = archgen.create_model("mbv3_small")
    with pytest.raises(archgen.SpecError, match="tensors|shape mismatch"):
        archgen.load_reference_weights(model, REFERENCES["mbv2"]().state_dict())
