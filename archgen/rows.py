"""Typed table columns: what each field of a spec row means and which values it accepts.

A block type declares its row as a keyword-only dataclass whose fields are made with the
helpers below (``channels``, ``repeats``, ``stride``, ...). Each helper records the field's
kind and a one-line doc; ``parse_row`` checks a raw YAML row against it, each value with its
kind's validator (``VALIDATORS``), and raises a ``SpecError`` that names the field and the
expected values. The kind also tells the expander what a field is: ``channels`` are
width-scaled, ``repeats`` are depth-scaled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any, Callable, Mapping, Sequence

from .checks import is_int, is_real
from .errors import SpecError
from .layers.activations import ACTIVATIONS
from .limits import MAX_CHANNELS, MAX_REPEATS

NUM_CLASSES = "num_classes"  # placeholder a channels field may hold: the model's class count


def _field(kind: str, doc: str, default: Any = MISSING, **opts: Any) -> Any:
    meta = {"kind": kind, "doc": doc, **opts}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


def channels(doc: str, default: Any = MISSING, *, classes: bool = False) -> Any:
    """A positive channel count, width-scaled by the expander (``classes``: may say ``num_classes``)."""
    return _field("channels", doc, default, classes=classes)


def repeats(doc: str = "number of repeats of the block (n)", default: Any = 1) -> Any:
    """A positive repeat count, depth-scaled by the expander."""
    return _field("repeats", doc, default)


def stride(doc: str = "stride of the first block (s)", default: Any = 1, choices: Sequence[int] = (1, 2)) -> Any:
    """A stride from ``choices`` (1 or 2 for blocks; plain layers may allow more)."""
    return _field("stride", doc, default, choices=tuple(choices))


def kernel(doc: str = "kernel size (k)", default: Any = MISSING, *, odd: bool = True) -> Any:
    """A positive kernel size; odd for convolutions so that padding k // 2 keeps the size."""
    return _field("kernel", doc, default, odd=odd)


def integer(doc: str, default: Any = MISSING, *, minimum: int = 1) -> Any:
    """An integer >= ``minimum``."""
    return _field("integer", doc, default, minimum=minimum)


def number(doc: str, default: Any = MISSING, *, low: float = 0.0, high: float = 1.0, low_open: bool = True) -> Any:
    """A real number in (low, high] (or [low, high] when ``low_open`` is False)."""
    return _field("number", doc, default, low=low, high=high, low_open=low_open)


def se(doc: str, default: Any = 0.0, *, on: float = 0.25) -> Any:
    """Squeeze-and-excitation: false/0 (off), true (ratio ``on``, the paper's) or a ratio in (0, 1]."""
    return _field("se", doc, default, on=on)


def activation(doc: str = "nonlinearity (NL)", default: Any = MISSING, *, optional: bool = False) -> Any:
    """An activation name from ``archgen.ACTIVATIONS`` (aliases such as RE and HS allowed)."""
    return _field("activation", doc, default, optional=optional)


def flag(doc: str, default: Any = False) -> Any:
    """A boolean switch."""
    return _field("flag", doc, default)


def choice(doc: str, choices: Sequence[str], default: Any = MISSING) -> Any:
    """One of a fixed set of strings."""
    return _field("choice", doc, default, choices=tuple(choices))


def kind_of(row_cls: type, name: str) -> str:
    """The kind of field ``name`` of a row dataclass."""
    return {f.name: f.metadata.get("kind", "") for f in dataclasses.fields(row_cls)}[name]


def describe(row_cls: type) -> list[tuple[str, str, str]]:
    """(name, kind, doc) of each field of a row dataclass, for docs and messages."""
    return [(f.name, f.metadata.get("kind", ""), f.metadata.get("doc", "")) for f in dataclasses.fields(row_cls)]


Refusal = Callable[[str], SpecError]  # what a field must be -> the error that says so
Validator = Callable[[dataclasses.Field, Any, Refusal], Any]  # (field, value, refuse) -> normalised value


