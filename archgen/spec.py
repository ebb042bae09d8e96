"""Specs: papers' tables as data, loaded, checked and expanded into the flat block list.

A spec file (``conf/model/<name>.yaml``) is one of two forms:

* the **table form**, as the paper prints it: ``stem``, ``body`` and ``head`` tables whose
  rows are read against the block type's columns (MobileNetV2's ``t c n s``, MobileNetV3's
  ``k exp c se nl s``, VoVNet's ``stage_ch concat_ch block_per_stage layer_per_block``...);
* the **expanded form**: a ``blocks`` list of concrete block configs, what a run writes as
  ``spec.yaml`` and what the search saves. It rebuilds the identical model.

Both load into a ``ModelSpec`` whose ``blocks`` are the one intermediate representation.
The loader only reads data: block types are registry names, never import paths.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .blocks import BLOCKS, Block, Expander, Knobs
from .blocks.base import Chain
from .checks import is_int, is_real
from .errors import SpecError
from .ir import REQUIRED_BLOCK_KEYS, BlockConfig
from .limits import MAX_BLOCKS, MAX_CHANNELS, MAX_INPUT_SIZE, MAX_MULT, MAX_NUM_CLASSES, MAX_SPEC_BYTES, MAX_SPEC_DEPTH
from .layers.activations import ACTIVATIONS
from .layers.context import ROUND_TO
from .rows import parse_row, repeats
from .zoo import list_models, model_path

KNOBS = ("num_classes", "in_chans", "input_size", "width_mult", "depth_mult", "dropout")
META_KEYS = ("name", "paper", "reference", "conventions")
SETTING_KEYS = ("round_to", "bn")
BN_KEYS = ("eps", "momentum")
BASE_KEY = "base"  # a spec that is another spec with some keys changed (EfficientNet-B1..B7 on B0's table)
MAX_BASE_CHAIN = 8
TABLE_SECTIONS = ("stem", "body", "head")
TOP_KEYS = META_KEYS + (BASE_KEY,) + KNOBS + SETTING_KEYS + TABLE_SECTIONS + ("blocks",)
TABLE_KEYS = ("type", "columns", "defaults", "rows")
_SECTION_NAMES = {"stem": "stem", "body": "stages", "head": "head"}


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved spec: the knobs it was expanded with and its flat block list."""

    name: str
    blocks: tuple[BlockConfig, ...]  # the one IR: every block of the network, in order
    num_classes: int
    in_chans: int
    input_size: tuple[int, int]
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.0
    round_to: int = ROUND_TO
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    meta: Mapping[str, Any] = field(default_factory=dict)  # paper, reference, conventions
    source: str = "<dict>"  # the file it came from

    @property
    def num_stages(self) -> int:
        return 1 + max(b.stage for b in self.blocks if b.stage is not None)

    def stage_blocks(self, stage: int) -> list[BlockConfig]:
        return [b for b in self.blocks if b.stage == stage]

    def feature_info(self) -> list[dict[str, Any]]:
        """Per stage: output channels, reduction (total stride) and module name (timm's convention)."""
        info, stride = [], 1
        for b, nxt in zip(self.blocks, [*self.blocks[1:], None]):
            stride *= b.stride
            if b.stage is not None and (nxt is None or nxt.stage != b.stage):
                info.append({"num_chs": b.out_chs, "reduction": stride, "module": f"stages.{b.stage}"})
        return info

    def key(self) -> tuple[Any, ...]:
        """What the network's shapes are, for caches of its counts: its input, its SE rounding and
        every block by name and ``BlockConfig.key`` (BatchNorm's eps and momentum, dropout's rate
        and the spec's name change no shape)."""
        return (self.in_chans, self.input_size, self.round_to, tuple((b.name, b.key()) for b in self.blocks))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one sample's output: (classes,) for a classifier, (C, H, W) otherwise."""
        last = self.blocks[-1]
        return (last.out_chs,) if last.out_size is None else (last.out_chs, *last.out_size)

    def to_dict(self) -> dict[str, Any]:
        """The expanded form: knobs and settings as resolved, and the flat block list."""
        d: dict[str, Any] = {"name": self.name}
        d.update({k: v for k, v in self.meta.items() if k != "name"})
        d.update(
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            input_size=list(self.input_size),
            width_mult=self.width_mult,
            depth_mult=self.depth_mult,
            dropout=self.dropout,
            round_to=self.round_to,
            bn={"eps": self.bn_eps, "momentum": self.bn_momentum},
            blocks=[b.to_dict() for b in self.blocks],
        )
        return d

    def to_yaml(self) -> str:
        """``to_dict`` as YAML, one block per line; ``load_spec`` reads it back to the same spec."""
        d = self.to_dict()
        blocks = d.pop("blocks")
        lines = [*yaml_head(d), "blocks:"]
        lines += ["  - " + flow_yaml(b) for b in blocks]
        return "\n".join(lines) + "\n"


