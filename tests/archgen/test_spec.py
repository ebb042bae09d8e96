"""Loading specs: sources (zoo name, file, mapping), table forms, knobs, the expanded form's
round trip, and block types registered from outside the package."""

from __future__ import annotations

import copy
import dataclasses
import importlib

import pytest
import torch
import yaml
from torch import nn

import archgen
from archgen.blocks.base import Chain, Expander, Knobs
from archgen.ir import BLOCK_KEYS, BlockConfig
from archgen.spec import rechain
from archgen.zoo import model_path
from tests.conftest import num_params, randomize_bn, user_block_module

MBV3 = yaml.safe_load(model_path("mbv3_small").read_text())
USER_BLOCK = "test_spec_double_conv"  # a block type name is registered once per process: this module's own


@pytest.fixture
def double_conv(tmp_path, monkeypatch) -> type:
    """The conftest's user block type (two 3x3 convs, the first strides), registered as
    ``USER_BLOCK`` by importing its module from outside the package, as a user would."""
    user_block_module(tmp_path, "test_spec_user_block", USER_BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("test_spec_user_block").DoubleConv  # imported (and registered) once


def _dicts(spec: archgen.ModelSpec) -> list[dict]:
    return [b.to_dict() for b in spec.blocks]


# -- sources ------------------------------------------------------------------------------


def test_zoo_name_file_path_and_mapping_load_the_same_spec(tmp_path):
    path = tmp_path / "my_small.yaml"
    path.write_text(model_path("mbv3_small").read_text())
    by_name = archgen.load_spec("mbv3_small")
    by_path, by_str = archgen.load_spec(path), archgen.load_spec(str(path))
    by_mapping = archgen.load_spec(copy.deepcopy(MBV3))
    assert _dicts(by_path) == _dicts(by_str) == _dicts(by_name) == _dicts(by_mapping)
    assert by_name.source == str(model_path("mbv3_small"))
    assert by_path.source == by_str.source == str(path)
    assert by_mapping.source == "<dict>"
    assert by_path.name == "mbv3_small"  # the file's own name key, not the file name
    assert by_path.meta["reference"] == "torchvision.models.mobilenet_v3_small"


def test_unnamed_specs_take_the_file_stem_or_custom(tmp_path):
    data = {k: v for k, v in MBV3.items() if k != "name"}
    path = tmp_path / "tiny_net.yml"
    path.write_text(yaml.safe_dump(data))
    assert archgen.load_spec(path).name == "tiny_net"
    assert archgen.load_spec(data).name == "custom"
    assert archgen.load_spec(data, source="from_search").source == "from_search"


def test_create_model_takes_a_spec_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({**MBV3, "num_classes": 7}))
    model = archgen.create_model(path, input_size=48).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 48)).shape == (2, 7)


# -- table forms ----------------------------------------------------------------------------


def test_list_rows_mapping_rows_and_defaults_spell_the_same_table():
    columns = MBV3["body"]["columns"]
    as_mappings = copy.deepcopy(MBV3)
    as_mappings["body"] = [{"type": "bneck", **dict(zip(columns, r))} for r in MBV3["body"]["rows"]]
    # rows 4-11 all have k 5 and HS: say it once in the table's defaults, as a table with a shared column would
    with_defaults = copy.deepcopy(MBV3)
    body = with_defaults["body"]
    body["rows"] = [dict(zip(columns, r)) for r in body["rows"]]
    for r in body["rows"][3:]:
        assert (r.pop("k"), r.pop("nl")) == (5, "HS")
    body["defaults"] = {"k": 5, "nl": "HS"}
    body.pop("columns")
    expected = _dicts(archgen.load_spec(MBV3))
    assert _dicts(archgen.load_spec(as_mappings)) == expected
    assert _dicts(archgen.load_spec(with_defaults)) == expected


def test_rows_of_other_types_mix_into_a_table_and_open_stages_with_their_downsampling():
    data = copy.deepcopy(MBV3)
    data["body"]["rows"].insert(2, {"type": "maxpool", "k": 3, "s": 2, "p": 1})
    spec = archgen.load_spec(data, input_size=64)
    base = archgen.load_spec(MBV3, input_size=64)
    assert spec.num_stages == base.num_stages + 1
    pool = next(b for b in spec.blocks if b.type == "maxpool")
    assert (pool.name, pool.source) == ("stages.2.0", "<dict>: body row 3")
    # the stride-1 bneck row after it stays in the pool's stage
    assert [b.name for b in spec.blocks if b.source == "<dict>: body row 4"] == ["stages.2.1"]
    assert spec.stage_blocks(2)[0].in_size == (8, 8) and spec.stage_blocks(2)[0].out_size == (4, 4)


