"""Property tests over random MobileNet-style table specs.

* Random valid specs (MobileNetV3 bneck tables or MobileNetV2 ir tables, random knobs) always
  build and run forward, with the output shape and per-stage feature maps the spec predicts,
  and with the stages and sizes the table itself implies.
* One random corruption of a valid spec always raises ``archgen.SpecError`` naming the source,
  row and field, never a torch error or any other exception.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archgen

COLUMNS = {"bneck": ["k", "exp", "c", "se", "nl", "s"], "ir": ["t", "c", "n", "s"]}
POOL_ROW = {"type": "maxpool", "k": 3, "s": 2, "p": 1}  # a downsampling between stages that never reaches zero
SOURCE = "prop.yaml"

# no deadline: building a model takes longer the first time; the autouse seed fixture is harmless across examples
_settings = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

channels = st.integers(8, 48)
bneck_rows = st.tuples(st.sampled_from([3, 5, 7]), st.integers(8, 64), channels, st.booleans(),
                       st.sampled_from(["RE", "HS"]), st.sampled_from([1, 2])).map(list)
ir_rows = st.tuples(st.sampled_from([1, 2, 4, 6]), channels, st.integers(1, 3), st.sampled_from([1, 2])).map(list)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A MobileNet-style table spec: conv stem, a bneck or ir body (maybe with a pool row between
    stages), a head of 1x1 conv, pool and linear layers; random knobs."""
    family = draw(st.sampled_from(["bneck", "ir"]))
    rows: list[Any] = draw(st.lists(bneck_rows if family == "bneck" else ir_rows, min_size=1, max_size=5))
    if draw(st.booleans()):
        rows.insert(draw(st.integers(0, len(rows))), dict(POOL_ROW))
    head: list[dict[str, Any]] = []
    if draw(st.booleans()):
        head.append({"type": "conv", "t": draw(st.sampled_from([2, 6])), "k": 1, "nl": "HS"})
    head.append({"type": "global_pool", "pool": draw(st.sampled_from(["avg", "max"]))})
    if draw(st.booleans()):
        head += [{"type": "linear", "c": draw(st.integers(16, 64)), "nl": "HS"}, {"type": "dropout"}]
    head.append({"type": "linear", "c": "num_classes"})
    square = st.integers(32, 96)
    return {
        "name": f"random_{family}",
        "num_classes": draw(st.integers(1, 20)),
        "input_size": draw(square | st.lists(square, min_size=2, max_size=2)),
        "width_mult": draw(st.sampled_from([0.5, 0.75, 1.0, 1.25])),
        "depth_mult": draw(st.sampled_from([1.0, 1.5])) if family == "ir" else 1.0,
        "dropout": 0.2,
        "round_to": 8,
        "stem": [{"type": "conv", "c": draw(st.integers(8, 32)), "k": 3, "s": draw(st.sampled_from([1, 2])), "nl": "HS"}],
        "body": {"type": family, "columns": COLUMNS[family], "rows": rows},
        "head": head,
    }


def _family(data: dict[str, Any]) -> str:
    return data["body"]["type"]


