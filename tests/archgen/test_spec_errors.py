"""Bad input: every malformed spec, knob or source is one ``SpecError`` line naming where and what.

Each case corrupts a zoo spec (the paper's table with one thing broken), writes it to a file
and loads it; the message must name that file, the row, the field and what was expected.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import yaml

import archgen
from archgen.zoo import model_path

MBV3 = yaml.safe_load(model_path("mbv3_small").read_text())  # bneck table, columns k exp c se nl s
MBV2 = yaml.safe_load(model_path("mbv2").read_text())  # ir table, columns t c n s
EXPANDED = yaml.safe_load(archgen.load_spec("mbv3_small", input_size=64).to_yaml())

Mutation = Callable[[dict], Any]


def _set(*path: Any, value: Any) -> Mutation:
    """Set data[path...] = value (rows are numbered from 1, as messages count them)."""

    def go(d: dict) -> None:
        *head, last = path
        for key in head:
            d = d[key]
        d[last] = value

    return go


def _body_row(i: int, col: int, value: Any) -> Mutation:
    return lambda d: d["body"]["rows"][i - 1].__setitem__(col, value)


def _all(*fs: Mutation) -> Mutation:
    return lambda d: [f(d) for f in fs]


# MobileNetV3-Small body columns: k=0 exp=1 c=2 se=3 nl=4 s=5; MobileNetV2: t=0 c=1 n=2 s=3.
# (id, base spec, mutation, knob overrides, where, field, what was expected)
CASES: list[tuple[str, dict, Mutation | None, dict, str, str, str]] = [
    # rows of the wrong shape
    ("row_too_short", MBV3, lambda d: d["body"]["rows"][3].pop(), {}, "body row 4 (bneck)", "[k, exp, c, se, nl, s]", "has 5 values but the table has 6 columns"),
    ("row_too_long", MBV3, lambda d: d["body"]["rows"][1].append(1), {}, "body row 2 (bneck)", "[k, exp, c, se, nl, s]", "has 7 values"),
    ("row_not_list_or_mapping", MBV3, _set("body", "rows", 2, value="3 88 24 false RE 1"), {}, "body row 3 (bneck)", "row", "must be a list"),
    ("list_row_without_columns", MBV3, _set("stem", value={"type": "conv", "rows": [[16, 3, 2]]}), {}, "stem row 1 (conv)", "'columns'", "write the row as a mapping"),
    ("unknown_row_field", MBV3, lambda d: d["head"][2].update(bias=True), {}, "head row 3 (linear)", "'bias'", "this row type has: c, nl, scale"),
    ("missing_row_field", MBV3, lambda d: d["head"][2].pop("c"), {}, "head row 3 (linear)", "'c'", "missing field"),
    ("row_without_type", MBV3, lambda d: d["head"][1].pop("type"), {}, "head row 2", "'type'", "no default type"),
    ("unknown_block_type", MBV3, _set("head", 1, "type", value="gem_pool"), {}, "head row 2", "block type 'gem_pool'", "known: "),
    ("unknown_table_type", MBV3, _set("body", "type", value="mbconv"), {}, "body:", "block type 'mbconv'", "bneck"),
    ("block_type_not_a_name", MBV3, _set("head", 1, "type", value=["global_pool"]), {}, "head row 2", "block type ['global_pool']", "global_pool"),
    # channels
    ("negative_channels", MBV3, _body_row(3, 2, -24), {}, "body row 3 (bneck)", "'c'", "an integer in [1, 65536] (channels)"),
    ("zero_expansion", MBV3, _body_row(5, 1, 0), {}, "body row 5 (bneck)", "'exp'", "an integer in [1, 65536] (channels)"),
    ("float_channels", MBV3, _body_row(2, 2, 24.5), {}, "body row 2 (bneck)", "'c'", "got 24.5"),
    ("string_channels", MBV3, _body_row(2, 2, "24"), {}, "body row 2 (bneck)", "'c'", "got '24'"),
    ("bool_channels", MBV3, _body_row(2, 2, True), {}, "body row 2 (bneck)", "'c'", "an integer in [1, 65536]"),
    ("num_classes_where_not_allowed", MBV3, _body_row(2, 2, "num_classes"), {}, "body row 2 (bneck)", "'c'", "an integer in [1, 65536]"),
    ("a_billion_channels", MBV3, _body_row(2, 2, 1_000_000_000), {}, "body row 2 (bneck)", "'c'", "an integer in [1, 65536] (channels), got 1000000000"),
    ("1e35_channels", MBV3, _body_row(2, 2, 10**35), {}, "body row 2 (bneck)", "'c'", "an integer in [1, 65536] (channels)"),
    ("channels_over_the_limit_after_width_mult", MBV3, _body_row(2, 2, 40000), {"width_mult": 2.0}, "body row 2 (bneck)", "output channels", "over the limit of 65536"),
    ("expanded_billion_channels", EXPANDED, _set("blocks", 0, "out", value=10**9), {}, "blocks[1]", "'out'", "an integer in [1, 65536]"),
    ("linear_zero_features", MBV3, _set("head", 2, "c", value=0), {}, "head row 3 (linear)", "'c'", "or 'num_classes'"),
    ("conv_t_gives_no_channels", MBV3, _set("head", 0, "t", value=0.001), {}, "head row 1 (conv)", "'t'", "at least 1 channel"),
    ("conv_c_and_t", MBV3, _set("head", 0, "c", value=576), {}, "head row 1 (conv)", "'c'", "exactly one of"),
    ("ir_t_gives_no_channels", MBV2, _set("body", "rows", 1, 0, value=0.01), {}, "body row 2 (ir)", "'t'", "at least 1 hidden channel"),
    ("ir_t_zero", MBV2, _set("body", "rows", 1, 0, value=0), {}, "body row 2 (ir)", "'t'", "a number in (0.0, 64.0]"),
    # repeats
    ("zero_repeats", MBV2, _set("body", "rows", 2, 2, value=0), {}, "body row 3 (ir)", "'n'", "an integer in [1, 1000] (repeats)"),
    ("negative_repeats", MBV2, _set("body", "rows", 2, 2, value=-3), {}, "body row 3 (ir)", "'n'", "an integer in [1, 1000] (repeats)"),
    ("ten_thousand_repeats", MBV2, _set("body", "rows", 2, 2, value=10_000), {}, "body row 3 (ir)", "'n'", "an integer in [1, 1000] (repeats), got 10000"),
    ("blocks_over_the_limit_after_depth_mult", MBV2, _set("body", "rows", 2, 2, value=1000), {"depth_mult": 3.0}, "body row 3 (ir)", "more than 2000 blocks", "over the limit"),
    ("float_repeats", MBV2, _set("body", "rows", 2, 2, value=2.5), {}, "body row 3 (ir)", "'n'", "got 2.5"),
    # strides and kernels
    ("stride_3", MBV3, _body_row(4, 5, 3), {}, "body row 4 (bneck)", "'s'", "1 or 2 (stride)"),
    ("stride_0", MBV2, _set("body", "rows", 1, 3, value=0), {}, "body row 2 (ir)", "'s'", "1 or 2 (stride)"),
    ("layer_stride_5", MBV3, _set("stem", 0, "s", value=5), {}, "stem row 1 (conv)", "'s'", "1 or 2 or 3 or 4"),
    ("even_kernel", MBV3, _body_row(4, 0, 4), {}, "body row 4 (bneck)", "'k'", "an odd positive integer"),
    ("zero_kernel", MBV3, _set("stem", 0, "k", value=0), {}, "stem row 1 (conv)", "'k'", "an odd positive integer"),
    ("pool_padding_over_half_window", MBV3, lambda d: d["stem"].append({"type": "maxpool", "k": 2, "p": 2}), {}, "stem row 2 (maxpool)", "'p'", "at most k // 2 = 1"),
    # squeeze-and-excitation, activations, choices, rates
    ("se_above_1", MBV3, _body_row(1, 3, 1.5), {}, "body row 1 (bneck)", "'se'", "a ratio in (0, 1]"),
    ("se_negative", MBV3, _body_row(1, 3, -0.1), {}, "body row 1 (bneck)", "'se'", "a ratio in (0, 1]"),
    ("se_word", MBV3, _body_row(1, 3, "yes"), {}, "body row 1 (bneck)", "'se'", "true, false or a ratio"),
    ("unknown_nl", MBV3, _body_row(6, 4, "mish"), {}, "body row 6 (bneck)", "'nl'", "hswish"),
    ("nl_not_a_name", MBV3, _body_row(6, 4, ["HS"]), {}, "body row 6 (bneck)", "'nl'", "an activation"),
    ("unknown_pool_choice", MBV3, _set("head", 1, "pool", value="mean"), {}, "head row 2 (global_pool)", "'pool'", "one of avg, max"),
    ("dropout_rate_1_5", MBV3, _set("head", 3, "p", value=1.5), {}, "head row 4 (dropout)", "'p'", "a number in [0.0, 1.0]"),
    ("flag_not_bool", MBV3, _set("stem", 0, "bn", value="yes"), {}, "stem row 1 (conv)", "'bn'", "true or false"),
    # order of layers
    ("linear_before_pool", MBV3, lambda d: d["head"].insert(1, {"type": "linear", "c": 10}), {}, "head row 2 (linear)", "linear", "needs a flat vector"),
    ("conv_after_global_pool", MBV3, lambda d: d["head"].insert(2, {"type": "conv", "c": 10}), {}, "head row 3 (conv)", "conv", "needs a feature map"),
    ("flatten_after_global_pool", MBV3, lambda d: d["head"].insert(2, {"type": "flatten"}), {}, "head row 3 (flatten)", "flatten", "needs a feature map"),
    # 8 -> 4 (stem) -> 2 -> 1 -> 1 -> 1; the pool appended as body row 12 opens stage 4 and gets 1x1
    ("input_too_small", MBV3, _all(lambda d: d["body"]["rows"].append({"type": "maxpool", "k": 3, "s": 2}), _set("input_size", value=8)), {},
     "body row 12 (maxpool)", "input_size 8x8", "reaches zero at stage 4"),
    ("input_too_small_override", MBV3, lambda d: d["body"]["rows"].append({"type": "maxpool", "k": 3, "s": 2}), {"input_size": 8},
     "body row 12 (maxpool)", "input_size 8x8", "reaches zero at stage 4"),
    # tables and the top level
    ("unknown_top_level_key", MBV3, _set("depth", value=2), {}, "", "'depth'", "unknown key"),
    ("unknown_table_key", MBV3, lambda d: d["body"].update(row=d["body"].pop("rows")), {}, "body:", "'row'", "a table has: type, columns, defaults, rows"),
    ("columns_not_a_list", MBV3, _set("body", "columns", value="k exp c se nl s"), {}, "body:", "'columns'", "a list of field names"),
    ("column_not_a_field", MBV3, _set("body", "columns", 4, value="act"), {}, "body:", "'act'", "they have: "),
    ("column_twice", MBV3, _set("body", "columns", 4, value="k"), {}, "body:", "'columns'", "names a field twice"),
    ("defaults_not_a_mapping", MBV3, _set("body", "defaults", value=["HS"]), {}, "body:", "'defaults'", "must be a mapping"),
    ("defaults_without_type", MBV3, _set("stem", value={"defaults": {"nl": "HS"}, "rows": MBV3["stem"]}), {}, "stem:", "'defaults'", "need the table's 'type'"),
    ("defaults_bad_value", MBV3, _set("body", "defaults", value={"se_act": "mish"}), {}, "body row 1 (bneck)", "'se_act'", "an activation"),
    ("rows_not_a_list", MBV3, _set("body", "rows", value={"1": [3, 16, 16, True, "RE", 2]}), {}, "body:", "'rows'", "must be a list"),
    ("section_not_a_table", MBV3, _set("stem", value="conv"), {}, "stem:", "stem", "a table (type/columns/defaults/rows) or a list of rows"),
    ("body_missing", MBV3, lambda d: d.pop("body"), {}, "", "'body'", "missing"),
    ("body_null", MBV3, _set("body", value=None), {}, "", "'body'", "missing"),
    ("body_without_rows", MBV3, _set("body", "rows", value=[]), {}, "body:", "rows", "has no rows"),
    ("name_not_a_string", MBV3, _set("name", value=3), {}, "", "'name'", "must be a string"),
    ("bn_unknown_key", MBV3, _set("bn", value={"eps": 0.001, "mom": 0.01}), {}, "", "'bn'", "'eps' and/or 'momentum'"),
    ("bn_eps_out_of_range", MBV3, _set("bn", "eps", value=2), {}, "", "'bn.eps'", "a number in (0, 1)"),
    ("round_to_zero", MBV3, _set("round_to", value=0), {}, "", "'round_to'", "an integer in [1, 65536]"),
    # knobs in the file and as overrides
    ("num_classes_0", MBV3, _set("num_classes", value=0), {}, "", "'num_classes'", "an integer in [1, 131072]"),
    ("num_classes_a_billion", MBV3, _set("num_classes", value=10**9), {}, "", "'num_classes'", "an integer in [1, 131072], got 1000000000"),
    ("input_size_30000", MBV3, None, {"input_size": 30000}, "", "'input_size'", "an integer in [1, 8192] or [H, W] of them, got 30000"),
    ("num_classes_0_override", MBV3, None, {"num_classes": 0}, "", "'num_classes'", "an integer in [1, 131072]"),
    ("width_mult_negative", MBV3, _set("width_mult", value=-1), {}, "", "'width_mult'", "a number in (0, 100]"),
    ("width_mult_negative_override", MBV3, None, {"width_mult": -1}, "", "'width_mult'", "a number in (0, 100]"),
    ("width_mult_over_its_limit", MBV3, _set("width_mult", value=1000), {}, "", "'width_mult'", "a number in (0, 100], got 1000"),
    ("name_with_escape_codes", MBV3, _set("name", value="\x1b[31mred\x1b[0m"), {}, "", "'name'", "printable characters"),
    ("name_with_a_line_break", MBV3, _set("name", value="two\nlines"), {}, "", "'name'", "printable characters"),
    ("dropout_1_5", MBV3, _set("dropout", value=1.5), {}, "", "'dropout'", "a number in [0, 1)"),
    ("dropout_1_5_override", MBV3, None, {"dropout": 1.5}, "", "'dropout'", "a number in [0, 1)"),
    ("input_size_word", MBV3, _set("input_size", value="abc"), {}, "", "'input_size'", "an integer in [1, 8192] or [H, W]"),
    ("input_size_word_override", MBV3, None, {"input_size": "abc"}, "", "'input_size'", "an integer in [1, 8192] or [H, W]"),
    ("input_size_three_values", MBV3, _set("input_size", value=[224, 224, 3]), {}, "", "'input_size'", "[H, W]"),
    ("in_chans_float", MBV3, None, {"in_chans": 3.0}, "", "'in_chans'", "an integer in [1, 65536]"),
    ("unknown_override", MBV3, None, {"width": 0.5}, "", "'width'", "the knobs are: num_classes"),
    ("depth_mult_without_repeats", MBV3, None, {"depth_mult": 2}, "", "depth_mult=2", "no row of this spec has a repeat column"),
    # the expanded form: chaining, naming, values
    ("expanded_in_mismatch", EXPANDED, _set("blocks", 2, "in", value=7), {}, "blocks[3] (stages.1.0, bneck)", "'in'", "the previous block gives 16 channels"),
    ("expanded_size_mismatch", EXPANDED, _set("blocks", 2, "size", value=[32, 32]), {}, "blocks[3] (stages.1.0, bneck)", "'size'", "the previous block gives [16, 16]"),
    ("expanded_size_not_a_pair", EXPANDED, _set("blocks", 2, "size", value=16), {}, "blocks[3] (stages.1.0, bneck)", "'size'", "[H, W]"),
    ("expanded_name_skips", EXPANDED, _set("blocks", 3, "name", value="stages.1.2"), {}, "blocks[4]", "'stages.1.2'", "out of order"),
    ("expanded_name_backwards", EXPANDED, _set("blocks", 2, "name", value="stem.1"), {}, "blocks[3]", "'stem.1'", "out of order"),
    ("expanded_name_not_a_path", EXPANDED, _set("blocks", 1, "name", value="stage0.block0"), {}, "blocks[2]", "'stage0.block0'", "named stem.i, stages.s.j, head.i"),
    ("expanded_without_stages", EXPANDED, lambda d: d.update(blocks=[d["blocks"][0], {**d["blocks"][-4], "name": "head.0", "in": 16, "out": 16, "size": [32, 32]},
                                                                     {**d["blocks"][-1], "name": "head.1", "in": 16}]),
     {}, "", "'blocks'", "at least one stage"),
    ("expanded_unknown_type", EXPANDED, _set("blocks", 1, "type", value="mbconv"), {}, "blocks[2]", "block type 'mbconv'", "bneck"),
    ("expanded_unknown_nl", EXPANDED, _set("blocks", 1, "nl", value="mish"), {}, "blocks[2] (stages.0.0, bneck)", "'nl'", "hswish"),
    ("expanded_float_exp", EXPANDED, _set("blocks", 1, "exp", value=7.5), {}, "blocks[2] (stages.0.0, bneck)", "'exp'", "an integer in [1, 65536]"),
    ("expanded_se_above_1", EXPANDED, _set("blocks", 1, "se", value=1.5), {}, "blocks[2] (stages.0.0, bneck)", "'se'", "a ratio in [0, 1]"),
    ("expanded_missing_out", EXPANDED, lambda d: d["blocks"][1].pop("out"), {}, "blocks[2]", "'out'", "missing field"),
    ("expanded_not_a_mapping", EXPANDED, _set("blocks", 1, value="stages.0.0"), {}, "blocks[2]", "'stages.0.0'", "must be a mapping"),
    ("expanded_empty", EXPANDED, _set("blocks", value=[]), {}, "", "'blocks'", "a non-empty list"),
    ("expanded_and_tables", EXPANDED, _set("body", value=MBV3["body"]), {}, "", "'blocks'", "not both"),
    ("expanded_width_change", EXPANDED, None, {"width_mult": 0.5}, "", "width_mult", "cannot change on an expanded spec"),
    ("expanded_depth_change", EXPANDED, None, {"depth_mult": 1.5}, "", "depth_mult", "cannot change on an expanded spec: its repeats are concrete"),
    ("bad_bn_override", MBV3, None, {"bn": {"eps": 2}}, "", "'bn.eps'", "a number in (0, 1)"),
    ("unknown_bn_override", MBV3, None, {"bn": {"epsilon": 1e-5}}, "", "'bn'", "'eps' and/or 'momentum'"),
    ("base_unknown", {"base": "mbv9"}, None, {}, "", "base: unknown model 'mbv9'", "the zoo has"),
    ("base_not_a_name", {"base": 3}, None, {}, "", "'base'", "a zoo model name or a spec file path"),
    ("base_missing_file", {"base": "no/such.yaml"}, None, {}, "", "no/such.yaml", "no such spec file"),
    ("base_unknown_key", {"base": "mbv3_small", "widht_mult": 0.5}, None, {}, "", "'widht_mult'", "a spec has"),
]


def _one_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert len(message) < 600, "one short line (the longest lists every registered block type)"


@pytest.mark.parametrize(
    "base, mutate, overrides, where, field, expected",
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_malformed_spec_names_file_row_field_and_expectation(tmp_path, base, mutate, overrides, where, field, expected):
    data = copy.deepcopy(base)
    if mutate is not None:
        mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_spec(path, **overrides)
    message = str(err.value)
    _one_line(message)
    assert message.startswith(f"{path}: ")
    for fragment in (where, field, expected):
        assert fragment in message


def test_every_case_is_malformed_only_by_its_corruption(tmp_path):
    """The uncorrupted bases load, so each case above fails for its own corruption."""
    for base in (MBV3, MBV2, EXPANDED):
        path = tmp_path / "good.yaml"
        path.write_text(yaml.safe_dump(base, sort_keys=False))
        assert archgen.load_spec(path).blocks


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nbody: [1, 2\n", "unreadable YAML at line 3, column 1"),
        ("name: x\n  body: 1\n", "unreadable YAML at line 2"),
        ("name: !!python/object:os.system x\n", "unreadable YAML"),
        ("- a list\n- not a mapping\n", "a spec must be a YAML mapping, got list"),
        ("", "a spec must be a YAML mapping, got NoneType"),
    ],
    ids=["unclosed_list", "bad_indent", "python_tag", "list", "empty"],
)
def test_unreadable_or_non_mapping_yaml(tmp_path, text, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_spec(path)
    _one_line(str(err.value))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("name: x\n" + "# padding\n" * 200_000, "the file is over 1 MiB"),
    ("body: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 32 levels"),
    ("body: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
    # an alias repeated at every level would be 10**30 items to walk if each were visited
    ("".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" if i else "l0: &l0 [1]\n" for i in range(30)),
     "unknown key 'l0'"),
], ids=["over_1_mib", "100k_nested", "40_nested", "aliases"])
def test_a_file_too_large_or_too_deep_is_one_line_before_it_is_parsed_whole(tmp_path, text, expected):
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_spec(path)
    _one_line(str(err.value))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_non_utf8_file_is_unreadable_yaml(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(archgen.SpecError, match="unreadable YAML: not UTF-8") as err:
        archgen.load_spec(path)
    _one_line(str(err.value))
    assert str(path) in str(err.value)


def test_unknown_model_name_lists_the_zoo():
    with pytest.raises(archgen.SpecError) as err:
        archgen.load_spec("mbv9")
    message = str(err.value)
    _one_line(message)
    assert message.startswith("unknown model 'mbv9'; the zoo has: ")
    assert message.split(": ", 1)[1].split(", ") == archgen.list_models()


@pytest.mark.parametrize("name", ["missing.yaml", "sub/dir/missing", "missing.yml"])
def test_missing_spec_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(archgen.SpecError, match="no such spec file") as err:
        archgen.load_spec(path)
    _one_line(str(err.value))
    assert str(err.value).startswith(str(path))


def test_mapping_spec_is_named_by_its_source():
    bad = copy.deepcopy(MBV3)
    bad["body"]["rows"][0][0] = 4
    with pytest.raises(archgen.SpecError, match=r"^<dict>: body row 1 \(bneck\): field 'k'"):
        archgen.load_spec(bad)
    with pytest.raises(archgen.SpecError, match=r"^my_net: body row 1 \(bneck\): field 'k'"):
        archgen.load_spec(bad, source="my_net")


def test_spec_error_is_a_value_error_without_chained_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbody: [1, 2\n")
    with pytest.raises(ValueError) as err:
        archgen.load_spec(path)
    assert isinstance(err.value, archgen.SpecError)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_cases_cover_every_issue_error_kind():
    """The issue's list of error kinds, each with at least one case above."""
    ids = {case[0] for case in CASES}
    required = {
        "row_too_short", "row_too_long", "unknown_block_type", "negative_channels", "float_channels", "zero_repeats",
        "stride_3", "even_kernel", "se_above_1", "se_negative", "input_too_small", "num_classes_0", "width_mult_negative",
        "dropout_1_5", "input_size_word", "unknown_override", "depth_mult_without_repeats", "unknown_top_level_key",
        "unknown_row_field", "row_not_list_or_mapping", "list_row_without_columns", "linear_before_pool",
        "conv_after_global_pool", "expanded_in_mismatch", "expanded_name_skips",
    }
    assert required <= ids
    assert len(ids) == len(CASES), "case ids are unique"
