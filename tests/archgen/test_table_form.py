"""A point of a space written back as its base's table (``archgen.table_form``): what a search
hands its user, to which every knob applies."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
import yaml

import archgen
from archgen.space import Space, list_spaces
from archgen.table_form import dump
from search.outputs import best_as_table
from tests.conftest import zoo_table

# the shipped spaces, and spaces over the new families and over a base at other multipliers
SPACES = [*list_spaces(),
          {"base": "efficientnet_b2", "per_block": {"k": [3, 5], "se": [0, 0.25], "se_from": ["in", "exp"]},
           "per_stage": {"depth": [-1, 0, 1]}},
          {"base": "mnasnet_a1", "per_stage": {"exp": [3, 6], "width": [0.75, 1.0]}, "per_block": {"se": [0, 0.25]}},
          {"base": "resnet50", "per_stage": {"depth": [-1, 0, 1], "width": [0.5, 1.0]}},
          {"base": "shufflenet_v2_x1_0", "per_stage": {"depth": [-1, 0, 1], "k": [3, 5]}},
          {"base": "mbv2", "knobs": {"width_mult": 0.75, "depth_mult": 1.2, "input_size": 160},
           "per_stage": {"k": [3, 5], "depth": [-1, 0, 1], "width": [0.75, 1.0, 1.25]}}]
IDS = [s if isinstance(s, str) else f"{s['base']}-{'-'.join(s.get('knobs', {}))}".rstrip("-") for s in SPACES]


def _blocks(spec: archgen.ModelSpec) -> list[dict]:
    return [b.to_dict() for b in spec.blocks]


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_a_point_written_as_its_base_table_expands_to_the_point(space):
    space = Space(space)
    for seed in range(4):
        point = space.random(random.Random(seed)).spec
        table = space.table(point, "found")
        assert "blocks" not in table and "reference" not in table and table["name"] == "found"
        assert _blocks(archgen.load_spec(table)) == _blocks(point)
        assert yaml.safe_load(dump(table)) == table  # what best.yaml holds reads back to the same table


def test_rows_the_search_left_alone_stay_as_the_paper_wrote_them():
    space = Space("mbv2")
    table = space.table(space.nearest_to_base().spec, "found")  # MobileNetV2 is a point of the space
    paper = zoo_table("mbv2")
    assert table["body"] == paper["body"] and table["head"] == paper["head"] and table["stem"] == paper["stem"]


def test_per_stage_choices_keep_one_row_per_row_of_the_paper():
    space = Space("mbv2")  # MnasNet's factorized space: each stage's blocks share one choice
    for seed in range(6):
        point = space.random(random.Random(seed))
        rows = space.table(point.spec, "found")["body"]["rows"]
        assert len(rows) == len(zoo_table("mbv2")["body"]["rows"])
        stage1 = rows[1]  # Table 2's [6, 24, 2, 2]: stage 1 of the space, a mapping row where the search changed it
        stage1 = {"k": 3, **(stage1 if isinstance(stage1, dict) else dict(zip(["t", "c", "n", "s"], stage1)))}
        assert (stage1["t"], stage1["k"], stage1["se"] if "se" in stage1 else False) == (
            point.params["s1_exp"], point.params["s1_k"], point.params["s1_se"] and 0.25)
        assert stage1["n"] == 2 + point.params["s1_depth"] and stage1["s"] == 2


def test_per_block_choices_that_differ_split_a_row_into_runs_of_equal_blocks():
    space = Space({"base": "efficientnet_b0", "per_block": {"k": [3, 5]}})
    params = dict(space.nearest_to_base().params, s1_b1_k=5)  # the second block of Table 1's [6, 3, 24, 2, 2]
    rows = space.table(space.apply(params), "found")["body"]["rows"]
    paper = zoo_table("efficientnet_b0")["body"]["rows"]
    assert rows[1:3] == [{"t": 6, "k": 3, "c": 24, "n": 1, "s": 2}, {"t": 6, "k": 5, "c": 24, "n": 1, "s": 1}]
    assert rows[:1] + rows[3:] == paper[:1] + paper[2:]


def test_every_knob_applies_to_the_table_form_multipliers_included():
    space = Space(SPACES[len(list_spaces())])
    point = space.random(random.Random(0)).spec
    table = space.table(point, "found")
    mine = archgen.load_spec(table, num_classes=10, in_chans=1, input_size=64)
    with torch.no_grad():
        assert archgen.build(mine).eval()(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    deeper, wider = archgen.load_spec(table, depth_mult=1.5), archgen.load_spec(table, width_mult=1.5)
    assert len(deeper.blocks) > len(point.blocks) and archgen.count(wider).params > archgen.count(point).params


def test_a_base_at_other_multipliers_keeps_them_where_the_rows_can_say_the_point():
    space = Space(SPACES[-1])  # mbv2 at width 0.75, depth 1.2
    tables = [space.table(space.random(random.Random(seed)).spec, "found") for seed in range(4)]
    assert all(t["width_mult"] == 0.75 and t["input_size"] == 160 for t in tables)
    # a stage cut to a single block cannot be ceil(n x 1.2): the counts are then written as found, at depth 1
    assert all(t["depth_mult"] in (1.0, 1.2) for t in tables)


def test_a_base_that_is_an_expanded_spec_has_no_table_and_the_search_says_so(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(archgen.load_spec("mbv3_small").to_yaml())
    space = Space({"base": str(path), "per_block": {"k": [3, 5]}})
    point = space.random(random.Random(0)).spec
    with pytest.raises(archgen.SpecError, match="the space's base is an expanded spec .* no table to write into"):
        space.table(point, "found")
    problem = SimpleNamespace(space=space)
    text, note = best_as_table(problem, SimpleNamespace(study_name="s"), SimpleNamespace(number=0), point)
    assert _blocks(archgen.load_spec(yaml.safe_load(text))) == _blocks(point)
    assert note.startswith("best.yaml is the expanded form") and "no table" in capsys.readouterr().err
