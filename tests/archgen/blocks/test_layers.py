"""Plain layers: the conv row's groups (a grouped conv as ResNeXt's and ShuffleNet's)."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

import archgen
from archgen.cost.lut import table_key


def _spec(groups: int, c: int = 96, **knobs) -> archgen.ModelSpec:
    data = {
        "stem": [{"type": "conv", "c": 64, "k": 3, "s": 2, "nl": "RE"}],
        "body": [{"type": "conv", "c": c, "k": 3, "groups": groups, "nl": "RE"}],
        "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
    }
    return archgen.load_spec(data, source="g.yaml", input_size=16, num_classes=10, **knobs)


def test_groups_build_a_grouped_conv_and_count_as_grouped():
    dense, grouped = _spec(1), _spec(32)
    conv = archgen.build(grouped).get_submodule("stages.0.0").conv
    assert conv.groups == 32 and conv.weight.shape == (96, 2, 3, 3)
    d, g = dense.blocks[1], grouped.blocks[1]
    assert "groups" not in d.args and "groups" not in d.to_dict()  # a dense conv's expanded form is unchanged
    assert "groups:32" in table_key(g, 1, 1) and "groups" not in table_key(d, 1, 1)
    again = archgen.load_spec(yaml.safe_load(grouped.to_yaml()))
    assert [b.to_dict() for b in again.blocks] == [b.to_dict() for b in grouped.blocks]
    x = torch.randn(1, 3, 16, 16)
    assert archgen.build(again)(x).shape == (1, 10)


@pytest.mark.parametrize(("groups", "c", "knobs", "got"), [(5, 96, {}, "(64) and output (96) channels, got 5"),
                                                           (64, 96, {}, "(64) and output (96) channels, got 64"),
                                                           (32, 96, {"width_mult": 0.25}, "(16) and output (24)")])
def test_groups_that_do_not_divide_the_channels_name_the_row(groups, c, knobs, got):
    with pytest.raises(archgen.SpecError, match=r"^g.yaml: body row 1 \(conv\): field 'groups' must divide the input " + re.escape(got)):
        _spec(groups, c, **knobs)


def test_expanded_spec_whose_input_no_longer_divides_is_refused_in_one_line():
    data = _spec(32).to_dict()
    data["blocks"][0]["out"] = data["blocks"][1]["in"] = 48
    with pytest.raises(archgen.SpecError, match=r"blocks\[2\] \(stages.0.0, conv\): field 'groups' must divide the input \(48\)"):
        archgen.build(archgen.load_spec(data))


def test_groups_must_be_a_positive_integer():
    with pytest.raises(archgen.SpecError, match=r"body row 1 \(conv\): field 'groups' must be an integer >= 1, got 0"):
        _spec(0)
