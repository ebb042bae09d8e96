"""A point of a search space written back as its base's table: the spec a search hands its user.

A space edits the base's flat block list (``archgen.space``), and that list is the network; but
a user takes a found network to their own data and budget with the knobs (``num_classes``,
``input_size``, ``width_mult``, ``depth_mult``), which apply to a table. So the search's answer
is written as the base's table, with the chosen values per row and the paper's columns kept:
every row whose blocks the table already gives stays as the paper printed it, and a row the
search changed becomes mapping rows that state the chosen fields (MnasNet's per-stage choices
keep one row per stage; per-block choices that differ within a row split it into runs of equal
blocks, each with its own ``n``).

How a row's fields read off one of its blocks is the block type's ``table_fields``. The result
is checked by expanding it: it must give the point's flat block list exactly, or the point is
refused with the first block that differs (the caller then writes the expanded form).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

import yaml

from .blocks import BLOCKS, RowType
from .blocks.base import Expander, Knobs
from .errors import SpecError
from .ir import BlockConfig
from .knobs import SKIP
from .layers.se import SE_SETTINGS
from .rows import kind_of, parse_row
from .spec import TABLE_SECTIONS, ModelSpec, flow_yaml, load_spec, read_table, row_schema, yaml_head

_ROW = re.compile(r": (stem|body|head) row (\d+)$")
# what a row type that keeps RowType.expand emits from each of its fields
_DEFAULT_FIELDS = {"c": "out", "k": "kernel", "exp": "exp", "se": "se"}


def table_form(base: Mapping[str, Any], point: ModelSpec, name: str, source: str = "<table form>") -> dict[str, Any]:
    """The table spec that expands to ``point``'s blocks: ``base`` (a table spec's data, its
    ``base:`` resolved and its knobs set) with the rows whose blocks changed written again.

    It is written at the point's width_mult and depth_mult where the rows can say the blocks at
    those (a stage cut to one block cannot be ``ceil(n x 1.2)``); otherwise at depth_mult 1, and
    then width_mult 1, with the counts and channels the point has: the multipliers then scale
    the found network itself.

    Raises:
        SpecError: the base is an expanded spec, or a changed row cannot be written as its type's
            rows (the message names the row and the first block that differs).
    """
    if "blocks" in base:
        raise SpecError(f"{source}: the space's base is an expanded spec (a blocks list): there is no table to write into")
    errors = []
    for width, depth in dict.fromkeys([(point.width_mult, point.depth_mult), (point.width_mult, 1.0), (1.0, 1.0)]):
        knobs = Knobs(num_classes=point.num_classes, width_mult=width, depth_mult=depth, round_to=point.round_to)
        try:
            return _write(base, point, name, source, knobs)
        except SpecError as e:
            errors.append(e)
    raise errors[0]


def _write(base: Mapping[str, Any], point: ModelSpec, name: str, source: str, knobs: Knobs) -> dict[str, Any]:
    data = {k: v for k, v in base.items() if k != "reference"}  # the searched network equals no published one
    data.update(name=name, width_mult=knobs.width_mult, depth_mult=knobs.depth_mult)
    tables = {s: read_table(data[s], s, source) for s in TABLE_SECTIONS if data.get(s) is not None}
    # each section's rows, each tagged with the base row it stands for (a split row stands for one)
    rows = {s: [(i, raw) for i, raw in enumerate(t[3], 1)] for s, t in tables.items()}
    wanted = _by_row(point.blocks)
    done: set[tuple[str, int]] = set()
    while True:
        data.update({s: _with_rows(data[s], [raw for _, raw in rows[s]]) for s in rows})
        got = _by_row(_expand(data, source, rows))
        diff = next((key for key in sorted(set(wanted) | set(got), key=_order)
                     if _dicts(got.get(key)) != _dicts(wanted.get(key))), None)
        if diff is None:
            return data
        section, i = diff
        where = f"{source}: {section} row {i}"
        if diff in done:  # written again from its blocks, and still not them
            ours, theirs = _dicts(wanted.get(diff)), _dicts(got.get(diff))
            k = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            found = ours[k] if k < len(ours) else "none"
            raise SpecError(f"{where}: its type's rows cannot give the searched block {found} "
                            f"(the row gives {theirs[k] if k < len(theirs) else 'none'})")
        done.add(diff)
        ttype, columns, defaults, base_rows = tables[section]
        rewritten = _rewrite(base_rows[i - 1], ttype, columns, defaults, wanted.get(diff, []), knobs, where)
        at = [k for k, (j, _) in enumerate(rows[section]) if j == i]
        rows[section][at[0]:at[-1] + 1] = [(i, r) for r in rewritten]


def dump(data: Mapping[str, Any], header: str = "") -> str:
    """A table spec as YAML: top-level keys as a spec file writes them, each row on one line."""
    out = [header.rstrip()] if header else []
    out += yaml_head(data)
    for section in TABLE_SECTIONS:
        if section not in data:
            continue
        table = data[section]
        out.append(f"{section}:")
        indent = "  "
        if isinstance(table, Mapping):
            head = {k: v for k, v in table.items() if k != "rows"}
            out += ["  " + line for line in yaml.safe_dump(head, sort_keys=False, default_flow_style=None, width=120).splitlines()]
            out.append("  rows:")
            table, indent = table.get("rows", []), "    "
        out += [f"{indent}- {flow_yaml(r)}" for r in table]
    return "\n".join(out) + "\n"


# -- the rows a changed row becomes -------------------------------------------------------


def _rewrite(raw: Any, ttype: str | None, columns: Sequence[str] | None, defaults: Mapping[str, Any],
             blocks: Sequence[BlockConfig], knobs: Knobs, where: str) -> list[Any]:
    """The rows that give ``blocks`` (the searched blocks of one base row): runs of equal blocks."""
    if not blocks:
        return []  # the search removed every block the row gave
    rtype = raw.get("type", ttype) if isinstance(raw, Mapping) else ttype
    cls = BLOCKS.get(rtype)
    fields = _fields_of(cls)
    if fields is None:
        raise SpecError(f"{where}: a {rtype!r} row cannot be written from its blocks (the type has no table_fields)")
    schema = row_schema(cls)
    own = rtype == ttype
    row = parse_row(schema, raw, columns if own else None, defaults if own else {}, f"{where} ({rtype})")
    names = {f.name for f in dataclasses.fields(schema)}
    repeat = next(f.name for f in dataclasses.fields(schema) if kind_of(schema, f.name) == "repeats")
    as_mapping = dict(raw) if isinstance(raw, Mapping) else dict(zip(columns or [], raw))
    # an OSA row's max-pool comes from its s; a layer a search made a skip op is a skip row of its own
    ours = [b for b in blocks if b.type in (rtype, SKIP)]
    values = [_values(b, row, fields, names, knobs) if b.type == rtype else
              {"type": SKIP, "c": _unscale(b.out_chs, getattr(row, "c", None), "width", knobs)} for b in ours]
    runs: list[list[int]] = []
    for k, v in enumerate(values):
        if runs and values[runs[-1][0]] == v and ours[k].stride == 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    out = []
    for r, run in enumerate(runs):
        if ours[run[0]].type == SKIP:
            out.append({**values[run[0]], "n": _repeats(len(run), knobs.depth_mult, where), "s": ours[run[0]].stride})
            continue
        new = dict(as_mapping)
        new.update({f: v for f, v in values[run[0]].items() if v != getattr(row, f)})
        if "s" in names and r > 0:
            new["s"] = 1
        count = len(run)
        if count != 1 or getattr(row, repeat) is not None or repeat != "n":
            new[repeat] = _repeats(count, knobs.depth_mult, where)
        out.append(new)
    return out


def _fields_of(cls: type[RowType]) -> dict[str, str] | None:
    declared = getattr(cls, "table_fields", None)
    if declared is not None:
        return dict(declared)
    if cls.expand.__func__ is RowType.expand.__func__:  # type: ignore[attr-defined]
        names = {f.name for f in dataclasses.fields(cls.Row)}
        return {f: how for f, how in _DEFAULT_FIELDS.items() if f in names}
    return None


def _values(b: BlockConfig, row: Any, fields: Mapping[str, str], names: set[str], knobs: Knobs) -> dict[str, Any]:
    """The row fields that give block ``b`` from its input, at the point's knobs."""
    out: dict[str, Any] = {}
    for f, how in fields.items():
        own = getattr(row, f)
        if how in ("out", "exp") and own is None:
            continue  # the row states these channels another way (a conv's t)
        if how == "out":
            out[f] = _unscale(b.out_chs, own, getattr(row, "scale", "width"), knobs)
        elif how == "exp":
            out[f] = _unscale(b.exp, own, "width", knobs)
        elif how == "kernel":
            out[f] = b.kernel
        elif how in ("exp/in", "out/in"):  # channels as a ratio of the input, rounded as the row rounds it
            chs = b.exp if how == "exp/in" else b.out_chs
            if own is None or chs is None:
                continue
            ratio = own if int(round(b.in_chs * own)) == chs else chs / b.in_chs
            out[f] = int(ratio) if float(ratio).is_integer() else ratio
        elif how == "se":
            out[f] = b.se if b.se else False
            if b.se:  # a row without SE writes none of its settings
                out.update({k: b.args.get(k, _default(row, k)) for k in SE_SETTINGS if k in names})
        elif how == "arg":
            out[f] = b.args.get(f, getattr(row, f))
    return out


