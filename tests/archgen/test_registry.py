"""The name -> object registry that block types, activations, strategies and evaluators are looked up in."""

from __future__ import annotations

import re

import pytest

import archgen
from archgen.registry import Registry


@pytest.fixture
def reg() -> Registry[object]:
    r: Registry[object] = Registry("widget", hint="; register one with widgets.register")
    r.register("b", "B")
    r.register("a", "A", aliases=("alpha", "first"))
    return r


def test_an_entry_is_found_by_its_name_or_an_alias(reg):
    assert reg.get("a") == reg.get("alpha") == reg.get("first") == "A"
    assert reg.get("b") == "B"
    assert [reg.canonical(n) for n in ("a", "alpha", "first", "b")] == ["a", "a", "a", "b"]


def test_names_are_the_registered_names_sorted_without_aliases(reg):
    assert reg.names() == list(reg) == ["a", "b"]


def test_the_decorator_form_registers_and_returns_the_object(reg):
    @reg.register("c", aliases=("gamma",))
    def make() -> str:
        return "C"

    assert make() == "C"  # the function itself, not a wrapper
    assert reg.get("c") is make and reg.get("gamma") is make
    assert reg.register("d", "D") == "D"


@pytest.mark.parametrize(
    "name, aliases, taken",
    [("a", (), "a"), ("alpha", (), "alpha"), ("c", ("b",), "b"), ("c", ("first",), "first"), ("c", ("d", "a"), "a")],
    ids=["name_taken", "name_is_an_alias", "alias_is_a_name", "alias_taken", "second_alias_taken"],
)
def test_a_taken_name_or_alias_is_a_value_error_and_registers_nothing(reg, name, aliases, taken):
    with pytest.raises(ValueError, match=re.escape(f"An entry is already registered under the widget name {taken!r}")):
        reg.register(name, "X", aliases=aliases)
    assert reg.names() == ["a", "b"]
    assert all(a not in reg or reg.get(a) != "X" for a in (name, *aliases))


@pytest.mark.parametrize("name", ["zeta", "A", "", ["a"], 3, None])
def test_an_unknown_name_is_a_spec_error_listing_the_names_and_the_hint(reg, name):
    message = f"unknown widget {name!r}; known: a, b; register one with widgets.register"
    with pytest.raises(archgen.SpecError) as err:
        reg.get(name)
    assert str(err.value) == message
    with pytest.raises(archgen.SpecError) as err:
        reg.canonical(name)
    assert str(err.value) == message


def test_contains_is_false_for_what_is_not_a_registered_string(reg):
    assert "a" in reg and "alpha" in reg and "b" in reg
    assert "zeta" not in reg and "A" not in reg
    assert ["a"] not in reg and {"a": 1} not in reg and 3 not in reg and None not in reg


def test_an_unknown_name_without_a_hint_ends_with_the_names():
    r: Registry[int] = Registry("thing")
    r.register("one", 1)
    with pytest.raises(archgen.SpecError) as err:
        r.get("two")
    assert str(err.value) == "unknown thing 'two'; known: one"


def test_the_class_decorator_registers_what_its_check_accepts_and_names_it():
    r: Registry[type] = Registry("gadget")

    def wrong(cls: object) -> str | None:
        return None if isinstance(cls, type) and hasattr(cls, "ok") else "a gadget needs ok"

    @r.decorator("g", wrong, "label", aliases=("gee",))
    class Gadget:
        ok = True

    assert r.get("gee") is Gadget and Gadget.label == "g"
    with pytest.raises(TypeError, match="^a gadget needs ok$"):
        r.decorator("h", wrong, "label")(type("Bare", (), {}))
    assert "h" not in r  # refused before it was registered