def yaml_head(data: Mapping[str, Any]) -> list[str]:
    """The YAML lines of a spec's keys but its tables or blocks: what it is (name, paper...) in
    block style, then a setting per line, a mapping setting (bn) on its line."""
    meta = {k: data[k] for k in META_KEYS if k in data}
    lines = [yaml.safe_dump(meta, sort_keys=False, default_flow_style=False, width=120).rstrip()] if meta else []
    for k, v in data.items():
        if k not in META_KEYS and k not in (*TABLE_SECTIONS, "blocks"):
            lines.append(f"{k}: {flow_yaml(v)}" if isinstance(v, (Mapping, list)) else
                         yaml.safe_dump({k: v}, sort_keys=False, width=120).rstrip())
    return lines


def flow_yaml(value: Any) -> str:
    """``value`` as one line of flow-style YAML (a row, a block, a bn mapping)."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=True, width=1 << 16).strip()


# -- loading ------------------------------------------------------------------------------


def resolve_source(name_or_path: str | Path) -> Path:
    """A zoo name or a spec file path -> the file; unknown names list the zoo."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in str(name_or_path):
        if not p.is_file():
            raise SpecError(f"{p}: no such spec file")
        return p
    if str(name_or_path) in list_models():
        return model_path(str(name_or_path))
    raise SpecError(f"unknown model {str(name_or_path)!r}; the zoo has: {', '.join(list_models())}")


class SpecLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no tags, no code) that also reads ``1e-5`` as a number.

    YAML 1.1, which PyYAML implements, reads a float only with a dot (``1.0e-5``), so
    ``bn: {eps: 1e-5}`` would give the string "1e-5"; YAML 1.2, OmegaConf and Hydra read a number.
    """


SpecLoader.add_implicit_resolver(  # copies SafeLoader's resolvers first: safe_load itself is unchanged
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a spec file as plain data (``SpecLoader``: no tags, no code), at most
    ``MAX_SPEC_BYTES`` long and ``MAX_SPEC_DEPTH`` deep."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # never more than the limit, whatever the file's size
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: the file is over {MAX_SPEC_BYTES >> 20} MiB; a spec is a few kB of tables")
        data = yaml.load(raw.decode("utf-8"), Loader=SpecLoader)  # noqa: S506 (SpecLoader is a SafeLoader)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: unreadable YAML: not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise SpecError(f"{path}: unreadable YAML: nested deeper than {MAX_SPEC_DEPTH} levels") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: unreadable YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping, got {type(data).__name__}")
    if depth(data) > MAX_SPEC_DEPTH:
        raise SpecError(f"{path}: nested deeper than {MAX_SPEC_DEPTH} levels; a spec's tables are a few levels deep")
    return data


def depth(data: Any) -> int:
    """How deeply ``data`` nests mappings and lists (a scalar: 0), or ``MAX_SPEC_DEPTH + 1`` when
    deeper than the limit. YAML anchors share one object between several places (and may make a
    cycle), so every object is measured once, and no walk goes past the limit."""
    too_deep = MAX_SPEC_DEPTH + 1
    heights: dict[int, int] = {}
    active: set[int] = set()

    def height(item: Any, level: int) -> int:
        if not isinstance(item, (Mapping, list, tuple)):
            return 0
        key = id(item)
        if level >= too_deep or key in active:  # past the limit, or an anchor inside itself
            return too_deep
        if key not in heights:
            active.add(key)
            children = item.values() if isinstance(item, Mapping) else item
            heights[key] = min(too_deep, 1 + max((height(c, level + 1) for c in children), default=0))
            active.discard(key)
        return heights[key]

    return height(data, 0)


def load_spec(
    name_or_path: str | Path | Mapping[str, Any],
    *,
    source: str | None = None,
    bn: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> ModelSpec:
    """Load, check and expand a spec.

    Args:
        name_or_path: a zoo name (``"mbv3_large"``), a path to a spec YAML file, or the
            spec's data as a mapping.
        source: what to call a mapping spec in messages (default ``"<dict>"``).
        bn: BatchNorm settings replacing the spec's, ``{"eps": 1e-5}`` and/or ``"momentum"``
            (a checkpoint trained with another eps than the spec's gives other logits).
        **overrides: knobs: num_classes, in_chans, input_size, width_mult, depth_mult, dropout.
            On an expanded spec (a run's ``spec.yaml``), num_classes, in_chans and input_size
            re-chain its channels and sizes; width_mult and depth_mult are refused.

    Raises:
        SpecError: naming the file, the row and the field, and what was expected.
    """
    if isinstance(name_or_path, Mapping):
        data, where = dict(name_or_path), source or "<dict>"
    else:
        path = resolve_source(name_or_path)
        data, where = read_yaml(path), str(path)
    unknown = [k for k in overrides if k not in KNOBS]
    if unknown:
        raise SpecError(f"{where}: unknown setting {unknown[0]!r}; the knobs are: {', '.join(KNOBS)}, and bn")
    data = resolve_base(data, where)
    if bn is not None:
        if not isinstance(bn, Mapping):
            raise SpecError(f"{where}: the bn setting must be a mapping such as {{'eps': 1e-05}}, got {bn!r}")
        base_bn = data.get("bn") or {}
        data["bn"] = {**base_bn, **bn} if isinstance(base_bn, Mapping) else dict(bn)
    return spec_from_dict(data, where, overrides)


def beside(ref: str, here: str) -> str | Path:
    """A spec file named relative to the file ``here`` that names it, found beside that file; a
    zoo name (or an absolute path, or a name in a mapping spec) as it is."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        target = Path(ref)
        if not target.is_absolute() and here.endswith((".yaml", ".yml")):
            return Path(here).parent / target
        return target
    return ref


def resolve_base(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A spec with a ``base`` key is that spec with the keys it gives replacing the base's.

    ``base`` names a zoo model or a spec file (relative to the file that names it). It is how
    EfficientNet-B1..B7 are written: B0's table (Tan & Le 2019, Table 1) with the compound
    coefficients of Sec. 3.3 as knobs. The name is this file's, never inherited.
    """
    data, chain = dict(data), [source]
    if BASE_KEY not in data:
        return data
    name = data.get("name") or (Path(source).stem if source.endswith((".yaml", ".yml")) else None)
    while BASE_KEY in data:
        ref = data.pop(BASE_KEY)
        here = chain[-1]
        if not isinstance(ref, str) or not ref:
            raise SpecError(f"{here}: 'base' must be a zoo model name or a spec file path, got {ref!r}")
        try:
            path = resolve_source(beside(ref, here))
        except SpecError as e:
            raise SpecError(f"{here}: base: {e}") from None
        if str(path.resolve()) in {str(Path(c).resolve()) for c in chain if c.endswith((".yaml", ".yml"))}:
            raise SpecError(f"{here}: 'base' makes a loop: {' -> '.join([*chain, str(path)])}")
        if len(chain) > MAX_BASE_CHAIN:
            raise SpecError(f"{source}: 'base' chains more than {MAX_BASE_CHAIN} specs")
        base = read_yaml(path)
        unknown = [k for k in data if k not in TOP_KEYS]
        if unknown:
            raise SpecError(f"{here}: unknown key {unknown[0]!r}; a spec has: {', '.join(TOP_KEYS)}")
        data = {**base, **data}
        chain.append(str(path))
    if name is None:
        data.pop("name", None)
    else:
        data["name"] = name
    return data


def spec_from_dict(data: Mapping[str, Any], source: str, overrides: Mapping[str, Any] | None = None) -> ModelSpec:
    """Check the top level of a spec, apply knob overrides and expand it."""
    data = resolve_base(data, source)
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise SpecError(f"{source}: unknown key {unknown[0]!r}; a spec has: {', '.join(TOP_KEYS)}")
    expanded = "blocks" in data
    if expanded and any(k in data for k in TABLE_SECTIONS):
        raise SpecError(f"{source}: a spec has either tables (stem/body/head) or an expanded 'blocks' list, not both")
    if not expanded and data.get("body") is None:
        raise SpecError(f"{source}: missing 'body': the table of the network's blocks")
    rechained: dict[str, Any] = {}
    if overrides:
        if expanded:
            changed = [k for k, v in overrides.items() if k != "dropout" and _norm_knob(k, v, source) != _norm_knob(k, data.get(k), source)]
            scaled = [k for k in changed if k in ("width_mult", "depth_mult")]
            if scaled:
                what = "channels" if scaled[0] == "width_mult" else "repeats"
                raise SpecError(
                    f"{source}: {scaled[0]} cannot change on an expanded spec: its {what} are concrete, and a "
                    "multiplier applies to a table's rows (make_divisible of each row's channels, ceil of each "
                    "row's n); apply it to the table spec it came from (a search's best.yaml is one)"
                )
            rechained = {k: overrides[k] for k in changed}  # num_classes, in_chans, input_size
        data.update({k: v for k, v in overrides.items() if k not in rechained})
    knobs = _knobs(data, source)
    bn = _bn(data.get("bn", {}), source)
    meta = {k: data[k] for k in META_KEYS if k != "name" and k in data}
    name = data.get("name") or (Path(source).stem if source.endswith((".yaml", ".yml")) else "custom")
    if not isinstance(name, str) or not name.isprintable():
        # a name is printed on the terminal: escape codes or line breaks in it would reach it raw
        raise SpecError(f"{source}: 'name' must be a string of printable characters, got {name!r}")
    if expanded:
        blocks = _load_blocks(data["blocks"], knobs, source)
    else:
        blocks = _expand_tables(data, knobs, source)
    spec = ModelSpec(
        name=name,
        blocks=tuple(blocks),
        num_classes=knobs.num_classes,
        in_chans=knobs.in_chans,
        input_size=knobs.input_size,
        width_mult=knobs.width_mult,
        depth_mult=knobs.depth_mult,
        dropout=knobs.dropout,
        round_to=knobs.round_to,
        bn_eps=bn[0],
        bn_momentum=bn[1],
        meta=meta,
        source=source,
    )
    return _rechain_knobs(spec, rechained) if rechained else spec


def _rechain_knobs(spec: ModelSpec, changes: Mapping[str, Any]) -> ModelSpec:
    """An expanded spec at another num_classes, in_chans or input_size: the classifier gets the new
    class count, and every block's channels and sizes are derived again from the new input."""
    knobs = _knobs({k: changes.get(k, getattr(spec, k)) for k in ("num_classes", "in_chans", "input_size")}, spec.source)
    blocks = list(spec.blocks)
    if knobs.num_classes != spec.num_classes:
        i = _classifier(spec)
        blocks[i] = dataclasses.replace(blocks[i], out_chs=knobs.num_classes)
    new = dataclasses.replace(spec, num_classes=knobs.num_classes, in_chans=knobs.in_chans, input_size=knobs.input_size)
    return rechain(new, blocks)


def _classifier(spec: ModelSpec) -> int:
    """Index of the block that gives the class scores: the last one that sets its own width
    (pools, flatten and dropout after it keep their input's)."""
    for i in range(len(spec.blocks) - 1, -1, -1):
        b = spec.blocks[i]
        if BLOCKS.get(b.type).output_chs.__func__ is Block.output_chs.__func__:  # type: ignore[attr-defined]
            if b.section == "head" and b.out_chs == spec.num_classes:
                return i
            break
    raise SpecError(
        f"{spec.source}: num_classes cannot change: no head block gives the spec's {spec.num_classes} classes "
        "(the network ends without a classifier)"
    )


def _norm_knob(key: str, value: Any, source: str) -> Any:
    if key == "input_size" and value is not None:
        return _size(value, source)
    return value


def _size(value: Any, source: str) -> tuple[int, int]:
    def side(v: Any) -> bool:
        return is_int(v) and 1 <= v <= MAX_INPUT_SIZE

    if side(value):
        return (value, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(side(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise SpecError(f"{source}: 'input_size' must be an integer in [1, {MAX_INPUT_SIZE}] or [H, W] of them, got {value!r}")


def _knobs(data: Mapping[str, Any], source: str) -> Knobs:
    k = Knobs()
    for key, most in (("num_classes", MAX_NUM_CLASSES), ("in_chans", MAX_CHANNELS), ("round_to", MAX_CHANNELS)):
        if key in data:
            v = data[key]
            if not is_int(v) or not 1 <= v <= most:
                raise SpecError(f"{source}: {key!r} must be an integer in [1, {most}], got {v!r}")
            setattr(k, key, v)
    for key in ("width_mult", "depth_mult"):
        if key in data:
            v = data[key]
            if not is_real(v) or not 0 < v <= MAX_MULT:
                raise SpecError(f"{source}: {key!r} must be a number in (0, {MAX_MULT}], got {v!r}")
            setattr(k, key, float(v))
    if "dropout" in data:
        v = data["dropout"]
        if not is_real(v) or not 0 <= v < 1:
            raise SpecError(f"{source}: 'dropout' must be a number in [0, 1), got {v!r}")
        k.dropout = float(v)
    if "input_size" in data:
        k.input_size = _size(data["input_size"], source)
    return k


def _bn(raw: Any, source: str) -> tuple[float, float]:
    if not isinstance(raw, Mapping) or any(key not in BN_KEYS for key in raw):
        raise SpecError(f"{source}: 'bn' must be a mapping with 'eps' and/or 'momentum', got {raw!r}")
    eps, momentum = raw.get("eps", 1e-5), raw.get("momentum", 0.1)
    for key, v in (("eps", eps), ("momentum", momentum)):
        if not is_real(v) or not 0 < v < 1:
            raise SpecError(f"{source}: 'bn.{key}' must be a number in (0, 1), got {v!r}")
    return float(eps), float(momentum)


# -- table form -----------------------------------------------------------------------------


def read_table(raw: Any, section: str, source: str) -> tuple[str | None, list[str] | None, dict[str, Any], list[Any]]:
    """Normalise a section to (default type, columns, defaults, rows); a bare list is rows only."""
    where = f"{source}: {section}"
    if isinstance(raw, list):
        return None, None, {}, raw
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: must be a table (type/columns/defaults/rows) or a list of rows, got {raw!r}")
    unknown = [k for k in raw if k not in TABLE_KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; a table has: {', '.join(TABLE_KEYS)}")
    ttype, columns, defaults, rows = raw.get("type"), raw.get("columns"), raw.get("defaults", {}) or {}, raw.get("rows")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise SpecError(f"{where}: 'columns' must be a list of field names, got {columns!r}")
    if columns is not None and len(set(columns)) != len(columns):
        raise SpecError(f"{where}: 'columns' names a field twice: {columns!r}")
    if not isinstance(defaults, Mapping):
        raise SpecError(f"{where}: 'defaults' must be a mapping, got {defaults!r}")
    if ttype is not None:
        try:
            cls = BLOCKS.get(ttype)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None
        fields = [f.name for f in dataclasses.fields(row_schema(cls))]  # in the row's order: one message per input
        for key in [*(columns or []), *defaults]:
            if key != "type" and key not in fields:
                raise SpecError(f"{where}: {ttype!r} rows have no field {key!r}; they have: {', '.join(fields)}")
    elif defaults:
        raise SpecError(f"{where}: 'defaults' need the table's 'type'")
    if not isinstance(rows, list):
        raise SpecError(f"{where}: 'rows' must be a list, got {rows!r}")
    return ttype, columns, dict(defaults), rows


def _expand_tables(data: Mapping[str, Any], knobs: Knobs, source: str) -> list[BlockConfig]:
    ex = Expander(knobs, source)
    for section in TABLE_SECTIONS:
        if section not in data or data[section] is None:
            continue
        ttype, columns, defaults, rows = read_table(data[section], section, source)
        if section == "body" and not rows:
            raise SpecError(f"{source}: body: has no rows")
        for i, raw in enumerate(rows, 1):
            where = f"{source}: {section} row {i}"
            rtype = raw.get("type", ttype) if isinstance(raw, Mapping) else ttype
            if rtype is None:
                raise SpecError(f"{where}: the row names no 'type' and the table has no default type")
            try:
                cls = BLOCKS.get(rtype)
            except SpecError as e:
                raise SpecError(f"{where}: {e}") from None
            row_columns = columns if rtype == ttype else None
            row_defaults = defaults if rtype == ttype else {}
            row = parse_row(row_schema(cls), raw, row_columns, row_defaults, f"{where} ({rtype})")
            ex.begin_row(_SECTION_NAMES[section], where)
            expand_row(cls, row, ex)
            ex.end_row()
    if knobs.depth_mult != 1.0 and not ex.used_repeats:
        raise SpecError(f"{source}: depth_mult={knobs.depth_mult:g} has no effect: no row of this spec has a repeat column (n)")
    return ex.blocks


@functools.cache
def row_schema(cls: type) -> type:
    """The row a table reads for block type ``cls``: its ``Row``, with a repeat column ``n`` added
    where the type has none (a MobileNetV3 bneck row, a conv), so that every row can be repeated
    and depth-scaled, as EfficientNet's and MnasNet's tables repeat every kind of block."""
    if any(f.name == "n" for f in dataclasses.fields(cls.Row)):
        return cls.Row
    return dataclasses.make_dataclass(
        cls.Row.__name__,
        [("n", Any, repeats("repeats of the row (depth-scaled); the stride applies to the first", None))],
        bases=(cls.Row,),
        frozen=True,
        kw_only=True,
    )


def expand_row(cls: type, row: Any, ex: Expander) -> None:
    """Emit one row's blocks. A row type with its own ``n`` repeats itself; for the others, a row
    that states ``n`` is expanded ``ceil(n x depth_mult)`` times, with its stride ``s`` only on
    the first (a row that does not state ``n`` is one block, and depth_mult leaves it alone)."""
    schema = row_schema(cls)
    if schema is cls.Row:
        cls.expand(row, ex)
        return
    own = cls.Row(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls.Row)})
    if row.n is None:
        cls.expand(own, ex)
        return
    for i in range(ex.repeats(row.n)):
        cls.expand(own if i == 0 or not hasattr(own, "s") else dataclasses.replace(own, s=1), ex)


# -- expanded form -------------------------------------------------------------------------


def _load_blocks(raw: Any, knobs: Knobs, source: str) -> list[BlockConfig]:
    """Read an expanded ``blocks`` list back, checking that it chains and is buildable."""
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{source}: 'blocks' must be a non-empty list of block configs")
    if len(raw) > MAX_BLOCKS:
        raise SpecError(f"{source}: 'blocks' lists {len(raw)} blocks, over the limit of {MAX_BLOCKS}")
    blocks: list[BlockConfig] = []
    chain = Chain(knobs.in_chans, knobs.input_size)
    for i, b in enumerate(raw, 1):
        where = _check_block(b, f"{source}: blocks[{i}]")
        if b["in"] != chain.chs:
            raise SpecError(f"{where}: field 'in' is {b['in']} but the previous block gives {chain.chs} channels")
        got = tuple(b["size"]) if b.get("size") is not None else None
        if got != chain.size:
            given = list(chain.size) if chain.size else None
            raise SpecError(f"{where}: field 'size' is {b.get('size')} but the previous block gives {given}")
        _check_name(b["name"], blocks, where)
        blocks.append(chain.feed(BlockConfig.from_dict({**b, "type": BLOCKS.canonical(b["type"])}, where), where))
    if not any(b.stage is not None for b in blocks):
        raise SpecError(f"{source}: 'blocks' has no stages.s.j block; a network needs at least one stage")
    return blocks


def _check_block(b: Any, where: str) -> str:
    """Check one block of an expanded spec on its own (its keys, type and values); return the
    name its messages then go by, ``blocks[i] (name, type)``."""
    if not isinstance(b, Mapping):
        raise SpecError(f"{where}: must be a mapping, got {b!r}")
    missing = [k for k in REQUIRED_BLOCK_KEYS if k not in b]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}")
    try:
        cls = BLOCKS.get(b["type"])
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    if not issubclass(cls, Block):
        raise SpecError(f"{where}: {b['type']!r} is a row type, not a block")
    where = f"{where} ({b['name']}, {b['type']})"
    for key in ("in", "out", "s"):
        v = b.get(key, 1)
        if not is_int(v) or not 1 <= v <= MAX_CHANNELS:
            raise SpecError(f"{where}: field {key!r} must be an integer in [1, {MAX_CHANNELS}], got {v!r}")
    for key in ("k", "exp"):
        v = b.get(key)
        if v is not None and (not is_int(v) or not 1 <= v <= MAX_CHANNELS):
            raise SpecError(f"{where}: field {key!r} must be an integer in [1, {MAX_CHANNELS}], got {v!r}")
    se = b.get("se", 0.0)
    if not is_real(se) or not 0 <= se <= 1:
        raise SpecError(f"{where}: field 'se' must be a ratio in [0, 1], got {se!r}")
    size = b.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(is_int(v) and v >= 1 for v in size)):
        raise SpecError(f"{where}: field 'size' must be [H, W] (positive integers), got {size!r}")
    if b.get("nl") is not None and b["nl"] not in ACTIVATIONS:
        raise SpecError(f"{where}: field 'nl' must be an activation: one of {', '.join(ACTIVATIONS.names())}, got {b['nl']!r}")
    return where


def rechain(spec: ModelSpec, blocks: Sequence[BlockConfig], source: str | None = None) -> ModelSpec:
    """A spec with an edited block list (a search changed widths, depths or block settings).

    Channels and feature-map sizes are derived again block by block (``Block.output_chs`` and
    ``output_size``, fed through a ``Chain``, which refuses what the expanded-form loader
    refuses, in its words), blocks are renumbered within their sections and stages, and the
    result is checked exactly as a loaded expanded spec is, so it is what its ``to_yaml`` rebuilds.
    """
    source = source or spec.source
    chain = Chain(spec.in_chans, spec.input_size)
    counters: dict[str, int] = {}
    chained = []
    for i, b in enumerate(blocks, 1):
        group = f"stages.{b.stage}" if b.stage is not None else b.section
        name = f"{group}.{counters.get(group, 0)}"
        counters[group] = counters.get(group, 0) + 1
        b = dataclasses.replace(b, name=name, in_size=chain.size)  # the size first: a flatten's width depends on it
        # from the block's own in_chs to the chain's: a dense layer adds its growth to its new input
        b = dataclasses.replace(b, out_chs=BLOCKS.get(b.type).output_chs(b, chain.chs))
        chained.append(chain.feed(b, f"{source}: blocks[{i}] ({name}, {b.type})"))
    data = dataclasses.replace(spec, blocks=tuple(chained)).to_dict()
    checked = spec_from_dict(data, source)
    # each block keeps where it came from (its table row): messages name it, and a search's answer
    # is written back into that row (archgen.table_form)
    return dataclasses.replace(checked, blocks=tuple(
        dataclasses.replace(new, source=old.source or new.source) for new, old in zip(checked.blocks, chained, strict=True)
    ))


def _check_name(name: Any, before: list[BlockConfig], where: str) -> None:
    """Names must be stem.i, stages.s.j, head.i, numbered in order."""
    parts = str(name).split(".")
    prev = before[-1] if before else None
    order = {"stem": 0, "stages": 1, "head": 2}
    ok = (parts[0] in ("stem", "head") and len(parts) == 2) or (parts[0] == "stages" and len(parts) == 3)
    ok = ok and all(p.isdigit() for p in parts[1:])
    if ok and prev is not None:
        pp = prev.name.split(".")
        if order[parts[0]] < order[pp[0]]:
            ok = False
        elif parts[0] == pp[0] == "stages":
            ok = (parts[1] == pp[1] and int(parts[2]) == int(pp[2]) + 1) or (int(parts[1]) == int(pp[1]) + 1 and parts[2] == "0")
        elif parts[0] == pp[0]:
            ok = int(parts[1]) == int(pp[1]) + 1
        else:
            ok = parts[1:] == ["0"] * (len(parts) - 1)
    elif ok:
        ok = parts[1:] == ["0"] * (len(parts) - 1)
    if not ok:
        raise SpecError(f"{where}: name {name!r} is out of order; blocks are named stem.i, stages.s.j, head.i, counting from 0")
