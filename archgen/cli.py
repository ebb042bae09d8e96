"""What archgen's command-line apps share: one-line errors with exit status 2, a check of
config-group choices made before Hydra sees them (Hydra's own message is a traceback-sized
block), and settings dataclasses read from config sections."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Mapping, NoReturn, Sequence, TypeVar

from .errors import SpecError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)
T = TypeVar("T")


def fail(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` on stderr and exit with status 2 (bad input)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def run_app(prog: str, body: Callable[[], T], interrupted: str) -> T:
    """Run a command's ``body``: bad input is one line and exit 2, Ctrl-C one line (``prog: interrupted;
    <interrupted>``) and exit 130, after whatever the body saved."""
    try:
        return body()
    except SpecError as e:
        fail(prog, str(e))
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def check_choices(prog: str, argv: Sequence[str], key: str, known: Sequence[str], hint: str = "") -> None:
    """Reject ``key=<unknown>`` (also inside sweeps ``key=a,b``) listing the known values, exit 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # a malformed override: Hydra reports it with its own message
        return
    for o in overrides:
        if o.key_or_group != key or o.package is not None:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for v in values:
            if v not in known:
                fail(prog, f"unknown {key} {v!r}; known: {', '.join(known)}{hint}")


def load_settings(cls: type[T], section: str, values: Mapping[str, Any]) -> T:
    """A settings dataclass from a config section; an unknown key is an error listing the known ones."""
    known = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = [k for k in values if k not in known]
    if unknown:
        raise SpecError(f"unknown setting {section}.{unknown[0]}; {section} has: {', '.join(known)}")
    return cls(**values)
