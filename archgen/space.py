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

A per-layer choice of operation, skip included (FBNet, ProxylessNAS, NAS-Bench-Macro), is the
``op`` knob over operations the file names, from the cheapest to the dearest; a tabular
benchmark's space also says how a point's choices make its key in the benchmark's file:

.. code-block:: yaml

    ops:
      id: skip                    # the identity (a 1x1 conv + BN where the layer strides or widens)
      mb3_k3: {exp: 3, k: 3}      # block-knob values set on the base's block
      mb6_k5: {exp: 6, k: 5}
    per_block:
      op: [id, mb3_k3, mb6_k5]
    key:                          # "01221002": each op's code, in network order
      knobs: [op]
      codes: {id: "0", mb3_k3: "1", mb6_k5: "2"}
      sep: ""

Each knob is one object (``archgen.knobs.KNOBS``): the values a file may list and their order by
cost, what a value does to a block or a stage, and which value is nearest to the base's.

A choice edits the base spec's flat block list (the one IR) and re-chains it
(``archgen.spec.rechain``), so a sampled architecture is a ``ModelSpec`` like any other: the
builder builds it, the cost model costs it, and its ``to_yaml`` is what a search saves.
Choices are made through a callback, so the same space serves Optuna (``trial.suggest_*``
lives in ``search.space``), random sampling (the latency table's validation) and replay of
recorded choices (``Space.apply``). ``Space.table`` writes a point back as the base's table
(``archgen.table_form``), the form a search hands its user.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .checks import is_int
from .errors import SpecError
from .ir import BlockConfig
from .knobs import KNOBS, SKIP, STAGE_EDITS, BlockKnob, Knob, Op
from .spec import ModelSpec, beside, load_spec, read_yaml, rechain, resolve_base, resolve_source
from .table_form import table_form
from .zoo import CONF_DIR

SPACE_DIR = CONF_DIR / "search" / "space"

Choose = Callable[[str, str, list[Any]], Any]  # (parameter name, knob, values) -> the chosen value
_PARAM = re.compile(r"^s(?P<stage>\d+)(?:_b(?P<block>\d+))?_(?P<knob>[a-z_]+)$")


_SPACE_KEYS = ("base", "knobs", "stages", "ops", "per_stage", "per_block", "key")
_KEY_KEYS = ("knobs", "codes", "sep")
BLOCK_ORDER = ("op", *(k for k in KNOBS if k != "op"))  # the order a block's knobs are chosen and set in


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
        self.knobs: dict[str, Knob] = {**KNOBS, "op": self._ops(data.get("ops"))}
        self.per_stage = self._choices(data, "per_stage")
        self.per_block = self._choices(data, "per_block")
        if not self.per_stage and not self.per_block:
            raise SpecError(f"{self.source}: the space has no choices: give per_stage and/or per_block knobs")
        self._check_applies()
        self.key_format = self._key_format(data.get("key"))

    @property
    def digest(self) -> str:
        """What the space is, wherever its file sits: a hash of the base's flat block list and knobs
        and of the choices (two copies of one space file agree; an edited one differs)."""
        doc = {"base": self.base.to_dict(), "stages": list(self.stages), "per_stage": self.per_stage, "per_block": self.per_block}
        if "op" in self.per_stage or "op" in self.per_block:  # a space without ops hashes as it did before they existed
            doc["ops"] = self.knob("op").ops  # type: ignore[attr-defined]
        if self.key_format is not None:  # which table entry scores a point
            doc["key"] = self.key_format
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def at(self, **knobs: Any) -> Space:
        """The same space over the base with other knobs: a proxy task's resolution, channels and classes."""
        return Space(self._data, source=self.source, **{**self._knobs, **knobs})

    def knob(self, name: str) -> Knob:
        """The knob ``name`` as this space has it (``op`` with the space's own ops)."""
        return self.knobs[name]

    # -- reading the file ------------------------------------------------------------------
    def _ops(self, raw: Any) -> Op:
        """The ``ops`` section: name -> ``skip`` or a mapping of block knobs to values."""
        if raw is None:
            return KNOBS["op"]  # type: ignore[return-value]
        if not isinstance(raw, Mapping) or not raw:
            raise SpecError(f"{self.source}: 'ops' must be a mapping of op name -> skip or block-knob values, got {raw!r}")
        for name, op in raw.items():
            where = f"{self.source}: ops.{name}"
            if op == SKIP:
                continue
            if not isinstance(op, Mapping) or not op:
                raise SpecError(f"{where}: expected 'skip' or a mapping of block knobs to values (e.g. {{k: 3, exp: 6}}), got {op!r}")
            for knob, value in op.items():
                known = [k for k, v in KNOBS.items() if isinstance(v, BlockKnob) and k != "op"]
                if knob not in known:
                    raise SpecError(f"{where}: {knob!r} is not a block knob; an op sets: {', '.join(known)}")
                if not KNOBS[knob].valid(value):
                    raise SpecError(f"{where}.{knob}: {value!r} is not valid; expected {KNOBS[knob].expected}")
        return KNOBS["op"].with_ops(raw)  # type: ignore[attr-defined]

    def _key_format(self, raw: Any) -> dict[str, Any] | None:
        """The ``key`` section: which knobs' values make a point's key in a tabular benchmark, their codes and separator."""
        if raw is None:
            return None
        where = f"{self.source}: key"
        if not isinstance(raw, Mapping) or any(k not in _KEY_KEYS for k in raw):
            raise SpecError(f"{where}: expected a mapping with {', '.join(_KEY_KEYS)}, got {raw!r}")
        knobs, codes, sep = raw.get("knobs"), raw.get("codes") or {}, raw.get("sep", "")
        chosen = {**self.per_stage, **self.per_block}
        if not isinstance(knobs, list) or not knobs or any(k not in chosen for k in knobs):
            raise SpecError(f"{where}.knobs: expected a non-empty list of the space's knobs ({', '.join(chosen)}), got {knobs!r}")
        if not isinstance(codes, Mapping) or not isinstance(sep, str):
            raise SpecError(f"{where}: 'codes' must map values to their codes and 'sep' be a string")
        return {"knobs": list(knobs), "codes": {str(k): str(v) for k, v in codes.items()}, "sep": sep}

    def _stages(self, raw: Any) -> tuple[int, ...]:
        n = self.base.num_stages
        if raw is None:
            return tuple(range(n))
        if not isinstance(raw, list) or not raw or not all(is_int(s) and 0 <= s < n for s in raw):
            raise SpecError(f"{self.source}: 'stages' must be a non-empty list of stage indices in 0..{n - 1}, got {raw!r}")
        return tuple(sorted(set(raw)))

    def _choices(self, data: Mapping[str, Any], scope: str) -> dict[str, list[Any]]:
        raw = data.get(scope) or {}
        if not isinstance(raw, Mapping):
            raise SpecError(f"{self.source}: {scope!r} must be a mapping of knob -> list of values, got {raw!r}")
        out = {}
        for knob, values in raw.items():
            where = f"{self.source}: {scope}.{knob}"
            if knob not in self.knobs:
                raise SpecError(f"{where}: unknown knob; the knobs are: {', '.join(self.knobs)}")
            spec = self.knob(knob)
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
            fields = self.knob(knob).row_fields
            if not any(self.knob(knob).applies(b) for s in self.stages for b in self.base.stage_blocks(s)):
                raise SpecError(
                    f"{self.source}: knob {knob!r} applies to no block of the searched stages "
                    f"(it needs a row with {' or '.join(map(repr, fields))})"
                )
        for s in self.stages:
            if "depth" in self.per_stage and not self.depth_values(s):
                raise SpecError(f"{self.source}: per_stage.depth: no value leaves stage {s} with at least one block")
        if "op" in self.per_stage or "op" in self.per_block:
            self._check_ops()

    def _check_ops(self) -> None:
        """Every op the space declares sets knobs that apply to every searched block."""
        ops = self.knob("op").ops  # type: ignore[attr-defined]
        if not ops:
            raise SpecError(f"{self.source}: knob 'op' chooses among the space's ops, and it declares none (ops:)")
        for name, op in ops.items():
            for b in (b for s in self.stages for b in self.base.stage_blocks(s)):
                missing = [k for k in (op if op != SKIP else ()) if not KNOBS[k].applies(b)]
                if missing:
                    raise SpecError(f"{self.source}: ops.{name}: knob {missing[0]!r} does not apply to block {b.name} "
                                    f"({b.type}, {b.source})")

    # -- choices -> spec -------------------------------------------------------------------
    def depth_values(self, stage: int) -> list[int]:
        """The depth changes a stage can take: removals stop at its repeat blocks."""
        return self.knob("depth").choices(self.base.stage_blocks(stage), self.per_stage.get("depth", [0]))

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
        edits = [self.knob(k) for k in STAGE_EDITS if k in self.per_stage]
        blocks: list[BlockConfig] = [b for b in self.base.blocks if b.section == "stem"]
        for s in range(self.base.num_stages):
            stage = list(self.base.stage_blocks(s))
            for knob in edits if s in self.stages else ():
                value = pick(f"s{s}_{knob.name}", knob.name, knob.choices(stage, self.per_stage[knob.name]))
                stage = knob.edit(stage, value, round_to)
            blocks += stage
        blocks += [b for b in self.base.blocks if b.section == "head"]
        spec = rechain(self.base, blocks, self.source)

        stage_choice = {
            (s, knob): pick(f"s{s}_{knob}", knob, values)
            for s in self.stages
            for knob, values in self.per_stage.items()
            if knob not in STAGE_EDITS and any(self.knob(knob).applies(b) for b in spec.stage_blocks(s))
        }
        edited = []
        for b in spec.blocks:
            if b.stage in self.stages:
                j = int(b.name.rsplit(".", 1)[1])
                # op first (the others tune the block it gives, where they apply to it), then KNOBS' order:
                # se before se_from, which sizes it
                for knob in (k for k in BLOCK_ORDER if k in self.per_block or (b.stage, k) in stage_choice):
                    if self.knob(knob).applies(b):
                        value = (pick(f"s{b.stage}_b{j}_{knob}", knob, self.per_block[knob]) if knob in self.per_block
                                 else stage_choice[(b.stage, knob)])
                        b = self.knob(knob).set(b, value, round_to)  # type: ignore[attr-defined]
            edited.append(b)
        return Sample(params, rechain(spec, edited, self.source))

    def points(self, limit: int = 100_000) -> Iterator[Sample]:
        """Every point of the space, each once: an odometer over its choices, made define-by-run (a
        choice that exists only under another, a grown stage's blocks, is counted under it). A
        tabular benchmark's whole space is a few thousand points; past ``limit`` this raises SpecError."""
        path: list[int] = []
        for n in itertools.count(1):
            if n > limit:
                raise SpecError(f"{self.source}: the space has more than {limit} points")
            sizes: list[int] = []

            def choose(name: str, knob: str, values: list[Any]) -> Any:
                sizes.append(len(values))
                return values[path[len(sizes) - 1] if len(sizes) <= len(path) else 0]

            yield self.sample(choose)
            path = path[:len(sizes)] + [0] * (len(sizes) - len(path))
            i = len(sizes) - 1
            while i >= 0 and path[i] + 1 >= sizes[i]:
                i -= 1
            if i < 0:
                return
            path = path[:i] + [path[i] + 1]

    def key(self, params: Mapping[str, Any]) -> str:
        """A point's key in the tabular benchmark the space declares (``key:``): the codes of its
        choices of the key's knobs, in network order (stage, block, then the key's knob order)."""
        if self.key_format is None:
            raise SpecError(f"{self.source}: the space declares no key (key:), so no table of trained results can "
                            "score its points")
        knobs, codes = self.key_format["knobs"], self.key_format["codes"]
        names = [n for n in params if parse_param(n)[2] in knobs]

        def order(name: str) -> tuple[int, int, int]:
            stage, block, knob = parse_param(name)
            return stage, -1 if block is None else block, knobs.index(knob)

        return self.key_format["sep"].join(codes.get(str(params[n]), str(params[n])) for n in sorted(names, key=order))

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
        return self.sample(lambda name, knob, values: self.knob(knob).cheapest(values))

    def dearest(self) -> Sample:
        """The point that takes every knob's most costly value: the space's upper bound on cost."""
        return self.sample(lambda name, knob, values: max(values, key=self.knob(knob).rank))

    def nearest_to_base(self) -> Sample:
        """The point closest to the base network: each choice the value nearest to what the base has
        (its kernel, its expansion ratio, its SE...; depth 0, width 1). The base is in the space when
        its settings are among the choices."""

        def choose(name: str, knob: str, values: list[Any]) -> Any:
            stage, block, _ = parse_param(name)
            blocks = self.base.stage_blocks(stage)
            if block is not None:  # one block's choice; a block that depth added is a copy of the stage's last
                blocks = [blocks[min(block, len(blocks) - 1)]]
            return self.knob(knob).nearest(blocks, values)

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


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        if not p.is_file():
            raise SpecError(f"{p}: no such space file")
        return p
    if str(name_or_path) in list_spaces():
        return SPACE_DIR / f"{name_or_path}.yaml"
    raise SpecError(f"unknown space {str(name_or_path)!r}; known: {', '.join(list_spaces())}")
