"""Typed table columns: each field kind's validator, and a raw YAML row read against a row type."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import pytest

import archgen
from archgen import rows
from archgen.limits import MAX_CHANNELS, MAX_REPEATS
from archgen.rows import NUM_CLASSES, VALIDATORS, check_value, parse_row
from archgen.spec import row_schema

ACTS = ", ".join(archgen.ACTIVATIONS.names())


@dataclass(frozen=True, kw_only=True)
class Row:
    """One field of every kind, and the variants their helpers take."""

    c: Any = rows.channels("output channels")
    out: Any = rows.channels("output channels or the class count", None, classes=True)
    n: Any = rows.repeats()
    groups: Any = rows.integer("groups", 1)
    pad: Any = rows.integer("padding", None, minimum=0)
    s: Any = rows.stride()
    pool_s: Any = rows.stride("pool stride", 1, choices=(1, 2, 3))
    k: Any = rows.kernel(default=3)
    window: Any = rows.kernel("pool window", 2, odd=False)
    p: Any = rows.number("drop probability", None, low_open=False)
    t: Any = rows.number("expansion ratio", 1.0, high=64.0)
    se: Any = rows.se("squeeze-and-excitation")
    se_half: Any = rows.se("squeeze-and-excitation, a half when on", on=0.5)
    nl: Any = rows.activation(default="relu")
    head_nl: Any = rows.activation("activation after the layer (null: none)", None, optional=True)
    bn: Any = rows.flag("batch norm", True)
    pool: Any = rows.choice("pooling", ("avg", "max"), "avg")
    plain: Any = None  # made without a helper: no kind, any value


FIELDS = {f.name: f for f in dataclasses.fields(Row)}


@pytest.mark.parametrize(
    "name, value, normalised",
    [
        ("c", 16, 16), ("c", MAX_CHANNELS, MAX_CHANNELS),
        ("out", NUM_CLASSES, NUM_CLASSES), ("out", 10, 10), ("out", None, None),
        ("n", 1, 1), ("n", MAX_REPEATS, MAX_REPEATS),
        ("groups", 32, 32), ("pad", 0, 0), ("pad", None, None),
        ("s", 1, 1), ("s", 2, 2), ("pool_s", 3, 3),
        ("k", 3, 3), ("k", 7, 7), ("window", 2, 2),
        ("p", 0, 0.0), ("p", 1, 1.0), ("p", None, None), ("t", 64, 64.0), ("t", 0.5, 0.5),
        ("se", True, 0.25), ("se", False, 0.0), ("se", None, 0.0), ("se", 0, 0.0), ("se", 1, 1.0), ("se", 0.5, 0.5),
        ("se_half", True, 0.5),
        ("nl", "RE", "relu"), ("nl", "HS", "hswish"), ("nl", "silu", "silu"),
        ("head_nl", None, None), ("head_nl", "none", None), ("head_nl", "RE6", "relu6"),
        ("bn", False, False), ("pool", "max", "max"), ("plain", [1, "a"], [1, "a"]),
    ],
)
def test_each_kind_takes_its_values_and_normalises_them(name, value, normalised):
    got = check_value(FIELDS[name], value, "here")
    assert got == normalised and type(got) is type(normalised)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        *[("c", v, f"an integer in [1, {MAX_CHANNELS}] (channels)") for v in (0, MAX_CHANNELS + 1, 16.0, True, None, NUM_CLASSES)],
        ("out", 0, f"an integer in [1, {MAX_CHANNELS}] (channels) or 'num_classes'"),
        *[("n", v, f"an integer in [1, {MAX_REPEATS}] (repeats)") for v in (0, MAX_REPEATS + 1, 1.5, None)],
        ("groups", 0, "an integer >= 1"), ("groups", None, "an integer >= 1"), ("pad", -1, "an integer >= 0"),
        *[("s", v, "1 or 2 (stride)") for v in (3, 0, True, None, 2.0)],
        ("pool_s", 4, "1 or 2 or 3 (stride)"),
        *[("k", v, "an odd positive integer (kernel size)") for v in (4, 0, -3, 3.0)],
        ("window", 0, "a positive integer (kernel size)"),
        *[("p", v, "a number in [0.0, 1.0]") for v in (-0.1, 1.5, True, "0.5")],
        ("t", 0, "a number in (0.0, 64.0]"), ("t", 65, "a number in (0.0, 64.0]"),
        *[("se", v, "true, false or a ratio in (0, 1] (squeeze-and-excitation)") for v in (1.5, -0.25, "yes")],
        ("nl", "mish", f"an activation: one of {ACTS} (or RE, HS, RE6)"),
        ("nl", 3, f"an activation: one of {ACTS} (or RE, HS, RE6)"),
        ("nl", None, f"an activation ({ACTS})"), ("nl", "none", f"an activation ({ACTS})"),
        ("bn", "yes", "true or false"), ("bn", 1, "true or false"),
        ("pool", "gem", "one of avg, max"),
    ],
)
def test_each_kind_refuses_with_the_field_and_what_it_must_be(name, value, expected):
    with pytest.raises(archgen.SpecError) as err:
        check_value(FIELDS[name], value, "spec.yaml: body row 2 (x)")
    assert str(err.value) == f"spec.yaml: body row 2 (x): field {name!r} must be {expected}, got {value!r}"


def test_every_kind_has_a_validator_and_every_validator_is_tested_here():
    used = {f.metadata["kind"] for name in archgen.BLOCKS.names()
            for f in dataclasses.fields(row_schema(archgen.BLOCKS.get(name))) if "kind" in f.metadata}
    assert used <= set(VALIDATORS)
    assert {f.metadata["kind"] for f in FIELDS.values() if "kind" in f.metadata} == set(VALIDATORS)


@dataclass(frozen=True, kw_only=True)
class Small:
    c: Any = rows.channels("output channels")
    n: Any = rows.repeats()
    s: Any = rows.stride()
    nl: Any = rows.activation(default="relu")


COLUMNS = ["c", "n", "s", "nl"]


def test_a_list_row_is_read_against_the_columns_and_a_mapping_row_by_name():
    assert parse_row(Small, [16, 2, 2, "HS"], COLUMNS, {}, "w") == Small(c=16, n=2, s=2, nl="hswish")
    assert parse_row(Small, {"type": "conv", "c": 16, "s": 2}, None, {}, "w") == Small(c=16, n=1, s=2, nl="relu")
    assert parse_row(Small, [16, 2], ["c", "n"], {}, "w") == Small(c=16, n=2)


def test_defaults_fill_what_a_row_leaves_out_and_are_checked_as_its_values():
    assert parse_row(Small, {"c": 16}, None, {"s": 2, "nl": "RE"}, "w") == Small(c=16, s=2, nl="relu")
    assert parse_row(Small, {"c": 16, "s": 1}, None, {"s": 2}, "w").s == 1  # the row's own value first
    assert parse_row(Small, [8, 1, 1, "silu"], COLUMNS, {"c": 32, "type": "x"}, "w").c == 8
    with pytest.raises(archgen.SpecError, match=re.escape("w: field 's' must be 1 or 2 (stride), got 3")):
        parse_row(Small, {"c": 16}, None, {"s": 3}, "w")


@pytest.mark.parametrize(
    "raw, columns, message",
    [
        ({"c": 16, "exp": 4}, None, "w: unknown field 'exp'; this row type has: c, n, s, nl"),
        ({"n": 2}, None, "w: missing field 'c' (output channels)"),
        ([2, 1], ["n", "s"], "w: missing field 'c' (output channels)"),
        ([16, 2, 2], None, "w: a list row needs the table's 'columns'; write the row as a mapping instead"),
        ([16, 2], COLUMNS, "w: row has 2 values but the table has 4 columns [c, n, s, nl]"),
        ("16 2 2", COLUMNS, "w: a row must be a list (read against 'columns') or a mapping, got '16 2 2'"),
        ([16, 0, 2, "RE"], COLUMNS, f"w: field 'n' must be an integer in [1, {MAX_REPEATS}] (repeats), got 0"),
    ],
)
def test_a_malformed_row_is_one_line_naming_what_is_wrong(raw, columns, message):
    with pytest.raises(archgen.SpecError) as err:
        parse_row(Small, raw, columns, {}, "w")
    assert str(err.value) == message
