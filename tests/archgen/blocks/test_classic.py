"""Classic networks: LeNet-5, AlexNet, VGG and NiN against their references; VGG stages, NiN rows."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.vgg as tv_vgg

import archgen
from tests.conftest import zoo_table

from ..references import REFERENCES


@pytest.mark.parametrize(("name", "size"), [("lenet5", 28), ("nin", 96), ("alexnet", 64), ("vgg11", 64)])
def test_reference_weights_give_the_same_logits(name, size):
    reference = REFERENCES[name]().eval()
    model = archgen.create_model(name, input_size=size).eval()
    archgen.load_reference_weights(model, reference.state_dict())
    x = torch.randn(2, model.spec.in_chans, size, size)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    diff = (ours - theirs).abs().max().item()
    print(f"{name} at {size}x{size}: max |logit diff| = {diff:.3g}, logit spread {theirs.std().item():.3g}")
    assert theirs.std().item() > 1e-3  # the logits vary, so equal logits mean equal networks
    assert diff <= 1e-4


@pytest.mark.parametrize(("name", "size", "stage"), [("lenet5", 8, 1), ("alexnet", 16, 2)])
def test_too_small_input_names_the_stage(name, size, stage):
    with pytest.raises(archgen.SpecError, match=rf"input_size {size}x{size} is too small: .* at stage {stage}, body row \d"):
        archgen.load_spec(name, input_size=size)


@pytest.mark.parametrize(("name", "cfg"), [("vgg11", "A"), ("vgg16", "D")])
def test_vgg_rows_expand_to_torchvision_layer_config(name, cfg):
    spec = archgen.load_spec(name)
    body = [b for b in spec.blocks if b.stage is not None]
    assert [b.out_chs if b.type == "conv" else "M" for b in body] == tv_vgg.cfgs[cfg]
    for s in range(spec.num_stages):
        blocks = spec.stage_blocks(s)
        assert blocks[-1].type == "maxpool" and blocks[-1].stride == 2 and blocks[-1].kernel == 2
        assert all(b.type == "conv" and b.kernel == 3 and b.args == {"p": 1, "bn": False} for b in blocks[:-1])


def test_vgg_row_without_pool_stays_in_the_stage():
    data = zoo_table("vgg11")
    data["body"]["rows"][1] = {"c": 128, "n": 1, "s": 1}
    spec = archgen.load_spec(data, depth_mult=2.0)
    assert spec.num_stages == 4
    assert [b.type for b in spec.stage_blocks(0)] == ["conv", "conv", "maxpool", "conv", "conv"]
    assert spec.stage_blocks(0)[-1].out_size == (112, 112)


def test_nin_stages_begin_with_their_pool_and_end_in_class_maps():
    spec = archgen.load_spec("nin", num_classes=7, input_size=96)
    assert [b.type for b in spec.stage_blocks(0)] == ["nin"]
    for s in range(1, spec.num_stages):
        assert spec.stage_blocks(s)[0].type == "maxpool"
        assert spec.stage_blocks(s)[-1].type == "nin"
    assert spec.stage_blocks(spec.num_stages - 1)[-1].out_chs == 7
    model = archgen.build(spec).eval()
    block = model.get_submodule("stages.0.0")
    assert block.conv1.conv.stride == (4, 4) and block.conv1.conv.padding == (0, 0)
    assert block.conv2.conv.kernel_size == block.conv3.conv.kernel_size == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 96, 96)).shape == (1, 7)


@pytest.mark.parametrize(("row", "field"), [([256, 4, 1, 2], "k"), ([256, 5, 3, 2], "s")])
def test_bad_nin_row_names_the_row_and_field(row, field):
    data = zoo_table("nin")
    data["body"]["rows"][2] = row
    with pytest.raises(archgen.SpecError, match=rf"nin\.yaml: body row 3 \(nin\): field '{field}'"):
        archgen.load_spec(data, source="nin.yaml")
