"""Search spaces: choices edit the flat block list into a concrete, rebuildable spec."""

from __future__ import annotations

import random
import re

import pytest
import torch

import archgen
from archgen.knobs import KNOBS
from archgen.space import Space, list_spaces

SPACES = list_spaces()


def test_the_issue_s_spaces_ship():
    assert {"mbv3_large", "mbv2", "vovnet"} <= set(SPACES)


@pytest.mark.parametrize("name", SPACES)
def test_random_points_build_and_run_with_the_shapes_their_spec_predicts(name):
    space = Space(name, input_size=64, num_classes=10)
    for seed in range(3):
        sample = space.random(random.Random(seed))
        model = archgen.build(sample.spec).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
        for b in sample.spec.blocks:
            assert type(model.get_submodule(b.name)) is archgen.BLOCKS.get(b.type)


@pytest.mark.parametrize("name", SPACES)
def test_recorded_choices_rebuild_the_same_spec_and_its_yaml_too(name, tmp_path):
    space = Space(name)
    sample = space.random(random.Random(7))
    again = space.apply(sample.params)
    assert [b.to_dict() for b in again.blocks] == [b.to_dict() for b in sample.spec.blocks]
    path = tmp_path / "best.yaml"
    path.write_text(sample.spec.to_yaml())
    loaded = archgen.load_spec(path)
    assert [b.to_dict() for b in loaded.blocks] == [b.to_dict() for b in sample.spec.blocks]


@pytest.mark.parametrize("name", SPACES)
def test_parameter_names_are_flat_readable_labels(name):
    params = Space(name).random(random.Random(0)).params
    pattern = re.compile(rf"^s\d+(_b\d+)?_({'|'.join(KNOBS)})$")
    assert params and all(pattern.match(p) for p in params), list(params)


@pytest.mark.parametrize("name", SPACES)
def test_the_cheapest_point_costs_no_more_than_any_random_point(name):
    space = Space(name)
    floor = archgen.count(space.cheapest().spec).macs
    rng = random.Random(1)
    assert all(archgen.count(space.random(rng).spec).macs >= floor for _ in range(6))


def test_per_block_choices_land_on_the_named_block():
    space = Space("mbv3_large")
    params = dict(space.random(random.Random(0)).params)
    params.update({"s2_b1_k": 7, "s2_b1_exp": 6, "s2_b1_se": False})
    spec = space.apply(params)
    block = next(b for b in spec.blocks if b.name == "stages.2.1")
    assert (block.kernel, block.exp, block.se) == (7, archgen.make_divisible(6 * block.in_chs, 8), 0.0)
    params["s2_b1_se"] = True
    assert next(b for b in space.apply(params).blocks if b.name == "stages.2.1").se == 0.25


def test_depth_and_width_change_the_stage_and_the_chain_follows():
    space = Space("mbv2")
    base = space.base
    params = dict(space.random(random.Random(0)).params)
    params.update({"s3_depth": 1, "s3_width": 1.25, "s2_depth": -1, "s2_width": 1.0})
    spec = space.apply(params)
    assert len(spec.stage_blocks(3)) == len(base.stage_blocks(3)) + 1
    assert len(spec.stage_blocks(2)) == len(base.stage_blocks(2)) - 1
    widened = spec.stage_blocks(3)
    expected = [archgen.make_divisible(b.out_chs * 1.25, 8) for b in base.stage_blocks(3)]
    assert [b.out_chs for b in widened] == expected + expected[-1:]  # 64 -> 80 and 96 -> 120, one more 120
    assert spec.stage_blocks(4)[0].in_chs == widened[-1].out_chs
    assert [b.name for b in widened] == [f"stages.3.{j}" for j in range(len(widened))]
    assert widened[-1].stride == 1 and widened[-1].in_chs == widened[-1].out_chs
    assert f"s3_b{len(widened) - 1}_k" not in params  # mbv2's space is per stage: no per-block names


