"""MobileNet-family blocks: the SE settings (base width, ratio, rounding, activation, gate),
MnasNet's SepConv as a ``ds`` row, EfficientNet-B1..B7 and MnasNet-B1's widths against
torchvision, the shipped specs' expanded forms unchanged, and bad SE fields."""

from __future__ import annotations

import copy
import random
from functools import partial

import pytest
import timm
import torch
import torchvision.models as tvm
import yaml
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, SqueezeExcite as TimmSE
from torch import nn
from torchvision.ops import SqueezeExcitation

import archgen
from archgen.layers.se import SqueezeExcite
from archgen.space import Space, list_spaces
from tests.conftest import num_params, randomize_bn, zoo_table

# (width, depth, resolution, dropout) of EfficientNet-B1..B7 (Tan & Le 2019, Sec. 3.3; torchvision)
COMPOUND = {
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}


def _fan_in(model: nn.Module) -> nn.Module:
    """Redraw every conv and linear weight with He's fan-in scale. torchvision's own init (fan-out,
    which on a depthwise conv is 1/3 of fan-in's scale) lets the signal of a random MNASNet or
    EfficientNet die out: its logits do not depend on the input, and a logit comparison could not fail."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")
    return model


def _logit_diff(model: nn.Module, reference: nn.Module, size: int) -> float:
    """Largest |logit difference|, relative to the reference's largest logit, after checking that
    the reference's logits depend on the input."""
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model.eval()(x), reference.eval()(x)
    assert (theirs[0] - theirs[1]).abs().max() > 1e-2 * theirs.abs().max()
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def _one_block(row: dict, in_chans: int = 16, size: int = 8) -> archgen.ArchNet:
    spec = archgen.load_spec({"in_chans": in_chans, "input_size": size, "round_to": 8, "body": [row]})
    return archgen.build(spec).eval()


def _load(tmp_path, data: dict) -> archgen.ModelSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return archgen.load_spec(path)