def _default(row: Any, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(row) if f.name == name)


def _unscale(chs: int | None, own: Any, scale: str, knobs: Knobs) -> Any:
    """The row value whose width-scaled channels are ``chs``: the row's own where it gives them
    (``num_classes`` stays a name), else the nearest one that does."""
    ex = Expander(knobs, "")
    if chs is None or own is not None and ex.channels(own, scale) == chs:
        return own
    mult = {"width": knobs.width_mult, "up": max(1.0, knobs.width_mult), "fixed": 1.0}[scale]
    guess = round(chs / mult)
    candidates = sorted(range(max(1, guess - knobs.round_to), guess + knobs.round_to + 1), key=lambda v: abs(v - guess))
    return next((v for v in candidates if ex.channels(v, scale) == chs), chs)  # none: the check names the block


def _repeats(count: int, depth_mult: float, where: str) -> int:
    """The ``n`` that ``depth_mult`` expands to ``count`` blocks (ceil, as EfficientNet)."""
    n = next((n for n in range(1, count + 1) if max(1, math.ceil(n * depth_mult)) == count), None)
    if n is None:
        raise SpecError(f"{where}: no repeat count gives {count} blocks at depth_mult {depth_mult:g}")
    return n


# -- comparing a table's expansion with the point ------------------------------------------


