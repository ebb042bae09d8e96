"""A small name -> object registry (after fvcore's ``Registry``).

Contract: a name maps to exactly one object; registering a taken name is an error, and
looking up an unknown name is an error that lists the known names. Specs only ever name
registry entries, never import paths, so a spec file cannot run code.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (as written in specs) to objects of one kind."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # the end of an unknown name's message: how to add an entry
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` this is a decorator."""

        def add(o: T) -> T:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"An entry is already registered under the {self.kind} name {key!r}")
            self._entries[name] = o
            for alias in aliases:
                self._aliases[alias] = name
            return o

        return add if obj is None else add(obj)

    def decorator(self, name: str, wrong: Callable[[Any], str | None], attr: str,
                  aliases: tuple[str, ...] = ()) -> Callable[[Any], Any]:
        """A class decorator that registers the class under ``name`` and records the name on it as
        ``attr``; ``wrong(cls)`` says what is wrong with a class that does not meet the registry's
        contract (a ``TypeError``: a programming error), or None."""

        def add(cls: Any) -> Any:
            problem = wrong(cls)
            if problem is not None:
                raise TypeError(problem)
            self.register(name, cls, aliases=aliases)
            setattr(cls, attr, name)
            return cls

        return add

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        if isinstance(name, str):  # a YAML list or mapping is an unknown name, not a TypeError
            if name in self._entries:
                return name
            if name in self._aliases:
                return self._aliases[name]
        known = ", ".join(self.names())
        raise SpecError(f"unknown {self.kind} {name!r}; known: {known}{self.hint}")

    def get(self, name: str) -> T:
        """The object registered under ``name`` (or an alias); unknown names list the choices."""
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (aliases not included)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
