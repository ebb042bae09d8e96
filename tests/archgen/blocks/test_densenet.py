"""DenseNet blocks: concatenation, transitions, knobs, torchvision's DenseNet-121 logits, bad rows."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
import yaml

import archgen
from tests.conftest import block_outputs, reference_logit_diff, zoo_table


def test_dense_layers_concatenate_and_transitions_open_the_stages():
    spec = archgen.load_spec("densenet121", input_size=64)
    dense = [b for b in spec.blocks if b.type == "dense"]
    assert [len([b for b in dense if b.stage == s]) for s in range(4)] == [6, 12, 24, 16]
    assert all(b.out_chs == b.in_chs + 32 and b.exp == 4 * 32 for b in dense)
    transitions = [b for b in spec.blocks if b.type == "transition"]
    assert [b.name for b in transitions] == ["stages.1.0", "stages.2.0", "stages.3.0"]
    assert all(b.out_chs == b.in_chs // 2 and b.stride == 2 for b in transitions)

    model = archgen.build(spec).eval()
    layer = model.get_submodule(dense[0].name)
    x = torch.randn(1, dense[0].in_chs, 8, 8)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (1, dense[0].out_chs, 8, 8)
    assert torch.equal(y[:, : dense[0].in_chs], x)  # the input passes through, new channels follow


def test_transition_halves_odd_sizes_by_floor_and_compresses_exactly():
    # 100 channels, theta = 0.29: floor(29.0) = 29 channels, which a float product (28.999...) would miss
    spec = archgen.load_spec(
        {"in_chans": 100, "input_size": 9, "body": [{"type": "transition", "compression": 0.29}]}
    )
    (block,) = spec.blocks
    assert (block.out_chs, block.out_size) == (29, (4, 4))
    out = archgen.build(spec).eval()(torch.randn(1, 100, 9, 9))
    assert out.shape == (1, 29, 4, 4)


def test_width_and_depth_multipliers_give_the_predicted_shapes():
    spec = archgen.load_spec("densenet121", width_mult=0.5, depth_mult=0.5, input_size=72)
    k, chs, expected = 16, 32, []  # growth 32 and stem 64 halved
    for i, n in enumerate((3, 6, 12, 8)):  # ceil(n / 2) of 6, 12, 24, 16
        chs = chs // 2 if i else chs
        chs += n * k
        expected.append(chs)
    assert [i["num_chs"] for i in spec.feature_info()] == expected
    assert all(b.exp == 4 * k for b in spec.blocks if b.type == "dense")
    # 72 -> 36 (conv) -> 18 (max pool) -> 9, 4, 2 at the transitions
    assert [spec.stage_blocks(s)[-1].out_size for s in range(4)] == [(18, 18), (9, 9), (4, 4), (2, 2)]
    model = archgen.build(spec)
    shapes = block_outputs(model, torch.randn(1, 3, 72, 72))
    for b in spec.blocks:
        assert shapes[b.name] == ((b.out_chs, *b.out_size) if b.out_size else (b.out_chs,))


def test_densenet121_reference_weights_give_the_same_logits():
    assert reference_logit_diff("densenet121", tvm.densenet121(), 64) <= 1e-4


def test_expanded_spec_rebuilds_the_same_layers_and_refuses_a_layer_that_adds_nothing():
    spec = archgen.load_spec("densenet121", width_mult=0.25, depth_mult=0.25)
    data = yaml.safe_load(spec.to_yaml())
    again = archgen.load_spec(data)
    a, b = archgen.build(again).state_dict(), archgen.build(spec).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]
    layer = {"name": "stages.0.0", "type": "dense", "in": 16, "out": 16, "size": [8, 8], "k": 3, "exp": 64}
    with pytest.raises(archgen.SpecError, match=r"dense layer.*'out' \(16\) must exceed 'in' \(16\)"):
        archgen.build(archgen.load_spec({"in_chans": 16, "input_size": 8, "blocks": [layer]}))


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"type": "transition", "compression": 1.5}, r"body row 2 \(transition\): field 'compression'"),
        ({"type": "transition", "compression": 0.001}, r"body row 2 \(transition\): field 'compression'.*no channel"),
        ({"type": "dense", "n": 12, "growth_rate": 0}, r"body row 2 \(dense\): field 'growth_rate'"),
        ({"type": "dense", "n": 12, "growth_rate": 32, "bn_size": 0}, r"body row 2 \(dense\): field 'bn_size'"),
    ],
)
def test_bad_row_values_name_the_field(row, match):
    data = zoo_table("densenet121")
    data["body"]["rows"][1] = row
    with pytest.raises(archgen.SpecError, match=match):
        archgen.load_spec(data, source="densenet121")
