"""ResNet blocks: shortcuts, the v1.5 stride, knobs, torchvision's ResNet-50 logits, bad rows."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
import yaml

import archgen
from archgen.layers.conv import ConvNormAct
from tests.conftest import block_outputs, reference_logit_diff, zoo_table


def _projections(model: torch.nn.Module) -> dict[str, int]:
    """Blocks that have a projection shortcut (any module named ``downsample``) -> its stride."""
    found = {}
    for name, module in model.named_modules():
        if name.endswith(".downsample") and not isinstance(module, torch.nn.Identity):
            conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
            found[name.removesuffix(".downsample")] = conv.stride[0]
    return found


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_projection_shortcuts_sit_where_torchvision_has_them(name):
    model = archgen.create_model(name, input_size=32)
    ours = _projections(model)
    # torchvision's layer<i>.<j> is our stages.<i-1>.<j>
    theirs = {
        f"stages.{int(k[5]) - 1}.{k.split('.')[1]}": s for k, s in _projections(getattr(tvm, name)()).items()
    }
    assert ours == theirs
    for b in model.spec.blocks:
        if b.section == "stages":
            assert (b.name in ours) == (b.stride != 1 or b.in_chs != b.out_chs)
            if b.name in ours:
                assert isinstance(model.get_submodule(b.name).downsample, ConvNormAct)


def test_bottleneck_strides_its_3x3_conv():
    model = archgen.create_model("resnet50", input_size=32)
    for b in model.spec.blocks:
        if b.type == "bottleneck":
            block = model.get_submodule(b.name)
            assert block.conv1.stride == block.conv3.stride == (1, 1)
            assert block.conv2.stride == (b.stride, b.stride)
            assert block.conv1.out_channels == block.conv2.out_channels == b.exp


@pytest.mark.parametrize(
    ("name", "stage_chs"),
    [("resnet18", [32, 64, 128, 256]), ("resnet50", [128, 256, 512, 1024])],
)
def test_width_and_depth_multipliers_give_the_predicted_shapes(name, stage_chs):
    spec = archgen.load_spec(name, width_mult=0.5, depth_mult=1.5, input_size=63)
    base = archgen.load_spec(name)
    for s in range(4):
        n = len(base.stage_blocks(s))
        assert len(spec.stage_blocks(s)) == -(-n * 3 // 2)  # ceil(1.5 n)
    assert [i["num_chs"] for i in spec.feature_info()] == stage_chs
    if name == "resnet50":
        assert [b.exp for b in spec.blocks if b.name.endswith(".0") and b.stage is not None] == [32, 64, 128, 256]
    model = archgen.build(spec)
    shapes = block_outputs(model, torch.randn(1, 3, 63, 63))
    for b in spec.blocks:
        assert shapes[b.name] == ((b.out_chs, *b.out_size) if b.out_size else (b.out_chs,))
    # 63 -> 32 (conv1) -> 16 (max pool) -> 16, 8, 4, 2: each stride-2 3x3 conv rounds up
    assert [spec.stage_blocks(s)[-1].out_size for s in range(4)] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_resnet50_reference_weights_give_the_same_logits():
    assert reference_logit_diff("resnet50", tvm.resnet50(), 64) <= 1e-4


def test_expanded_spec_rebuilds_the_same_bottlenecks():
    spec = archgen.load_spec("resnet50", width_mult=0.25)
    again = archgen.load_spec(yaml.safe_load(spec.to_yaml()))
    assert [b.to_dict() for b in again.blocks] == [b.to_dict() for b in spec.blocks]
    a, b = archgen.build(again).state_dict(), archgen.build(spec).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


@pytest.mark.parametrize(
    ("name", "row", "field"),
    [
        ("resnet50", [0, 256, 3, 1], "mid"),
        ("resnet50", [64, 256, 0, 1], "n"),
        ("resnet18", [64, 2, 3], "s"),
        ("resnet18", [64.5, 2, 1], "c"),
    ],
)
def test_bad_row_values_name_the_field(name, row, field):
    data = zoo_table(name)
    data["body"]["rows"][0] = row
    with pytest.raises(archgen.SpecError, match=rf"body row 1 \(\w+\): field '{field}'"):
        archgen.load_spec(data, source=name)


@pytest.mark.parametrize(("name", "groups", "widths"), [
    ("resnext50_32x4d", 32, [128, 256, 512, 1024]),
    ("wide_resnet50_2", 1, [128, 256, 512, 1024]),
    ("resnet50", 1, [64, 128, 256, 512]),
])
def test_bottleneck_width_and_groups_are_torchvisions(name, groups, widths):
    model = archgen.create_model(name, input_size=32)
    ref = getattr(tvm, name)()
    for s, layer in enumerate([ref.layer1, ref.layer2, ref.layer3, ref.layer4]):
        ours = model.stages[s][0]
        assert ours.conv2.groups == layer[0].conv2.groups == groups
        assert ours.conv2.weight.shape == layer[0].conv2.weight.shape
        assert ours.conv1.out_channels == widths[s]


def test_resnet50_blocks_keep_their_expanded_form_and_keys():
    # cardinality and base_width at their defaults add nothing: saved spec.yaml files and latency keys stay valid
    b = archgen.load_spec("resnet50").blocks[2]
    assert b.to_dict() == {"name": "stages.0.0", "type": "bottleneck", "in": 64, "out": 256, "size": [56, 56], "s": 1,
                           "k": 3, "exp": 64, "nl": "relu"}
    assert b.key() == "bottleneck-in:56x56x64-out:256-s:1-k:3-exp:64-nl:relu"
    grouped = archgen.load_spec("resnext50_32x4d").blocks[2]
    assert grouped.args == {"groups": 32} and "groups:32" in grouped.key()


def _expanded(spec: archgen.ModelSpec) -> list[dict]:
    return [b.to_dict() for b in spec.blocks]


def test_base_width_and_mid_give_the_same_network():
    # torchvision's width_per_group and the paper's written width are two spellings of one table
    data = zoo_table("wide_resnet50_2")
    data["body"] = {"type": "bottleneck", "columns": ["mid", "c", "n", "s"],
                    "rows": [[128, 256, 3, 1], [256, 512, 4, 2], [512, 1024, 6, 2], [1024, 2048, 3, 2]]}
    assert _expanded(archgen.load_spec(data)) == _expanded(archgen.load_spec("wide_resnet50_2"))
    data = zoo_table("resnext50_32x4d")
    data["body"] = {"type": "bottleneck", "columns": ["c", "n", "s"], "defaults": {"cardinality": 32, "base_width": 4},
                    "rows": [[256, 3, 1], [512, 4, 2], [1024, 6, 2], [2048, 3, 2]]}
    assert _expanded(archgen.load_spec(data)) == _expanded(archgen.load_spec("resnext50_32x4d"))


@pytest.mark.parametrize(("name", "size"), [("resnext50_32x4d", 64), ("wide_resnet50_2", 32)])
def test_grouped_and_wide_reference_weights_give_the_same_logits(name, size):
    assert reference_logit_diff(name, getattr(tvm, name)(), size) <= 1e-4


@pytest.mark.parametrize(
    ("edit", "knobs", "message"),
    [
        ({"defaults": {"cardinality": 48}}, {}, r"field 'cardinality' must divide the bottleneck width \(128 channels\), got 48"),
        ({}, {"width_mult": 0.1}, r"field 'cardinality' must divide the bottleneck width \(16 channels after width_mult 0.1\)"),
        ({"defaults": {"cardinality": 32, "base_width": 4}}, {}, r"give 'mid' \(the bottleneck width\) or 'base_width'"),
    ],
)
def test_bad_cardinality_names_the_row_and_field(edit, knobs, message):
    data = zoo_table("resnext50_32x4d")
    data["body"].update(edit)
    with pytest.raises(archgen.SpecError, match=r"body row 1 \(bottleneck\): " + message):
        archgen.load_spec(data, source="resnext50_32x4d", **knobs)