def test_stages_open_at_the_first_body_row_and_at_each_downsampling_row():
    spec = archgen.load_spec("mbv3_large")
    strides = [r[5] for r in yaml.safe_load(model_path("mbv3_large").read_text())["body"]["rows"]]
    opens = [i for i, s in enumerate(strides) if i == 0 or s == 2]
    assert spec.num_stages == len(opens) == 5
    firsts = [spec.stage_blocks(s)[0] for s in range(spec.num_stages)]
    assert [b.source.rsplit(" ", 1)[1] for b in firsts] == [str(i + 1) for i in opens]
    assert all(b.stride == 2 for b in firsts[1:])


# -- knobs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0.35, 0.75, 1.25])
def test_width_mult_scales_every_c_and_exp_with_make_divisible(width):
    spec = archgen.load_spec("mbv3_small", width_mult=width)
    bnecks = [b for b in spec.blocks if b.type == "bneck"]
    table = MBV3["body"]["rows"]
    assert [(b.exp, b.out_chs) for b in bnecks] == [
        (archgen.make_divisible(exp * width, 8), archgen.make_divisible(c * width, 8)) for _, exp, c, *_ in table
    ]
    linear = next(b for b in spec.blocks if b.type == "linear")
    assert linear.out_chs == archgen.make_divisible(1024 * width, 8)
    assert spec.blocks[-1].out_chs == 1000  # num_classes is never scaled


@pytest.mark.parametrize("width, last", [(0.5, 1280), (1.0, 1280), (1.4, 1792)])
def test_scale_up_only_grows(width, last):
    head_conv = next(b for b in archgen.load_spec("mbv2", width_mult=width).blocks if b.name == "head.0")
    assert head_conv.out_chs == last


def test_scale_fixed_keeps_the_channels():
    data = copy.deepcopy(MBV3)
    data["head"][2]["scale"] = "fixed"
    for width in (0.5, 2.0):
        linear = next(b for b in archgen.load_spec(data, width_mult=width).blocks if b.name == "head.2")
        assert linear.out_chs == 1024


@pytest.mark.parametrize("depth, counts", [(0.5, [1, 1, 2, 2, 2, 2, 1]), (1.0, [1, 2, 3, 4, 3, 3, 1]), (2.0, [2, 4, 6, 8, 6, 6, 2])])
def test_depth_mult_rounds_each_rows_repeats_up(depth, counts):
    spec = archgen.load_spec("mbv2", depth_mult=depth)
    per_row = [sum(b.source == f"{spec.source}: body row {i}" for b in spec.blocks) for i in range(1, 8)]
    assert per_row == counts


def test_overrides_take_precedence_over_the_files_knobs():
    spec = archgen.load_spec("mbv3_small", num_classes=10, in_chans=1, input_size=[64, 96], dropout=0.5)
    assert (spec.num_classes, spec.in_chans, spec.input_size, spec.dropout) == (10, 1, (64, 96), 0.5)
    assert spec.blocks[0].in_chs == 1 and spec.blocks[0].in_size == (64, 96)
    assert spec.output_shape == (10,)
    assert [b.args["p"] for b in spec.blocks if b.type == "dropout"] == [0.5]
    assert spec.stage_blocks(spec.num_stages - 1)[-1].out_size == (2, 3)
    model = archgen.build(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 96)).shape == (1, 10)


def test_the_dropout_knob_fills_only_rows_without_a_rate():
    data = copy.deepcopy(MBV3)
    data["head"].insert(2, {"type": "dropout", "p": 0.1})
    spec = archgen.load_spec(data, dropout=0.3)
    assert [b.args["p"] for b in spec.blocks if b.type == "dropout"] == [0.1, 0.3]


def test_knobs_given_as_file_values_or_overrides_agree():
    in_file = archgen.load_spec({**MBV3, "width_mult": 0.75, "num_classes": 10, "input_size": [96, 64]})
    overridden = archgen.load_spec(MBV3, width_mult=0.75, num_classes=10, input_size=[96, 64])
    assert _dicts(in_file) == _dicts(overridden)


