"""Every zoo spec builds the reference network: same parameter count, the shapes it predicts."""

from __future__ import annotations

import pytest
import torch

import archgen
from tests.conftest import num_params

from .references import REFERENCES

ZOO = archgen.list_models()


def test_every_zoo_model_has_a_reference():
    assert set(REFERENCES) == set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_param_count_equals_reference(name):
    with torch.device("meta"):  # shapes are all a count needs: VGG-16 and Wide ResNet-50-2 hold 69-138 M
        assert num_params(archgen.create_model(name)) == num_params(REFERENCES[name]())


@pytest.mark.parametrize("name", ZOO)
def test_forward_gives_the_shapes_the_spec_predicts(name):
    spec = archgen.load_spec(name)
    x = torch.randn(1, spec.in_chans, *spec.input_size)
    model = archgen.build(spec).eval()
    with torch.no_grad():
        features = [model.stem(x)]
        for stage in model.stages:
            features.append(stage(features[-1]))
        logits = model.head(features[-1])
    assert tuple(logits.shape[1:]) == spec.output_shape == (spec.num_classes,)
    for info, feat in zip(spec.feature_info(), features[1:], strict=True):
        assert feat.shape[1] == info["num_chs"]
    for block in spec.blocks:
        module = model.get_submodule(block.name)
        assert module is not None