def _table_stages(data: dict[str, Any]) -> list[tuple[int, tuple[int, int]]]:
    """(channels, (H, W)) at the end of each stage, read off the table alone: same-padded layers
    make every stride-2 step ceil(x / 2); a row opens a stage when it is the first or downsamples."""
    family, width = _family(data), data["width_mult"]

    def scaled(c: int) -> int:
        return c if width == 1.0 else archgen.make_divisible(c * width, 8)

    size = data["input_size"]
    h, w = (size, size) if isinstance(size, int) else size
    step = data["stem"][0]["s"]
    h, w = -(-h // step), -(-w // step)
    chs, stages = scaled(data["stem"][0]["c"]), []
    for i, row in enumerate(data["body"]["rows"]):
        if isinstance(row, dict):
            s, c = row["s"], None
        else:
            named = dict(zip(COLUMNS[family], row))
            s, c = named["s"], named["c"]
        if c is not None:
            chs = scaled(c)
        if i == 0 or s == 2:
            stages.append(None)
        h, w = -(-h // s), -(-w // s)
        stages[-1] = (chs, (h, w))
    return stages


@settings(_settings, max_examples=60)
@given(data=valid_specs())
def test_random_valid_specs_build_and_run_with_the_predicted_shapes(data):
    spec = archgen.load_spec(data, source=SOURCE)
    model = archgen.build(spec).eval()
    x = torch.randn(1, 3, *spec.input_size)
    with torch.no_grad():
        feature = model.stem(x)
        for s, stage in enumerate(model.stages):
            feature = stage(feature)
            last = spec.stage_blocks(s)[-1]
            assert feature.shape == (1, last.out_chs, *last.out_size)
        out = model.head(feature)
    assert out.shape == (1, *spec.output_shape) == (1, data["num_classes"])
    assert torch.isfinite(out).all()
    ends = [spec.stage_blocks(s)[-1] for s in range(spec.num_stages)]
    assert [(b.out_chs, b.out_size) for b in ends] == _table_stages(data)
    if _family(data) == "ir":
        n_col = [r[2] for r in data["body"]["rows"] if isinstance(r, list)]
        assert sum(b.type == "ir" for b in spec.blocks) == sum(math.ceil(n * data["depth_mult"]) for n in n_col)


# -- corruptions ---------------------------------------------------------------------------------

Corruption = Callable[[dict[str, Any], int, st.DataObject], tuple[str, ...]]


def _table_rows(data: dict[str, Any]) -> list[int]:
    """Indices of the body rows read against the columns (not the pool rows)."""
    return [i for i, r in enumerate(data["body"]["rows"]) if isinstance(r, list)]


def _col(data: dict[str, Any], name: str) -> int:
    return COLUMNS[_family(data)].index(name)


def _set_cell(name: str, value: Callable[[Any], Any], field: str | None = None) -> Corruption:
    def go(data, i, draw):
        row = data["body"]["rows"][i]
        row[_col(data, name)] = value(row[_col(data, name)])
        return (f"body row {i + 1} ({_family(data)})", f"field {field or name!r}")

    return go


def _row_length(delta: int) -> Corruption:
    def go(data, i, draw):
        row = data["body"]["rows"][i]
        if delta < 0:
            del row[draw.draw(st.integers(0, len(row) - 1))]
        else:
            row.insert(draw.draw(st.integers(0, len(row))), 1)
        return (f"body row {i + 1} ({_family(data)})", f"has {len(row)} values but the table has")

    return go


def _ir_defaults(field: str, value: Any) -> Corruption:
    """ir rows have no se/nl column: a bad value in the table's defaults reaches every ir row."""

    def go(data, i, draw):
        data["body"]["defaults"] = {field: value}
        first = _table_rows(data)[0]
        return (f"body row {first + 1} (ir)", f"field {field!r}")

    return go


def _stem(field: str, value: Any) -> Corruption:
    def go(data, i, draw):
        data["stem"][0][field] = value
        return ("stem row 1 (conv)", f"field {field!r}")

    return go


def _unknown_type(data, i, draw):
    data["body"]["rows"][i] = {"type": "mbconv", **dict(zip(COLUMNS[_family(data)], data["body"]["rows"][i]))}
    return (f"body row {i + 1}", "unknown block type 'mbconv'", "bneck")


def _input_too_small(data, i, draw):
    stages = archgen.load_spec(copy.deepcopy(data), source=SOURCE).num_stages
    data["body"]["rows"].append({"type": "maxpool", "k": 3, "s": 2})  # unpadded: needs a 3x3 map
    data["input_size"] = draw.draw(st.integers(1, 2))  # padded layers keep 1x1 or 2x2 maps alive to that pool
    return (f"body row {len(data['body']['rows'])} (maxpool)", "input_size", f"reaches zero at stage {stages}")


BOTH = ("bneck", "ir")
CORRUPTIONS: dict[str, tuple[tuple[str, ...], Corruption]] = {
    "negative_channels": (BOTH, _set_cell("c", lambda c: -c)),
    "zero_channels": (BOTH, _set_cell("c", lambda c: 0)),
    "float_channels": (BOTH, _set_cell("c", lambda c: c + 0.5)),
    "integral_float_channels": (BOTH, _set_cell("c", float)),
    "string_channels": (BOTH, _set_cell("c", str)),
    "zero_expansion": (("bneck",), _set_cell("exp", lambda e: 0)),
    "zero_repeats": (("ir",), _set_cell("n", lambda n: 0)),
    "negative_repeats": (("ir",), _set_cell("n", lambda n: -n)),
    "zero_expansion_ratio": (("ir",), _set_cell("t", lambda t: 0)),
    "stride_3": (BOTH, _set_cell("s", lambda s: 3)),
    "stride_0": (BOTH, _set_cell("s", lambda s: 0)),
    "even_kernel": (("bneck",), _set_cell("k", lambda k: k + 1)),
    "even_stem_kernel": (BOTH, _stem("k", 4)),
    "se_1_5": (("bneck",), _set_cell("se", lambda se: 1.5)),
    "se_negative": (("bneck",), _set_cell("se", lambda se: -0.1)),
    "se_1_5_default": (("ir",), _ir_defaults("se", 1.5)),
    "se_negative_default": (("ir",), _ir_defaults("se", -0.1)),
    "unknown_nl": (("bneck",), _set_cell("nl", lambda nl: "mish")),
    "unknown_nl_default": (("ir",), _ir_defaults("nl", "mish")),
    "unknown_stem_nl": (BOTH, _stem("nl", "mish")),
    "unknown_type": (BOTH, _unknown_type),
    "row_too_short": (BOTH, _row_length(-1)),
    "row_too_long": (BOTH, _row_length(+1)),
    "input_too_small": (BOTH, _input_too_small),
}


@settings(_settings, max_examples=250)
@given(data=valid_specs(), draw=st.data())
def test_a_corrupted_spec_always_raises_spec_error_never_a_torch_error(data, draw):
    family = _family(data)
    name = draw.draw(st.sampled_from(sorted(n for n, (families, _) in CORRUPTIONS.items() if family in families)))
    row = draw.draw(st.sampled_from(_table_rows(data)))
    expected = CORRUPTIONS[name][1](data, row, draw)
    with pytest.raises(archgen.SpecError) as err:
        spec = archgen.load_spec(data, source=SOURCE)
        archgen.build(spec).eval()(torch.randn(1, 3, *spec.input_size))  # reached only if the corruption slipped through
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{SOURCE}: ")
    for fragment in expected:
        assert fragment in message


@st.composite
def corrupted_bytes(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` with a few random edits: bytes replaced, inserted or deleted, a number made huge,
    negative or fractional, or a stretch of nesting brackets."""
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["replace", "insert", "delete", "number", "brackets"]))
        if how == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "number":
            data[at:at] = draw(st.sampled_from([b"1000000000", b"1e35", b"-7", b"0", b"2.5", b".inf", b".nan", b"10" * 20]))
        else:
            depth = draw(st.integers(30, 3000))
            data[at:at] = b"[" * depth + b"]" * depth
    return bytes(data)


ZOO_TEXTS = {name: archgen.zoo.model_path(name).read_bytes() for name in ("mbv3_small", "mbv2", "resnet18", "vovnet27_slim")}


@settings(_settings, max_examples=300)
@given(draw=st.data(), name=st.sampled_from(sorted(ZOO_TEXTS)))
def test_a_randomly_corrupted_spec_file_loads_or_is_one_spec_error(tmp_path, draw, name):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(draw.draw(corrupted_bytes(ZOO_TEXTS[name])))
    try:
        spec = archgen.load_spec(path)
    except archgen.SpecError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path))
    else:  # the edit kept it a valid spec: it is held to the same bounds as any other
        assert spec.blocks and all(1 <= b.out_chs <= archgen.limits.MAX_CHANNELS for b in spec.blocks)