def _expand(data: Mapping[str, Any], source: str, rows: Mapping[str, list[tuple[int, Any]]]) -> list[BlockConfig]:
    """The table's blocks, each with the base row it stands for as its source."""
    spec = load_spec(data, source=source)
    out = []
    for b in spec.blocks:
        m = _ROW.search(b.source)
        if m is None:
            out.append(b)
            continue
        base_row = rows[m[1]][int(m[2]) - 1][0]
        out.append(dataclasses.replace(b, source=f"{source}: {m[1]} row {base_row}"))
    return out


def _by_row(blocks: Sequence[BlockConfig]) -> dict[tuple[str, int], list[BlockConfig]]:
    out: dict[tuple[str, int], list[BlockConfig]] = {}
    for b in blocks:
        m = _ROW.search(b.source)
        if m is None:
            raise SpecError(f"{b.name}: the block has no table row to write it into (source {b.source!r})")
        out.setdefault((m[1], int(m[2])), []).append(b)
    return out


def _order(key: tuple[str, int]) -> tuple[int, int]:
    return TABLE_SECTIONS.index(key[0]), key[1]


def _dicts(blocks: Sequence[BlockConfig] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.to_dict().items() if k != "name"} for b in blocks or []]


def _with_rows(table: Any, rows: list[Any]) -> Any:
    return rows if isinstance(table, list) else {**table, "rows": rows}


__all__ = ["dump", "table_form"]