def _unset_allowed(check: Validator) -> Validator:
    """``check``, but a field whose default is None also takes None: the row leaves the value
    to the block type (a conv's ``c`` where its ``t`` gives the channels, a padding of k // 2)."""

    def checked(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
        return value if value is None and f.default is None else check(f, value, refuse)

    return checked


def _channels(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if f.metadata.get("classes") and value == NUM_CLASSES:
        return value
    if not is_int(value) or not 1 <= value <= MAX_CHANNELS:
        extra = " or 'num_classes'" if f.metadata.get("classes") else ""
        raise refuse(f"an integer in [1, {MAX_CHANNELS}] (channels){extra}")
    return value


def _repeats(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if not is_int(value) or not 1 <= value <= MAX_REPEATS:
        raise refuse(f"an integer in [1, {MAX_REPEATS}] (repeats)")
    return value


def _integer(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    minimum = f.metadata.get("minimum", 1)
    if not is_int(value) or value < minimum:
        raise refuse(f"an integer >= {minimum}")
    return value


def _stride(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    choices = f.metadata["choices"]
    if not is_int(value) or value not in choices:
        raise refuse(" or ".join(map(str, choices)) + " (stride)")
    return value


def _kernel(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    odd = f.metadata.get("odd")
    if not is_int(value) or value < 1 or (odd and value % 2 == 0):
        raise refuse("an odd positive integer (kernel size)" if odd else "a positive integer (kernel size)")
    return value


def _number(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    low, high, low_open = f.metadata["low"], f.metadata["high"], f.metadata["low_open"]
    if not is_real(value) or not ((low < value) if low_open else (low <= value)) or value > high:
        raise refuse(f"a number in {'(' if low_open else '['}{low}, {high}]")
    return float(value)


def _se(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if value is True:
        return float(f.metadata["on"])  # the paper's ratio
    if value is False or value is None or (is_real(value) and value == 0):
        return 0.0
    if not is_real(value) or not 0 < value <= 1:
        raise refuse("true, false or a ratio in (0, 1] (squeeze-and-excitation)")
    return float(value)


def _activation(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if value is None or value == "none":
        if f.metadata.get("optional"):
            return None
        raise refuse(f"an activation ({', '.join(ACTIVATIONS.names())})")
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise refuse(f"an activation: one of {', '.join(ACTIVATIONS.names())} (or RE, HS, RE6)")
    return ACTIVATIONS.canonical(value)


def _flag(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if not isinstance(value, bool):
        raise refuse("true or false")
    return value


def _choice(f: dataclasses.Field, value: Any, refuse: Refusal) -> Any:
    if value not in f.metadata["choices"]:
        raise refuse("one of " + ", ".join(f.metadata["choices"]))
    return value


# field kind (as the helpers above record it) -> its check
VALIDATORS: Mapping[str, Validator] = {
    "channels": _unset_allowed(_channels),
    "repeats": _unset_allowed(_repeats),
    "integer": _unset_allowed(_integer),
    "stride": _stride,
    "kernel": _unset_allowed(_kernel),
    "number": _unset_allowed(_number),
    "se": _se,
    "activation": _activation,
    "flag": _flag,
    "choice": _choice,
}


def check_value(f: dataclasses.Field, value: Any, where: str) -> Any:
    """Validate one field value against its kind; return the normalised value. A field made
    without the helpers above has no kind and takes any value."""
    check = VALIDATORS.get(f.metadata.get("kind", ""))
    if check is None:
        return value

    def refuse(expected: str) -> SpecError:
        return SpecError(f"{where}: field {f.name!r} must be {expected}, got {value!r}")

    return check(f, value, refuse)


def parse_row(
    row_cls: type,
    raw: Any,
    columns: Sequence[str] | None,
    defaults: Mapping[str, Any],
    where: str,
    ignore: Sequence[str] = ("type",),
) -> Any:
    """Check a raw YAML row (a list read against ``columns``, or a mapping) and build ``row_cls``.

    ``defaults`` fill fields the row leaves out; keys in ``ignore`` are consumed elsewhere.
    """
    fields = {f.name: f for f in dataclasses.fields(row_cls)}
    if isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        if not columns:
            raise SpecError(f"{where}: a list row needs the table's 'columns'; write the row as a mapping instead")
        if len(raw) != len(columns):
            raise SpecError(
                f"{where}: row has {len(raw)} values but the table has {len(columns)} columns [{', '.join(columns)}]"
            )
        values = dict(zip(columns, raw))
    elif isinstance(raw, Mapping):
        values = dict(raw)
    else:
        raise SpecError(f"{where}: a row must be a list (read against 'columns') or a mapping, got {raw!r}")
    for key in ignore:
        values.pop(key, None)
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; this row type has: {', '.join(fields)}")
    merged = {k: v for k, v in defaults.items() if k in fields and k not in ignore}
    merged.update(values)
    missing = [n for n, f in fields.items() if n not in merged and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r} ({fields[missing[0]].metadata.get('doc', '')})")
    checked = {k: check_value(fields[k], v, where) for k, v in merged.items()}
    return row_cls(**checked)
