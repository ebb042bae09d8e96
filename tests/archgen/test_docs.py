"""The README's spec-format section documents every block type and every row field: a user
writing a spec from the README alone must find each name there."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import archgen
from archgen.spec import row_schema

README = Path(__file__).resolve().parents[2] / "README.md"


def _spec_format_section() -> str:
    text = README.read_text()
    start = text.index("\n## The spec format")
    return text[start:text.index("\n## ", start + 1)]


def _documented_names() -> set[str]:
    """Every name written as code in the section: `name`, `name: value`, and list items of [a, b]."""
    section, names = _spec_format_section(), set()
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    for code in re.findall(r"`([^`]+)`", prose):
        names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        names.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*):", block))
        for cols in re.findall(r"columns: \[([^\]]*)\]", block):
            names.update(c.strip() for c in cols.split(","))
    return names


@pytest.mark.parametrize("type_name", archgen.BLOCKS.names())
def test_every_block_type_and_row_field_is_in_the_readme(type_name):
    documented = _documented_names()
    assert type_name in documented, f"block type {type_name!r} is not in the README's spec-format section"
    fields = [f.name for f in dataclasses.fields(row_schema(archgen.BLOCKS.get(type_name)))]
    missing = [f for f in fields if f not in documented]
    assert not missing, f"{type_name!r} rows' fields {missing} are not in the README's spec-format section"
