"""Knobs (``archgen.knobs``): each reads and sets its value on a block, or edits a stage, and
knows which of its values is nearest to the base's."""

from __future__ import annotations

import functools

import pytest

import archgen
from archgen.knobs import KNOBS, BlockKnob, StageKnob


@functools.cache
def _zoo_blocks() -> list[archgen.BlockConfig]:
    return [b for name in archgen.list_models() for b in archgen.load_spec(name).blocks]


def test_a_knob_is_a_block_knob_or_a_stage_knob_and_only_a_stage_knob_is_per_stage_only():
    assert all(isinstance(k, (BlockKnob, StageKnob)) for k in KNOBS.values())
    assert {k.name for k in KNOBS.values() if isinstance(k, StageKnob)} == {"depth", "width"}
    assert all(isinstance(k, StageKnob) == (k.scopes == ("per_stage",)) for k in KNOBS.values())


@pytest.mark.parametrize("name", [k for k, knob in KNOBS.items() if isinstance(knob, BlockKnob)])
def test_setting_the_value_a_block_has_changes_nothing(name):
    knob = KNOBS[name]
    if name == "op":  # a space's ops: a block has an op's value where the op gives the block itself
        knob = knob.with_ops({"k3": {"k": 3}, "k5": {"k": 5}})
    blocks = [b for b in _zoo_blocks() if knob.applies(b) and (name != "exp" or b.exp)]  # a conv's t is no expansion
    if name == "op":
        blocks = [b for b in blocks if b.kernel in (3, 5) and KNOBS["k"].applies(b)]
        assert all(knob.get(b) == f"k{b.kernel}" for b in blocks)
    assert blocks
    assert [b for b in blocks if knob.set(b, knob.get(b), 1) != b] == []


@pytest.mark.parametrize(
    "name, values",
    [("k", [3, 5, 7]), ("exp", [1, 3, 6]), ("se", [0.0, 0.25, 0.5, 1.0]), ("se_from", ["in", "exp"]),
     ("layer_per_block", [3, 5]), ("depthwise", [True, False])],
)
def test_a_knob_reads_back_the_value_it_sets(name, values):
    knob = KNOBS[name]
    blocks = [b for b in _zoo_blocks() if knob.applies(b) and (name != "exp" or b.exp) and (name != "se_from" or b.se)]
    assert blocks
    for v in values:
        got = {knob.get(knob.set(b, v, 1)) for b in blocks}
        assert {(g, isinstance(g, bool)) for g in got} == {(v, isinstance(v, bool))}


def test_stage_ch_is_a_ratio_of_the_blocks_own_hidden_width():
    osa = next(b for b in _zoo_blocks() if b.type == "osa")
    knob = KNOBS["stage_ch"]
    assert knob.get(osa) == 1.0
    assert knob.set(osa, 1.5, 8).exp == archgen.make_divisible(osa.exp * 1.5, 8) != osa.exp


def test_se_true_is_the_block_types_own_ratio_and_false_drops_the_se_settings():
    knob = KNOBS["se"]
    block = next(b for b in archgen.load_spec("efficientnet_b0").blocks if b.type == "ir" and b.se)
    assert knob.set(block, True, 1).se == 0.25
    off = knob.set(block, False, 1)
    assert off.se == 0.0 and not {"se_from", "se_round_to", "se_act", "se_gate"} & set(off.args)
    assert knob.nearest([block], [False, True, 0.5]) is True


@pytest.mark.parametrize("name, values, nearest", [("depth", [-1, 1, 2], 1), ("depth", [-2, -1], -1), ("width", [0.5, 0.75, 1.25], 1.25)])
def test_a_stage_knob_nearest_to_the_base_leaves_the_stage_closest_to_as_it_is_the_dearer_on_a_tie(name, values, nearest):
    assert KNOBS[name].nearest([], values) == nearest