@pytest.mark.parametrize("b", sorted(COMPOUND))
def test_efficientnet_b0_table_with_the_compound_coefficients_is_torchvisions_bn(b):
    width, depth, size, dropout = COMPOUND[b]
    with torch.device("meta"):  # B7 has 66 M parameters: shapes are all this compares
        reference = getattr(tvm, f"efficientnet_b{b}")()
        model = archgen.create_model("efficientnet_b0", width_mult=width, depth_mult=depth, input_size=size, dropout=dropout)
    assert num_params(model) == num_params(reference)
    # the SE widths, ours make_divisible(in * 0.25, 1), torchvision's max(1, in // 4), block by block
    theirs = [m.fc1.out_channels for m in reference.modules() if isinstance(m, SqueezeExcitation)]
    ours = [m.fc1.out_channels for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert ours == theirs and len(ours) == sum(b.type == "ir" for b in model.spec.blocks)
    # the head conv is 4 x the last stage's width (1280 at B0 and B1, 2560 at B7)
    assert model.head[0].conv.out_channels == reference.features[-1][0].out_channels == 4 * model.spec.blocks[-5].out_chs


@pytest.mark.parametrize("b", sorted(COMPOUND))
def test_efficientnet_b1_to_b7_files_are_b0_with_the_compound_coefficients_and_torchvisions_bn(b):
    spec = archgen.load_spec(f"efficientnet_b{b}")
    width, depth, size, dropout = COMPOUND[b]
    assert (spec.name, spec.width_mult, spec.depth_mult, spec.input_size, spec.dropout) == (
        f"efficientnet_b{b}", width, depth, (size, size), dropout)
    with torch.device("meta"):
        norms = {(m.eps, m.momentum) for m in getattr(tvm, f"efficientnet_b{b}")().modules() if isinstance(m, nn.BatchNorm2d)}
        ours = {(m.eps, m.momentum) for m in archgen.build(spec).modules() if isinstance(m, nn.BatchNorm2d)}
    assert ours == norms and len(norms) == 1


@pytest.mark.parametrize("b", [1, 5])  # PyTorch's BatchNorm settings, and TensorFlow's
def test_efficientnet_b1_and_b5_give_torchvisions_logits_with_its_weights(b):
    reference = randomize_bn(_fan_in(getattr(tvm, f"efficientnet_b{b}")()))
    model = archgen.create_model(f"efficientnet_b{b}", input_size=64)
    archgen.load_reference_weights(model, reference)  # the module: its BatchNorm eps is checked too
    assert _logit_diff(model, reference, 64) <= 1e-5


@pytest.mark.parametrize("name, reference", [
    ("efficientnet_b0", tvm.efficientnet_b0),
    ("mnasnet_b1", tvm.mnasnet1_0),
    ("mnasnet_a1", lambda: timm.create_model("semnasnet_100")),  # timm's current name of mnasnet_a1
])
def test_reference_weights_give_the_same_logits_on_weights_that_reach_the_logits(name, reference):
    reference = randomize_bn(_fan_in(reference()))
    model = archgen.create_model(name, input_size=64)
    archgen.load_reference_weights(model, reference.state_dict())
    assert _logit_diff(model, reference, 64) <= 1e-5


@pytest.mark.parametrize("width, reference", [(0.5, tvm.mnasnet0_5), (0.75, tvm.mnasnet0_75), (1.3, tvm.mnasnet1_3)])
def test_mnasnet_b1_widths_are_torchvisions_mnasnet(width, reference):
    reference = randomize_bn(_fan_in(reference()))
    model = archgen.create_model("mnasnet_b1", width_mult=width, input_size=64)
    assert num_params(model) == num_params(reference)
    # the stem and the SepConv scale (torchvision's depths[0], depths[1]); the head's 1280 does not
    assert (model.spec.blocks[0].out_chs, model.spec.blocks[1].out_chs) == (
        reference.layers[0].out_channels, reference.layers[6].out_channels)
    assert model.head[0].conv.out_channels == 1280
    archgen.load_reference_weights(model, reference.state_dict())
    assert _logit_diff(model, reference, 64) <= 1e-5


@pytest.mark.parametrize("pw_act", [False, True])
def test_ds_with_se_is_timms_depthwise_separable_conv(pw_act):
    """MnasNet's SepConv (pw_act false) and its MobileNetV1 form, with an SE between the convs."""
    reference = randomize_bn(DepthwiseSeparableConv(16, 24, pw_act=pw_act, se_layer=partial(TimmSE, rd_ratio=0.25))).eval()
    row = {"type": "ds", "c": 24, "nl": "relu", "pw_act": pw_act, "se": 0.25, "se_from": "in", "se_round_to": 1, "se_gate": "sigmoid"}
    block = _one_block(row).stages[0][0]
    assert [name for name, _ in block.named_children()] == ["dw", "se", "pw"]
    assert block.se.fc1.out_channels == reference.se.conv_reduce.out_channels == 4
    archgen.load_reference_weights(block, reference.state_dict())
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert (block(x) - reference(x)).abs().max().item() <= 1e-5
    assert isinstance(block.pw[-1], torch.nn.ReLU) == pw_act


@pytest.mark.parametrize("settings, squeeze", [
    ({}, 24),                                   # MobileNetV3: make_divisible(96 / 4, round_to 8)
    ({"se_from": "in"}, 8),                     # 16 / 4 = 4, rounded up to the spec's round_to
    ({"se_from": "in", "se_round_to": 1}, 4),   # EfficientNet, MnasNet: 16 / 4
    ({"se_round_to": 16}, 32),                  # its own divisor, not the channels' round_to
])
def test_se_width_follows_se_from_and_se_round_to(settings, squeeze):
    block = _one_block({"type": "ir", "t": 6, "c": 16, **settings, "se": 0.25}).stages[0][0]
    assert block.layers.dw.conv.out_channels == 96
    assert block.layers.se.fc1.out_channels == squeeze


@pytest.mark.parametrize("type_name", ["ir", "ds", "bneck"])
def test_se_act_and_gate_reach_the_module(type_name):
    row = {"ir": {"t": 6, "c": 16}, "ds": {"c": 16}, "bneck": {"k": 3, "exp": 96, "c": 16, "nl": "RE", "s": 1}}[type_name]
    model = _one_block({"type": type_name, **row, "se": True, "se_act": "silu", "se_gate": "sigmoid"})
    se = next(m for m in model.modules() if isinstance(m, SqueezeExcite))
    assert isinstance(se.act, torch.nn.SiLU) and isinstance(se.gate, torch.nn.Sigmoid)
    default = next(m for m in _one_block({"type": type_name, **row, "se": True}).modules() if isinstance(m, SqueezeExcite))
    assert isinstance(default.act, torch.nn.ReLU) and isinstance(default.gate, torch.nn.Hardsigmoid)


# The block args of the MobileNet blocks of the shipped specs before the SE settings existed:
# a default left out of the expanded form keeps spec.yaml files and latency-table keys as they were.
SHIPPED_ARGS = {"bneck": ("se_act", "se_gate"), "ir": (), "ds": ()}


@pytest.mark.parametrize("name", ["mbv1", "mbv2", "mbv3_large", "mbv3_small"])
def test_shipped_specs_keep_their_expanded_form(name):
    spec = archgen.load_spec(name)
    blocks = [b for b in spec.blocks if b.type in SHIPPED_ARGS]
    assert blocks and all(tuple(b.args) == SHIPPED_ARGS[b.type] for b in blocks)
    if name.startswith("mbv3"):  # and the values are MobileNetV3's
        assert {(b.args["se_act"], b.args["se_gate"]) for b in blocks} == {("relu", "hsigmoid")}


@pytest.mark.parametrize("space_name", list_spaces())
def test_search_spaces_keep_their_blocks_args(space_name):
    space = Space(space_name)
    for sample in (space.cheapest(), space.dearest(), space.random(random.Random(0))):
        blocks = [b for b in sample.spec.blocks if b.type in SHIPPED_ARGS]
        assert all(tuple(b.args) == SHIPPED_ARGS[b.type] for b in blocks)


def test_se_settings_are_block_args_only_where_the_block_has_se():
    spec = archgen.load_spec("mnasnet_a1")
    with_se = [b for b in spec.blocks if b.se]
    assert len(with_se) == 8  # Fig. 7: the 40-, 112- and 160-channel stages
    assert all(b.args == {"se_from": "in", "se_round_to": 1, "se_gate": "sigmoid"} for b in with_se)
    assert all(b.args == {} for b in spec.blocks if b.type == "ir" and not b.se)
    assert spec.blocks[1].type == "ds" and spec.blocks[1].args == {"pw_act": False}


def test_a_bad_se_from_in_an_expanded_spec_is_one_line(tmp_path):
    data = yaml.safe_load(archgen.load_spec("efficientnet_b0", input_size=32).to_yaml())
    data["blocks"][3]["se_from"] = "out"
    with pytest.raises(archgen.SpecError) as err:
        archgen.build(_load(tmp_path, data))
    assert str(err.value) == (f"{tmp_path / 'spec.yaml'}: blocks[4] (stages.1.1, ir): field 'se_from' must be one of "
                              "exp, in, got 'out'")


def _defaults(name: str, **fields) -> dict:
    data = copy.deepcopy(zoo_table(name))
    data["body"]["defaults"] = {**data["body"].get("defaults", {}), **fields}
    return data


@pytest.mark.parametrize("name, fields, row, expected", [
    ("efficientnet_b0", {"se_from": "out"}, "body row 1 (ir)", "field 'se_from' must be one of exp, in, got 'out'"),
    ("efficientnet_b0", {"se": 1.5}, "body row 1 (ir)", "field 'se' must be true, false or a ratio in (0, 1] (squeeze-and-excitation), got 1.5"),
    ("efficientnet_b0", {"se": -0.25}, "body row 1 (ir)", "field 'se' must be true, false or a ratio in (0, 1]"),
    ("efficientnet_b0", {"se_round_to": 0}, "body row 1 (ir)", "field 'se_round_to' must be an integer >= 1, got 0"),
    ("efficientnet_b0", {"se_gate": "softmax"}, "body row 1 (ir)", "field 'se_gate' must be an activation"),
    ("mbv3_small", {"se_from": "mid"}, "body row 1 (bneck)", "field 'se_from' must be one of exp, in, got 'mid'"),
])
def test_bad_se_fields_are_one_line_naming_file_row_and_field(tmp_path, name, fields, row, expected):
    with pytest.raises(archgen.SpecError) as err:
        _load(tmp_path, _defaults(name, **fields))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'spec.yaml'}: {row}: ") and expected in message


def test_bad_se_on_a_ds_row_names_the_row(tmp_path):
    data = zoo_table("mnasnet_b1")
    data["body"]["rows"][0]["se"] = 2
    with pytest.raises(archgen.SpecError, match=r"body row 1 \(ds\): field 'se' must be true, false or a ratio in \(0, 1\]"):
        _load(tmp_path, data)