# -- the expanded form --------------------------------------------------------------------------


def _round_trip(spec: archgen.ModelSpec, tmp_path) -> archgen.ModelSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    return archgen.load_spec(path)


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("mbv3_large", {"input_size": 64}),
        ("mbv3_small", {"width_mult": 0.75, "input_size": [48, 64], "num_classes": 10}),
        ("mbv2", {"width_mult": 0.5, "depth_mult": 1.5, "input_size": 64, "in_chans": 1}),
        ("mbv1", {"input_size": 64}),
    ],
)
def test_expanded_form_rebuilds_the_identical_model(tmp_path, name, knobs):
    spec = archgen.load_spec(name, **knobs)
    again = _round_trip(spec, tmp_path)
    assert _dicts(again) == _dicts(spec)
    assert [b.out_size for b in again.blocks] == [b.out_size for b in spec.blocks]
    assert again.to_yaml() == spec.to_yaml()
    a, b = randomize_bn(archgen.build(spec)).eval(), archgen.build(again).eval()
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, spec.in_chans, *spec.input_size)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_expanded_form_keeps_every_layer_setting(tmp_path):
    """Plain layers carry their settings in args (padding, ceil mode, pool kind, rates): all survive."""
    data = {
        "name": "layers", "num_classes": 5, "input_size": 39, "dropout": 0.25, "bn": {"eps": 0.001, "momentum": 0.03},
        "stem": [{"type": "conv", "c": 8, "k": 5, "s": 2, "p": 0, "bn": False, "nl": "tanh"},
                 {"type": "maxpool", "k": 3, "s": 2, "ceil": True}],
        "body": [{"type": "conv", "c": 16, "k": 3, "nl": "silu", "scale": "fixed"},
                 {"type": "avgpool", "k": 2}, {"type": "bn_act", "nl": "gelu"},
                 {"type": "adaptive_avgpool", "size": 3}],
        "head": [{"type": "flatten"}, {"type": "dropout", "p": 0.1}, {"type": "linear", "c": 32, "nl": "RE"},
                 {"type": "dropout"}, {"type": "linear", "c": "num_classes"}],
    }
    spec = archgen.load_spec(data)
    again = _round_trip(spec, tmp_path)
    assert _dicts(again) == _dicts(spec)
    assert (again.bn_eps, again.bn_momentum, again.dropout) == (0.001, 0.03, 0.25)
    assert spec.blocks[1].out_size == (9, 9)  # 18 -> ceil((18 - 3) / 2) + 1 with ceil_mode, not 8
    a, b = randomize_bn(archgen.build(spec)).eval(), archgen.build(again).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 39, 39)
    with torch.no_grad():
        assert a.stem(x).shape == (2, 8, 9, 9)
        assert a(x).shape == (2, 5) and torch.equal(a(x), b(x))


def test_expanded_form_takes_the_knobs_it_was_made_with(tmp_path):
    spec = archgen.load_spec("mbv3_small", input_size=64, num_classes=10)
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert _dicts(archgen.load_spec(path, input_size=64, num_classes=10)) == _dicts(spec)
    assert _dicts(archgen.load_spec(path, input_size=[64, 64])) == _dicts(spec)


@pytest.mark.parametrize("name", archgen.list_models())
def test_expanded_form_takes_new_classes_channels_and_size_as_its_table_would(tmp_path, name):
    """A run's spec.yaml (or a search's answer) is taken to the user's data: the classifier gets the
    new class count and every size is chained again, giving exactly the table's network there."""
    path = tmp_path / "spec.yaml"
    path.write_text(archgen.load_spec(name).to_yaml())
    knobs = {"num_classes": 10, "in_chans": 1, "input_size": 32 if name == "lenet5" else [160, 128]}
    again, table = archgen.load_spec(path, **knobs), archgen.load_spec(name, **knobs)
    assert _dicts(again) == _dicts(table)
    assert [b.out_size for b in again.blocks] == [b.out_size for b in table.blocks]
    assert (again.num_classes, again.in_chans, again.input_size) == (10, 1, table.input_size)


