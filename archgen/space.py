"""Search spaces: what a search may change in a base network, and the concrete spec a choice gives.

MnasNet's factorized hierarchical search space (Tan et al. 2019, Sec. 4, Fig. 4): the
network keeps the stages of a base model, and each stage picks its blocks' settings, one
choice shared by the blocks of the stage; FBNet and Once-for-All choose per block. A space
file (``conf/search/space/<name>.yaml``) names the base zoo spec and the choices, per stage
or per block:

.. code-block:: yaml

    base: mbv3_large
    knobs: {input_size: 160}      # the base's knobs for deployment (optional)
    stages: [1, 2, 3, 4]          # body stages that are searched (default: all)
    per_stage:                    # one choice per stage, shared by its blocks (MnasNet)
      depth: [-1, 0, 1]
      width: [0.75, 1.0, 1.25]
    per_block:                    # one choice per block
      k: [3, 5, 7]
      exp: [3, 4, 6]
      se: [false, true]           # or ratios, [0, 0.25]; se_from: [in] sizes them from the input

A choice edits the base spec's flat block list (the one IR) and re-chains it
(``archgen.spec.rechain``), so a sampled architecture is a ``ModelSpec`` like any other: the
builder builds it, the cost model costs it, and its ``to_yaml`` is what a search saves.
Choices are made through a callback, so the same space serves Optuna (``trial.suggest_*``
lives in ``search.space``), random sampling (the latency table's validation) and replay of
recorded choices (``Space.apply``). ``Space.table`` writes a point back as the base's table
(``archgen.table_form``), the form a search hands its user.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .blocks import BLOCKS, PassThrough
from .errors import SpecError
from .ir import BlockConfig
from .layers.helpers import make_divisible
from .layers.se import SE_FROM, SE_SETTINGS
from .spec import ModelSpec, beside, load_spec, read_yaml, rechain, resolve_base, resolve_source
from .table_form import table_form
from .zoo import CONF_DIR

SPACE_DIR = CONF_DIR / "search" / "space"

Choose = Callable[[str, str, list[Any]], Any]  # (parameter name, knob, values) -> the chosen value
_PARAM = re.compile(r"^s(?P<stage>\d+)(?:_b(?P<block>\d+))?_(?P<knob>[a-z_]+)$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and v > 0


@dataclass(frozen=True)
class Knob:
    """One thing a search may change, and which block rows have it."""

    name: str
    doc: str
    row_fields: tuple[str, ...]  # the block's Row must have one of these for the knob to apply
    valid: Callable[[Any], bool]
    expected: str
    scopes: tuple[str, ...] = ("per_stage", "per_block")
    rank: Callable[[Any], float] = float  # orders a knob's values from the least to the most costly

    def cheapest(self, values: list[Any]) -> Any:
        return min(values, key=self.rank)


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("k", "depthwise / main kernel size", ("k",), lambda v: _is_int(v) and v > 0 and v % 2 == 1, "odd positive integers"),
        Knob(
            "exp", "expansion ratio: hidden = make_divisible(ratio x input channels, round_to)", ("exp", "t"),
            _is_num, "positive numbers",
        ),
        Knob(
            "se", "squeeze-and-excitation: false, true (the block type's ratio) or a ratio in [0, 1] (0: none)", ("se",),
            lambda v: isinstance(v, bool) or (isinstance(v, Real) and 0 <= v <= 1), "true, false or ratios in [0, 1] (0: no SE)",
        ),
        Knob(
            "se_from", "width an SE ratio is taken of: exp (the expanded width) or in (the block's input, EfficientNet's)",
            ("se_from",), lambda v: v in SE_FROM, f"one of {', '.join(SE_FROM)}", rank=lambda v: 0.0,
        ),
        Knob("stage_ch", "OSA hidden width as a ratio of the base's stage_ch", ("stage_ch",), _is_num, "positive numbers"),
        Knob("layer_per_block", "3x3 convs per OSA module", ("layer_per_block",), lambda v: _is_int(v) and v > 0, "positive integers"),
        Knob(
            "depthwise", "depthwise-separable OSA layers", ("depthwise",), lambda v: isinstance(v, bool), "true or false",
            rank=lambda v: 0.0 if v else 1.0,
        ),
        Knob("width", "output width as a ratio of the base's", (), _is_num, "positive numbers", scopes=("per_stage",)),
        Knob("depth", "blocks added to (+) or removed from (-) the end of the stage", (), _is_int, "integers", scopes=("per_stage",)),
    )
}
_SPACE_KEYS = ("base", "knobs", "stages", "per_stage", "per_block")


def list_spaces() -> list[str]:
    """Names of the shipped spaces (``conf/search/space/*.yaml``), sorted."""
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Sample:
    """A point of a space: the choices by parameter name and the network they give."""

    params: Mapping[str, Any]
    spec: ModelSpec


class Space:
    """A search space over a base spec (see the module docstring for the file format).

    Args:
        name_or_path: a shipped space name, a space file, or the space as a mapping.
        **knobs: model knobs for the base spec (``num_classes``, ``input_size``...), over the
            file's own ``knobs``: a proxy task trains the same architecture at another
            resolution and class count.
    """

    def __init__(self, name_or_path: str | Path | Mapping[str, Any], *, source: str | None = None, **knobs: Any) -> None:
        if isinstance(name_or_path, Mapping):
            data, self.source = dict(name_or_path), source or "<space>"
        else:
            path = _resolve(name_or_path)
            data, self.source = read_yaml(path), str(path)
        self.name = Path(self.source).stem if self.source.endswith((".yaml", ".yml")) else "space"
        self._data, self._knobs = data, dict(knobs)
        unknown = [k for k in data if k not in _SPACE_KEYS]
        if unknown:
            raise SpecError(f"{self.source}: unknown key {unknown[0]!r}; a space has: {', '.join(_SPACE_KEYS)}")
        if "base" not in data:
            raise SpecError(f"{self.source}: missing 'base': the zoo model or spec file the space edits")
        file_knobs = data.get("knobs") or {}
        if not isinstance(file_knobs, Mapping):
            raise SpecError(f"{self.source}: 'knobs' must be a mapping of model knobs, got {file_knobs!r}")
        try:
            # the base's data is kept: a point is written back into its table (Space.table)
            self._base_data, self._base_source = _read_base(data["base"], self.source)
            self.base = load_spec(self._base_data, source=self._base_source, **{**file_knobs, **knobs})
        except SpecError as e:
            raise SpecError(f"{self.source}: base: {e}") from None
        if any(b.section == "stages" and b.in_size is None for b in self.base.blocks):
            raise SpecError(f"{self.source}: base: a searchable network's stages must take feature maps")
        self.stages = self._stages(data.get("stages"))
        self.per_stage = self._choices(data, "per_stage")
        self.per_block = self._choices(data, "per_block")
        if not self.per_stage and not self.per_block:
            raise SpecError(f"{self.source}: the space has no choices: give per_stage and/or per_block knobs")
        self._check_applies()

    @property
    def digest(self) -> str:
        """What the space is, wherever its file sits: a hash of the base's flat block list and knobs
        and of the choices (two copies of one space file agree; an edited one differs)."""
        doc = {"base": self.base.to_dict(), "stages": list(self.stages), "per_stage": self.per_stage, "per_block": self.per_block}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def at(self, **knobs: Any) -> Space:
        """The same space over the base with other knobs: a proxy task's resolution, channels and classes."""
        return Space(self._data, source=self.source, **{**self._knobs, **knobs})

    # -- reading the file ------------------------------------------------------------------
    def _stages(self, raw: Any) -> tuple[int, ...]:
        n = self.base.num_stages
        if raw is None:
            return tuple(range(n))
        if not isinstance(raw, list) or not raw or not all(_is_int(s) and 0 <= s < n for s in raw):
            raise SpecError(f"{self.source}: 'stages' must be a non-empty list of stage indices in 0..{n - 1}, got {raw!r}")
        return tuple(sorted(set(raw)))

    def _choices(self, data: Mapping[str, Any], scope: str) -> dict[str, list[Any]]:
        raw = data.get(scope) or {}
        if not isinstance(raw, Mapping):
            raise SpecError(f"{self.source}: {scope!r} must be a mapping of knob -> list of values, got {raw!r}")
        out = {}
        for knob, values in raw.items():
            where = f"{self.source}: {scope}.{knob}"
            if knob not in KNOBS:
                raise SpecError(f"{where}: unknown knob; the knobs are: {', '.join(KNOBS)}")
            spec = KNOBS[knob]
            if scope not in spec.scopes:
                raise SpecError(f"{where}: {knob!r} is a per-stage knob (it changes the stage as a whole)")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{where}: has no choices; give a non-empty list of {spec.expected}")
            bad = [v for v in values if not spec.valid(v)]
            if bad:
                raise SpecError(f"{where}: {bad[0]!r} is not valid; the values must be {spec.expected}")
            if len(set(map(repr, values))) != len(values):
                raise SpecError(f"{where}: lists a value twice: {values!r}")
            out[knob] = list(values)
        both = set(self.per_stage if scope == "per_block" else ()) & set(out)
        if both:
            raise SpecError(f"{self.source}: {sorted(both)[0]!r} is both per_stage and per_block; choose one scope")
        return out

    def _check_applies(self) -> None:
        for knob in [*self.per_stage, *self.per_block]:
            fields = KNOBS[knob].row_fields
            if fields and not any(_has(b, fields) for s in self.stages for b in self.base.stage_blocks(s)):
                raise SpecError(
                    f"{self.source}: knob {knob!r} applies to no block of the searched stages "
                    f"(it needs a row with {' or '.join(map(repr, fields))})"
                )
        for s in self.stages:
            if "depth" in self.per_stage and not self.depth_values(s):
                raise SpecError(f"{self.source}: per_stage.depth: no value leaves stage {s} with at least one block")

    # -- choices -> spec -------------------------------------------------------------------
    def depth_values(self, stage: int) -> list[int]:
        """The depth changes a stage can take: removals stop at its repeat blocks."""
        repeats = len(_repeat_tail(self.base.stage_blocks(stage)))
        return [d for d in self.per_stage.get("depth", [0]) if d >= -repeats]

    def sample(self, choose: Choose) -> Sample:
        """Make every choice through ``choose(name, knob, values)`` and build the spec they give.

        Parameters are named ``s{stage}_{knob}`` (per stage) and ``s{stage}_b{block}_{knob}``
        (per block, the block's index in the stage); depth is chosen first, so a stage that
        grows has per-block parameters for its new blocks.
        """
        params: dict[str, Any] = {}

        def pick(name: str, knob: str, values: list[Any]) -> Any:
            params[name] = value = choose(name, knob, values) if len(values) > 1 else values[0]
            return value

        round_to = self.base.round_to
        blocks: list[BlockConfig] = [b for b in self.base.blocks if b.section == "stem"]
        for s in range(self.base.num_stages):
            stage = list(self.base.stage_blocks(s))
            if s in self.stages:
                if "depth" in self.per_stage:
                    stage = _change_depth(stage, pick(f"s{s}_depth", "depth", self.depth_values(s)))
                if "width" in self.per_stage:
                    stage = _scale_width(stage, pick(f"s{s}_width", "width", self.per_stage["width"]), round_to)
            blocks += stage
        blocks += [b for b in self.base.blocks if b.section == "head"]
        spec = rechain(self.base, blocks, self.source)

        stage_choice = {
            (s, knob): pick(f"s{s}_{knob}", knob, values)
            for s in self.stages
            for knob, values in self.per_stage.items()
            if knob not in ("depth", "width") and any(_has(b, KNOBS[knob].row_fields) for b in spec.stage_blocks(s))
        }
        edited = []
        for b in spec.blocks:
            if b.stage in self.stages:
                j = int(b.name.rsplit(".", 1)[1])
                chosen = {knob: pick(f"s{b.stage}_b{j}_{knob}", knob, values)
                          for knob, values in self.per_block.items() if _has(b, KNOBS[knob].row_fields)}
                chosen |= {knob: value for (s, knob), value in stage_choice.items()
                           if s == b.stage and _has(b, KNOBS[knob].row_fields)}
                for knob in sorted(chosen, key=list(KNOBS).index):  # se before se_from, which sizes it
                    b = _set(b, knob, chosen[knob], round_to)
            edited.append(b)
        return Sample(params, rechain(spec, edited, self.source))

    def apply(self, params: Mapping[str, Any]) -> ModelSpec:
        """The spec that recorded choices give (e.g. a finished trial's ``params``)."""

        def replay(name: str, knob: str, values: list[Any]) -> Any:
            if name not in params:
                raise SpecError(f"{self.source}: no value for parameter {name!r}")
            if params[name] not in values:
                raise SpecError(f"{self.source}: parameter {name!r} = {params[name]!r} is not one of {values!r}")
            return params[name]

        return self.sample(replay).spec

    def random(self, rng: random.Random) -> Sample:
        """A uniformly random point (each choice independently)."""
        return self.sample(lambda name, knob, values: rng.choice(values))

    def cheapest(self) -> Sample:
        """The point that takes every knob's least costly value: the space's lower bound on cost."""
        return self.sample(lambda name, knob, values: KNOBS[knob].cheapest(values))

    def dearest(self) -> Sample:
        """The point that takes every knob's most costly value: the space's upper bound on cost."""
        return self.sample(lambda name, knob, values: max(values, key=KNOBS[knob].rank))

    def nearest_to_base(self) -> Sample:
        """The point closest to the base network: each choice the value nearest to what the base has
        (its kernel, its expansion ratio, its SE...; depth 0, width 1). The base is in the space when
        its settings are among the choices."""
        base = {b.name: b for b in self.base.blocks}

        def choose(name: str, knob: str, values: list[Any]) -> Any:
            stage, block, _ = parse_param(name)
            if knob in ("depth", "width", "stage_ch"):
                current: Any = {"depth": 0}.get(knob, 1.0)
            else:
                blocks = [base[f"stages.{stage}.{block}"]] if block is not None else self.base.stage_blocks(stage)
                b = next(b for b in blocks if _has(b, KNOBS[knob].row_fields))
                if knob == "se":  # the SE ratio each value gives this block, against the block's own
                    ratio = {repr(v): _set(b, "se", v, 1).se for v in values}
                    return min(values, key=lambda v: (abs(ratio[repr(v)] - b.se), -ratio[repr(v)]))
                if knob == "se_from":
                    return b.args.get("se_from", "exp") if b.args.get("se_from", "exp") in values else values[0]
                current = _get(b, knob)
            return min(values, key=lambda v: (abs(KNOBS[knob].rank(v) - KNOBS[knob].rank(current)), -KNOBS[knob].rank(v)))

        return self.sample(choose)

    def table(self, point: ModelSpec, name: str) -> dict[str, Any]:
        """A point of this space as the base's table at the space's knobs, the chosen values in
        the rows they changed (``archgen.table_form``): every knob applies to it, width_mult and
        depth_mult included. Raises SpecError where the base has no table or a row cannot say it."""
        data = {**self._base_data, **(self._data.get("knobs") or {}), **self._knobs}
        return table_form(data, point, name, self._base_source)

    def __repr__(self) -> str:
        return f"Space({self.name!r}, base={self.base.name!r}, per_stage={self.per_stage}, per_block={self.per_block})"


def _read_base(ref: Any, source: str) -> tuple[dict[str, Any], str]:
    """A space's base as spec data (its own ``base:`` resolved) and the name its messages use: a
    zoo name, a mapping, or a spec file, found beside the space file as a spec's ``base:`` is
    (else from the working directory)."""
    if isinstance(ref, Mapping):
        return resolve_base(ref, "<dict>"), "<dict>"
    if isinstance(ref, str):
        near = beside(ref, source)
        ref = near if Path(near).is_file() else ref
    path = resolve_source(ref)
    return resolve_base(read_yaml(path), str(path)), str(path)


def parse_param(name: str) -> tuple[int, int | None, str]:
    """``"s3_b1_exp"`` -> (3, 1, "exp"); ``"s3_k"`` -> (3, None, "k")."""
    m = _PARAM.match(name)
    if m is None or m["knob"] not in KNOBS:
        raise SpecError(f"{name!r} is not a space parameter (s<stage>_<knob> or s<stage>_b<block>_<knob>)")
    return int(m["stage"]), int(m["block"]) if m["block"] is not None else None, m["knob"]


def _get(b: BlockConfig, knob: str) -> Any:
    """A block's current value of a per-block knob, in the knob's terms."""
    if knob == "k":
        return b.kernel
    if knob == "exp":
        return (b.exp or b.in_chs) / b.in_chs
    if knob == "se":
        return b.se > 0
    return b.args[knob]


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        if not p.is_file():
            raise SpecError(f"{p}: no such space file")
        return p
    if str(name_or_path) in list_spaces():
        return SPACE_DIR / f"{name_or_path}.yaml"
    raise SpecError(f"unknown space {str(name_or_path)!r}; known: {', '.join(list_spaces())}")


def _row_fields(block: BlockConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(BLOCKS.get(block.type).Row)}


def _has(block: BlockConfig, fields: Sequence[str]) -> bool:
    return not fields or bool(_row_fields(block) & set(fields))


def _repeat_tail(stage: list[BlockConfig]) -> list[BlockConfig]:
    """The stage's trailing repeats: stride-1 blocks of the last block's type whose width is
    unchanged, after the stage's first block of that type (the one that may stride or widen)."""
    tail: list[BlockConfig] = []
    for b in reversed(stage):
        if b.type != stage[-1].type or b.stride != 1 or b.in_chs != b.out_chs:
            break
        tail.append(b)
    if len(tail) == sum(b.type == stage[-1].type for b in stage):
        tail = tail[:-1]  # the stage keeps its first block of the type
    return tail


def _change_depth(stage: list[BlockConfig], delta: int) -> list[BlockConfig]:
    if delta < 0:
        return stage[:delta]
    last = stage[-1]
    return stage + [dataclasses.replace(last, stride=1, in_chs=last.out_chs) for _ in range(delta)]


def _scale_width(stage: list[BlockConfig], ratio: float, round_to: int) -> list[BlockConfig]:
    if ratio == 1:
        return stage
    out = []
    for b in stage:
        if not issubclass(BLOCKS.get(b.type), PassThrough):
            b = dataclasses.replace(
                b,
                out_chs=make_divisible(b.out_chs * ratio, round_to),
                exp=make_divisible(b.exp * ratio, round_to) if b.exp else b.exp,
            )
        out.append(b)
    return out


def _set(b: BlockConfig, knob: str, value: Any, round_to: int) -> BlockConfig:
    if knob == "k":
        return dataclasses.replace(b, kernel=value)
    if knob == "exp":
        return dataclasses.replace(b, exp=make_divisible(value * b.in_chs, round_to))
    if knob == "se":
        row = dataclasses.fields(BLOCKS.get(b.type).Row)
        ratio = next(f.metadata["on"] for f in row if f.name == "se")  # the type's own "true", e.g. 1/4 in MobileNetV3
        se = (ratio if value else 0.0) if isinstance(value, bool) else float(value)
        # a block without SE carries no SE settings but those its type always writes (as a row's expansion)
        kept = getattr(BLOCKS.get(b.type), "se_always", ())
        args = b.args if se else {k: v for k, v in b.args.items() if k not in SE_SETTINGS or k in kept}
        return dataclasses.replace(b, se=se, args=args)
    if knob == "se_from":
        if not b.se:  # nothing to size
            return b
        return dataclasses.replace(b, args={**b.args, "se_from": value} if value != "exp" else
                                   {k: v for k, v in b.args.items() if k != "se_from"})
    if knob == "stage_ch":
        return dataclasses.replace(b, exp=make_divisible((b.exp or b.out_chs) * value, round_to))
    if knob in ("layer_per_block", "depthwise"):
        return dataclasses.replace(b, args={**b.args, knob: value})
    raise AssertionError(f"unhandled knob {knob}")  # KNOBS and _set list the same knobs