def test_a_stage_that_grows_gets_parameters_for_its_new_blocks():
    space = Space({"base": "mbv3_large", "stages": [2], "per_stage": {"depth": [0, 1]}, "per_block": {"k": [3, 5]}})
    names = set(space.sample(lambda name, knob, values: values[-1]).params)
    assert {"s2_depth", "s2_b0_k", "s2_b1_k", "s2_b2_k", "s2_b3_k"} == names
    assert space.depth_values(0) == [0, 1]


def test_depth_never_removes_a_stage_s_first_block():
    space = Space({"base": "mbv3_large", "per_stage": {"depth": [-2, -1, 0]}})
    assert space.depth_values(0) == [0]  # one bneck: nothing to remove
    assert space.depth_values(2) == [-2, -1, 0]  # three bnecks
    spec = space.cheapest().spec
    assert space.depth_values(3) == [-1, 0]  # 80, 80, 80, 80 then 112, 112: only the last 112 repeats
    assert [len(spec.stage_blocks(s)) for s in range(spec.num_stages)] == [1, 1, 1, 5, 1]


def test_vovnet_knobs_change_the_osa_modules():
    space = Space("vovnet")
    params = {k: v for k, v in space.random(random.Random(0)).params.items()}
    params.update({"s1_layer_per_block": 3, "s1_depthwise": True, "s1_stage_ch": 1.25})
    spec = space.apply(params)
    osa = [b for b in spec.stage_blocks(1) if b.type == "osa"]
    base_osa = [b for b in space.base.stage_blocks(1) if b.type == "osa"]
    assert osa and all(b.args["layer_per_block"] == 3 and b.args["depthwise"] for b in osa)
    assert [b.exp for b in osa] == [archgen.make_divisible(b.exp * 1.25, 8) for b in base_osa]


def test_choices_are_made_depth_then_width_then_per_stage_then_per_block():
    """The order a seed's draws (and an Optuna trial's parameters) follow: a recorded study replays in it."""
    space = Space({"base": "mbv3_large", "stages": [1, 2], "per_stage": {"k": [3, 5], "width": [1.0, 1.25], "depth": [0, 1]},
                   "per_block": {"se": [False, True], "se_from": ["in", "exp"]}})
    names = list(space.sample(lambda name, knob, values: values[0]).params)
    per_block = [f"s{s}_b{j}_{k}" for s in (1, 2) for j in range(len(space.base.stage_blocks(s))) for k in ("se", "se_from")]
    assert names == ["s1_depth", "s1_width", "s2_depth", "s2_width", "s1_k", "s2_k", *per_block]


# -- knobs as objects ---------------------------------------------------------------------------


def test_the_nearest_point_of_a_stage_that_only_grows_copies_its_last_block():
    space = Space({"base": "mbv3_large", "stages": [2], "per_stage": {"depth": [1, 2]}, "per_block": {"k": [3, 5]}})
    point = space.nearest_to_base()
    kernels = [b.kernel for b in space.base.stage_blocks(2)]
    assert point.params["s2_depth"] == 1
    assert [b.kernel for b in point.spec.stage_blocks(2)] == kernels + kernels[-1:]


EFFICIENTNET_SPACE = {"base": "efficientnet_b0", "per_block": {"k": [3, 5], "se": [0, 0.25], "se_from": ["in", "exp"]}}


def _blocks(spec: archgen.ModelSpec) -> list[dict]:
    return [b.to_dict() for b in spec.blocks]


def test_efficientnet_is_a_point_of_its_own_space_of_se_ratios():
    space = Space(EFFICIENTNET_SPACE)
    assert _blocks(space.nearest_to_base().spec) == _blocks(space.base)


def test_an_se_ratio_of_0_is_the_block_its_table_gives_without_se():
    space = Space(EFFICIENTNET_SPACE)
    params = {k: 0 if k.endswith("_se") else v for k, v in space.nearest_to_base().params.items()}
    data = archgen.spec.read_yaml(archgen.zoo.CONF_DIR / "model" / "efficientnet_b0.yaml")
    data["body"]["defaults"]["se"] = 0
    assert _blocks(space.apply(params)) == _blocks(archgen.load_spec(data))