def test_a_rechained_expanded_spec_builds_and_runs(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(archgen.load_spec("mbv3_small").to_yaml())
    spec = archgen.load_spec(path, num_classes=7, in_chans=1, input_size=48)
    with torch.no_grad():
        assert archgen.build(spec).eval()(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    assert archgen.load_spec(path, num_classes=1000).to_yaml() == path.read_text()  # its own values change nothing


def test_an_expanded_spec_without_a_classifier_refuses_new_classes(tmp_path):
    data = {"name": "features", "body": [{"type": "conv", "c": 8, "k": 3, "s": 2}], "head": [{"type": "global_pool"}]}
    path = tmp_path / "spec.yaml"
    path.write_text(archgen.load_spec(data).to_yaml())
    assert archgen.load_spec(path, input_size=64).blocks[0].out_size == (32, 32)
    with pytest.raises(archgen.SpecError, match="num_classes cannot change: no head block gives the spec's 1000 classes"):
        archgen.load_spec(path, num_classes=10)


@pytest.mark.parametrize("name", archgen.list_models())
def test_a_block_reads_back_from_its_expanded_form(name):
    for b in archgen.load_spec(name).blocks:
        data = b.to_dict()
        assert set(data) - set(BLOCK_KEYS) == set(b.args)
        again = BlockConfig.from_dict(data, b.source)
        assert again.out_size is None  # derived by the chain walk, not written
        assert dataclasses.replace(again, out_size=b.out_size) == b
        assert again.to_dict() == data


def test_from_dict_fills_what_the_expanded_form_leaves_out():
    b = BlockConfig.from_dict({"name": "head.1", "type": "linear", "in": 960, "out": 10, "scale": "width", "pads": [1, 2]})
    assert (b.in_size, b.stride, b.kernel, b.exp, b.se, b.act) == (None, 1, None, None, 0.0, None)
    assert b.args == {"scale": "width", "pads": (1, 2)}  # YAML lists come back as the tuples they were
    se = BlockConfig.from_dict({"name": "stages.0.0", "type": "bneck", "in": 16, "out": 16, "size": [56, 56], "se": 1})
    assert se.in_size == (56, 56) and se.se == 1.0 and isinstance(se.se, float)


# -- the chain walk ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", archgen.list_models())
def test_the_chain_gives_each_block_its_input_and_its_output_size(name):
    """Fed a zoo network's blocks without their inputs and output sizes, the chain derives them all."""
    spec = archgen.load_spec(name)
    chain = Chain(spec.in_chans, spec.input_size)
    bare = [dataclasses.replace(b, in_chs=0, in_size=None, out_size=None) for b in spec.blocks]
    assert [chain.feed(b, b.name) for b in bare] == list(spec.blocks)
    assert (chain.chs, chain.size) == (spec.num_classes, None)


def _block(type_name: str, **fields) -> BlockConfig:
    return BlockConfig(type=type_name, name="x", in_chs=0, out_chs=8, in_size=None, out_size=None, **fields)


@pytest.mark.parametrize(
    "chs, size, block, message",
    [
        (8, None, _block("conv", kernel=3), "here: needs a feature map but gets a flat vector"),
        (8, (7, 7), _block("linear"), "here: needs a flat vector but gets a feature map"),
        (8, (2, 2), _block("maxpool", kernel=3, stride=2, args={"p": 0, "ceil": False}),
         "here: input_size (2, 2) is too small: the feature map reaches zero here"),
    ],
    ids=["map_block_fed_flat", "flat_block_fed_a_map", "reaches_zero"],
)
def test_the_chain_refuses_what_a_block_cannot_take_and_stays_where_it_was(chs, size, block, message):
    chain = Chain(chs, size)
    with pytest.raises(archgen.SpecError) as err:
        chain.feed(block, "here")
    assert str(err.value) == message
    assert (chain.chs, chain.size) == (chs, size)


def test_the_expander_names_the_table_row_and_stage_where_the_chain_breaks():
    ex = Expander(Knobs(in_chans=3, input_size=(2, 2)), "net.yaml")
    ex.begin_row("stages", "net.yaml: body row 1")
    with pytest.raises(archgen.SpecError) as err:
        ex.emit("maxpool", 3, stride=2, kernel=3, p=0, ceil=False)
    assert str(err.value) == (
        "net.yaml: input_size 2x2 is too small: the feature map reaches zero at stage 0, body row 1 (maxpool), "
        "which gets 3x2x2 (total stride so far 1, this block's stride 2, kernel 3)"
    )


def test_rechain_refuses_as_the_expanded_form_does_naming_the_block():
    spec = archgen.load_spec("alexnet")
    with pytest.raises(archgen.SpecError) as err:
        rechain(dataclasses.replace(spec, input_size=(4, 4)), spec.blocks, "net")
    assert str(err.value) == "net: blocks[1] (stages.0.0, conv): input_size (4, 4) is too small: the feature map reaches zero here"
    flat_first = [spec.blocks[-1], *spec.blocks[1:]]
    with pytest.raises(archgen.SpecError, match=r"^net: blocks\[1\] \(head.0, linear\): needs a flat vector but gets a feature map$"):
        rechain(spec, flat_first, "net")


def test_a_block_type_may_not_name_an_arg_after_a_key_of_the_expanded_form():
    ex = Expander(Knobs(), "net.yaml")
    ex.begin_row("stages", "net.yaml: body row 1")
    for key in sorted(set(BLOCK_KEYS) - {"exp", "se"}):  # those two are emit's own parameters
        with pytest.raises(TypeError, match=f"conv: block arg '{key}' collides with a key of the expanded form"):
            ex.emit("conv", 8, kernel=3, p=1, bn=True, **{key: 1})


# -- knob presets (base:), BatchNorm settings, YAML numbers ---------------------------------------


def test_a_spec_with_a_base_is_the_base_with_its_keys_replaced(tmp_path):
    (tmp_path / "half.yaml").write_text("base: mbv2\nwidth_mult: 0.5\ninput_size: 160\npaper: a note\n")
    (tmp_path / "deeper.yaml").write_text("base: half.yaml\ndepth_mult: 1.5\n")  # a file beside it
    half, deeper = archgen.load_spec(tmp_path / "half.yaml"), archgen.load_spec(tmp_path / "deeper.yaml")
    assert _dicts(half) == _dicts(archgen.load_spec("mbv2", width_mult=0.5, input_size=160))
    assert _dicts(deeper) == _dicts(archgen.load_spec("mbv2", width_mult=0.5, input_size=160, depth_mult=1.5))
    assert (half.name, deeper.name) == ("half", "deeper")  # a name is never inherited
    assert half.meta["paper"] == "a note" and deeper.meta["paper"] == "a note"
    assert _dicts(archgen.load_spec(tmp_path / "half.yaml", width_mult=1.0)) == _dicts(archgen.load_spec("mbv2", input_size=160))


def test_a_base_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nwidth_mult: 0.5\n")
    with pytest.raises(archgen.SpecError, match="'base' makes a loop: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        archgen.load_spec(tmp_path / "a.yaml")


def test_bn_settings_replace_the_specs_one_by_one(tmp_path):
    spec = archgen.load_spec("mbv3_large", bn={"eps": 1e-5})
    assert (spec.bn_eps, spec.bn_momentum) == (1e-5, 0.01)  # momentum stays the spec's
    bn = [m for m in archgen.build(spec).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(m.eps == 1e-5 and m.momentum == 0.01 for m in bn)
    assert archgen.load_spec("mbv2", bn={"momentum": 0.01}).bn_eps == 1e-5


def test_exponent_floats_are_numbers_in_spec_files(tmp_path):
    """YAML 1.1 reads 1e-5 as a string; specs read it as 1.0e-5 is read, a number."""
    text = model_path("mbv3_small").read_text().replace("bn: {eps: 0.001, momentum: 0.01}", "bn: {eps: 1e-5, momentum: 1E-2}")
    assert "1e-5" in text
    (tmp_path / "s.yaml").write_text(text)
    spec = archgen.load_spec(tmp_path / "s.yaml")
    assert (spec.bn_eps, spec.bn_momentum) == (1e-5, 0.01)
    assert yaml.safe_load("eps: 1e-5")["eps"] == "1e-5"  # safe_load itself is untouched


# -- repeats on every row type -------------------------------------------------------------------


def test_every_row_type_takes_n_and_depth_mult_scales_it():
    data = copy.deepcopy(MBV3)
    data["body"]["rows"][1] = {"k": 3, "exp": 72, "c": 24, "se": False, "nl": "RE", "s": 2, "n": 2}
    spec = archgen.load_spec(data)
    row = [b for b in spec.blocks if b.source.endswith("body row 2")]
    assert [(b.stride, b.in_chs, b.out_chs, b.exp) for b in row] == [(2, 16, 24, 72), (1, 24, 24, 72)]
    assert all("n" not in b.args for b in row)  # n is the row's, not a block setting
    deeper = archgen.load_spec(data, depth_mult=1.6)  # ceil(2 x 1.6) = 4; rows without n stay single blocks
    assert len([b for b in deeper.blocks if b.source.endswith("body row 2")]) == 4
    assert len(deeper.blocks) == len(spec.blocks) + 2
    with pytest.raises(archgen.SpecError, match="no row of this spec has a repeat column"):
        archgen.load_spec("mbv3_small", depth_mult=1.5)


def test_a_row_types_fields_are_listed_in_the_rows_order():
    data = copy.deepcopy(MBV3)
    data["body"]["columns"] = ["k", "exp", "c", "se", "nl", "stride"]
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_spec(data)
    fields = ", ".join(f.name for f in dataclasses.fields(archgen.BLOCKS.get("bneck").Row))
    assert str(err.value).endswith(f"'bneck' rows have no field 'stride'; they have: {fields}, n")


def test_an_unknown_block_type_says_how_to_register_ones_own():
    data = copy.deepcopy(MBV3)
    data["body"]["type"] = "my_block"
    with pytest.raises(archgen.SpecError, match=r"unknown block type 'my_block'; known: .*imports=\[my_pkg.blocks\]"):
        archgen.load_spec(data)


# -- the registry and user blocks ------------------------------------------------------------------


def test_registering_a_taken_name_or_alias_raises_value_error(double_conv):
    class Other(double_conv):
        pass

    with pytest.raises(ValueError, match="'bneck'"):
        archgen.register_block("bneck")(Other)
    with pytest.raises(ValueError, match="'conv'"):
        archgen.register_block("test_spec_fresh_name", aliases=("conv",))(Other)
    with pytest.raises(ValueError, match=f"'{USER_BLOCK}'"):
        archgen.register_block(USER_BLOCK)(Other)
    assert archgen.BLOCKS.get("bneck").__name__ == "MBv3Bneck"
    assert archgen.BLOCKS.get(USER_BLOCK) is double_conv
    assert "test_spec_fresh_name" not in archgen.BLOCKS


def test_register_block_refuses_what_is_not_a_block():
    with pytest.raises(TypeError, match="subclass of archgen.Block"):
        archgen.register_block("test_spec_not_a_block")(nn.Conv2d)

    class NoRow(archgen.Block):
        pass

    with pytest.raises(TypeError, match="dataclass named Row"):
        archgen.register_block("test_spec_no_row")(NoRow)
    assert "test_spec_not_a_block" not in archgen.BLOCKS and "test_spec_no_row" not in archgen.BLOCKS


def test_a_user_block_builds_from_a_spec_and_its_params_are_counted(tmp_path, double_conv):
    data = {
        "name": "user", "num_classes": 5, "input_size": 32,
        "body": {"type": USER_BLOCK, "columns": ["c", "n", "s"], "rows": [[8, 1, 2], [16, 2, 2]]},
        "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
    }
    spec = archgen.load_spec(data)
    assert [(b.name, b.in_chs, b.out_chs, b.stride, b.out_size) for b in spec.blocks[:3]] == [
        ("stages.0.0", 3, 8, 2, (16, 16)), ("stages.1.0", 8, 16, 2, (8, 8)), ("stages.1.1", 16, 16, 1, (8, 8)),
    ]

    def conv3x3(i: int, o: int) -> int:
        return i * o * 9 + o

    expected = conv3x3(3, 8) + conv3x3(8, 8) + conv3x3(8, 16) + conv3x3(16, 16) + 2 * conv3x3(16, 16) + 16 * 5 + 5
    model = archgen.build(spec).eval()
    assert num_params(model) == archgen.count(spec).params == expected
    assert isinstance(model.get_submodule("stages.1.1"), double_conv)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    assert _dicts(_round_trip(spec, tmp_path)) == _dicts(spec)
    with pytest.raises(archgen.SpecError, match=rf"body row 2 \({USER_BLOCK}\): field 's' must be 1 or 2"):
        archgen.load_spec({**data, "body": {**data["body"], "rows": [[8, 1, 2], [16, 2, 3]]}})
