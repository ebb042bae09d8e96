"""GoogLeNet's Inception module: torchvision's logits, the branches, width scaling, bad rows."""

from __future__ import annotations

import pytest
import torch

import archgen
from tests.conftest import block_outputs, reference_logit_diff, zoo_table

from ..references import REFERENCES


def test_googlenet_reference_weights_give_the_same_logits():
    # 100x100: odd sizes on the way down (50 -> 25 ...), so the ceil_mode pools matter
    assert reference_logit_diff("googlenet", REFERENCES["googlenet"](), 100) <= 1e-4


def test_inception_branches_follow_the_table_row():
    model = archgen.create_model("googlenet", input_size=64)
    blocks = [b for b in model.spec.blocks if b.type == "inception"]
    assert len(blocks) == 9
    for b in blocks:
        a, m = b.args, model.get_submodule(b.name)
        assert b.out_chs == a["ch1x1"] + a["ch3x3"] + a["ch5x5"] + a["pool_proj"]
        assert m.branch1.conv.out_channels == a["ch1x1"]
        assert [c.conv.out_channels for c in m.branch2] == [a["ch3x3red"], a["ch3x3"]]
        assert [c.conv.out_channels for c in m.branch3] == [a["ch5x5red"], a["ch5x5"]]
        assert m.branch3[1].conv.kernel_size == (3, 3)  # the table defaults' k5x5: 3 (torchvision)
        assert m.branch4[1].conv.out_channels == a["pool_proj"]
        assert m.branch1.bn.eps == 1e-3 and m.branch1.conv.bias is None


def test_paper_5x5_kernel_and_width_mult_give_the_predicted_shapes():
    data = zoo_table("googlenet")
    data["body"]["defaults"]["k5x5"] = 5
    spec = archgen.load_spec(data, width_mult=0.5, input_size=100)
    first = next(b for b in spec.blocks if b.type == "inception")
    # inception (3a) at half width: make_divisible(c / 2, 8) of 64, 128, 32, 32
    assert (first.args["ch1x1"], first.args["ch3x3"], first.args["ch5x5"], first.args["pool_proj"]) == (32, 64, 16, 16)
    assert first.out_chs == 128
    model = archgen.build(spec)
    assert model.get_submodule(first.name).branch3[1].conv.kernel_size == (5, 5)
    shapes = block_outputs(model, torch.randn(1, 3, 100, 100))
    for b in spec.blocks:
        assert shapes[b.name] == ((b.out_chs, *b.out_size) if b.out_size else (b.out_chs,))


def test_inception_row_of_the_wrong_length_names_the_row_and_columns():
    data = zoo_table("googlenet")
    data["body"]["rows"][3] = [192, 96, 208, 16, 48]
    with pytest.raises(
        archgen.SpecError,
        match=r"g\.yaml: body row 4 \(inception\): row has 5 values but the table has 6 columns "
        r"\[ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj\]",
    ):
        archgen.load_spec(data, source="g.yaml")


@pytest.mark.parametrize(("index", "value", "field"), [(3, 0, "ch5x5red"), (5, 32.5, "pool_proj")])
def test_bad_inception_value_names_the_row_and_field(index, value, field):
    data = zoo_table("googlenet")
    row = [192, 96, 208, 16, 48, 64]
    row[index] = value
    data["body"]["rows"][3] = row
    with pytest.raises(archgen.SpecError, match=rf"g\.yaml: body row 4 \(inception\): field '{field}'"):
        archgen.load_spec(data, source="g.yaml")


def test_even_5x5_kernel_is_refused():
    data = zoo_table("googlenet")
    data["body"]["defaults"]["k5x5"] = 4
    with pytest.raises(archgen.SpecError, match=r"body row 1 \(inception\): field 'k5x5' must be an odd"):
        archgen.load_spec(data, source="g.yaml")
