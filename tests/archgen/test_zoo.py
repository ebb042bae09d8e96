"""Every zoo spec builds the reference network: same parameter count, the shapes it predicts."""

from __future__ import annotations

import pytest
import torch

import archgen
from tests.conftest import block_outputs, num_params

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
    model = archgen.build(spec)
    shapes = block_outputs(model, torch.randn(1, spec.in_chans, *spec.input_size))
    predicted = {b.name: (b.out_chs,) if b.out_size is None else (b.out_chs, *b.out_size) for b in spec.blocks}
    assert shapes == predicted  # every block's channels and (H, W), or its flat width
    assert shapes[spec.blocks[-1].name] == spec.output_shape == (spec.num_classes,)
    for s, info in enumerate(spec.feature_info()):
        assert shapes[spec.stage_blocks(s)[-1].name][0] == info["num_chs"]
    for block in spec.blocks:
        assert type(model.get_submodule(block.name)) is archgen.BLOCKS.get(block.type)
