"""Same network, not only the same count: reference weights give the same logits."""

from __future__ import annotations

import pytest

import archgen
from tests.conftest import reference_logit_diff

from .references import PORTED, REFERENCES


@pytest.mark.parametrize("name", PORTED)
def test_reference_weights_give_the_same_logits(name):
    assert reference_logit_diff(name, REFERENCES[name](), 224) <= 1e-4


def test_weights_of_another_network_are_refused():
    model = archgen.create_model("mbv3_small")
    with pytest.raises(archgen.SpecError, match="tensors|shape mismatch"):
        archgen.load_reference_weights(model, REFERENCES["mbv2"]().state_dict())