def test_se_from_sizes_the_squeeze_from_the_expanded_width_or_the_input():
    space = Space(EFFICIENTNET_SPACE)
    params = dict(space.nearest_to_base().params, s1_b1_se_from="exp")
    block = next(b for b in space.apply(params).blocks if b.name == "stages.1.1")  # 24 in, 144 expanded
    model = archgen.build(space.apply(params))
    assert model.get_submodule("stages.1.1").layers.se.fc1.out_channels == 144 // 4 == block.exp // 4
    assert archgen.build(space.base).get_submodule("stages.1.1").layers.se.fc1.out_channels == 24 // 4
    # MobileNetV2 has no SE: a space adds one, sized from the input as EfficientNet's (rounded to mbv2's 8)
    mbv2 = Space({"base": "mbv2", "per_stage": {"se": [0, 0.25]}, "per_block": {"se_from": ["in", "exp"]}})
    for se_from, squeeze in (("in", archgen.make_divisible(24 * 0.25, 8)), ("exp", archgen.make_divisible(144 * 0.25, 8))):
        spec = mbv2.apply(dict(mbv2.nearest_to_base().params, s1_se=0.25, s1_b1_se_from=se_from))
        assert archgen.build(spec).get_submodule("stages.1.1").layers.se.fc1.out_channels == squeeze
    assert squeeze == 40


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"per_block": {"k": [3, 5]}}, "missing 'base'"),
        ({"base": "mbv3_large"}, "the space has no choices"),
        ({"base": "mbv3_large", "per_block": {"kernel": [3]}}, "per_block.kernel: unknown knob; the knobs are: k, exp"),
        ({"base": "mbv3_large", "per_block": {"k": []}}, "per_block.k: has no choices"),
        ({"base": "mbv3_large", "per_block": {"k": [3, 4]}}, "per_block.k: 4 is not valid; the values must be odd positive integers"),
        ({"base": "mbv3_large", "per_block": {"se": [2]}}, "per_block.se: 2 is not valid"),
        ({"base": "mbv3_large", "per_block": {"se": [-0.25]}}, "per_block.se: -0.25 is not valid; the values must be true, false or ratios in [0, 1]"),
        ({"base": "efficientnet_b0", "per_block": {"se_from": ["out"]}}, "per_block.se_from: 'out' is not valid; the values must be one of exp, in"),
        ({"base": "mbv3_large", "per_block": {"depth": [0, 1]}}, "'depth' is a per-stage knob"),
        ({"base": "mbv3_large", "per_block": {"layer_per_block": [3]}}, "knob 'layer_per_block' applies to no block"),
        ({"base": "mbv3_large", "stages": [9], "per_block": {"k": [3]}}, "'stages' must be a non-empty list of stage indices in 0..4"),
        ({"base": "mbv3_large", "per_stage": {"k": [3]}, "per_block": {"k": [5]}}, "'k' is both per_stage and per_block"),
        ({"base": "mbv3_large", "per_block": {"k": [3, 3]}}, "lists a value twice"),
        ({"base": "mbv9", "per_block": {"k": [3]}}, "base: unknown model 'mbv9'"),
        ({"base": "mbv3_large", "per_block": {"k": [3]}, "kernels": 1}, "unknown key 'kernels'"),
        ({"base": "mbv3_large", "per_stage": {"depth": [-1]}}, "no value leaves stage 0 with at least one block"),
    ],
)
def test_bad_spaces_are_short_errors(space, message):
    with pytest.raises(archgen.SpecError, match=re.escape(message)):
        Space(space, source="s.yaml")


def test_unknown_space_lists_the_shipped_ones():
    with pytest.raises(archgen.SpecError, match="unknown space 'nope'; known: " + re.escape(", ".join(SPACES))):
        Space("nope")


def test_replaying_a_value_outside_the_space_is_an_error():
    space = Space("mbv3_large")
    params = dict(space.random(random.Random(0)).params, s1_b0_k=9)
    with pytest.raises(archgen.SpecError, match="'s1_b0_k' = 9 is not one of"):
        space.apply(params)
