"""A per-layer op choice with skip (the ``op`` knob over a space's ``ops``), a space's key in a
tabular benchmark, and the enumeration of every point."""

from __future__ import annotations

import math

import pytest

import archgen
from archgen.space import Space

BASE = {"base": "nasbench_macro"}
OPS = {"id": "skip", "small": {"exp": 3, "k": 3}, "big": {"exp": 6, "k": 5}}


def _space(**extra):
    return Space({**BASE, "ops": OPS, "per_block": {"op": ["id", "small", "big"]}, **extra})


def test_skip_is_the_identity_or_a_strided_projection_and_ops_set_block_knobs():
    space = _space(stages=[0])
    spec = space.apply({"s0_b0_op": "id", "s0_b1_op": "id"})
    first, second = spec.stage_blocks(0)
    assert (first.type, first.stride, first.in_chs, first.out_chs) == ("skip", 2, 32, 64)
    assert (second.type, second.stride) == ("skip", 1)
    model = archgen.build(spec)
    assert hasattr(model.stages[0][0], "downsample") and not list(model.stages[0][1].parameters())
    small = space.apply({"s0_b0_op": "small", "s0_b1_op": "big"}).stage_blocks(0)
    assert [(b.type, b.exp, b.kernel) for b in small] == [("ir", 96, 3), ("ir", 384, 5)]


def test_op_is_chosen_first_and_a_block_knob_tunes_only_the_blocks_it_applies_to():
    space = _space(stages=[0], per_block={"op": ["id", "small"], "k": [3, 7]})
    names = []
    space.sample(lambda name, knob, values: names.append(name) or values[-1] if knob == "k" else values[0])
    assert names == []  # every op is skip: no block has a kernel to choose
    sample = space.sample(lambda name, knob, values: values[-1])
    assert set(sample.params) == {"s0_b0_op", "s0_b0_k", "s0_b1_op", "s0_b1_k"}
    assert [b.kernel for b in sample.spec.stage_blocks(0)] == [7, 7]


def test_the_ops_order_is_their_cost_and_the_base_is_the_op_that_gives_its_block():
    space = _space()
    assert set(space.cheapest().params.values()) == {"id"} and set(space.dearest().params.values()) == {"big"}
    assert space.nearest_to_base().spec.key() == space.base.key()


def test_points_enumerates_every_point_once_define_by_run():
    space = _space(stages=[0], per_block={"op": ["id", "small"], "k": [3, 5, 7]})
    points = list(space.points())
    keys = {tuple(sorted(p.params.items())) for p in points}
    # per block: skip (no kernel) or small with one of 3 kernels = 4 ways, two blocks
    assert len(points) == len(keys) == 4**2
    with pytest.raises(archgen.SpecError, match="more than 5 points"):
        list(space.points(limit=5))


def test_the_key_is_the_codes_in_network_order_whatever_the_params_order():
    space = _space(key={"knobs": ["op"], "codes": {"id": "0", "small": "1", "big": "2"}, "sep": "-"})
    params = {f"s{s}_b{b}_op": "big" for s, n in enumerate((2, 3, 3)) for b in range(n)}
    params |= {"s2_b2_op": "id", "s0_b0_op": "small"}
    shuffled = dict(reversed(list(params.items())))
    assert space.key(shuffled) == "1-2-2-2-2-2-2-0"
    assert math.isinf(space.knob("op").rank("nope"))


@pytest.mark.parametrize("extra, message", [
    ({"ops": {"a": {"width": 2}}}, "ops.a: 'width' is not a block knob"),
    ({"ops": {"a": {"k": 4}}}, r"ops.a.k: 4 is not valid"),
    ({"ops": {"a": "identity"}}, "ops.a: expected 'skip' or a mapping"),
    ({"ops": {"a": {"se": True}}}, None),
    ({"ops": None}, "and it declares none"),
    ({"per_block": {"op": ["id", "huge"]}}, "per_block.op: 'huge' is not valid"),
    ({"key": {"knobs": ["k"]}}, r"key.knobs: expected a non-empty list of the space's knobs \(op\)"),
    ({"key": {"knobs": ["op"], "order": 1}}, "key: expected a mapping with knobs, codes, sep"),
])
def test_a_bad_ops_or_key_section_is_one_precise_line(extra, message):
    data = {**BASE, "ops": OPS, "per_block": {"op": ["id", "small", "big"]}, **extra}
    if "ops" in extra and extra["ops"] is not None:
        data["per_block"] = {"op": list(extra["ops"])}
    if message is None:
        Space(data)  # an SE op is a block knob that applies to an ir block
        return
    with pytest.raises(archgen.SpecError, match=message):
        Space(data)
