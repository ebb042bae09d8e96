"""The shape of the code: archgen's and search's modules import each other without a circle, none
imports a command's ``__main__``, the cost package holds no command, and no function runs past
80 lines. Read from the source (every import, those inside functions included), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("archgen", "search")
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs: at the top, in functions and in branches, but not under
    ``if TYPE_CHECKING:``, which only type checkers read."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import statement of module ``name`` loads (a name imported from a
    package is that package's submodule when there is one, else the package itself)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if node.level:
        package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in MODULES:
            out.add(sub)
        elif base in MODULES:
            out.add(base)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own parents, which Python loads
    first whatever the import, are not edges)."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {t for node in _imports(tree) for t in _targets(name, node) if t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_graph_sees_the_imports_it_must():
    """The walk itself: relative, absolute, in-function and submodule imports are all edges."""
    graph = import_graph()
    assert "archgen.spec" in graph["archgen.builder"]  # from .spec import ModelSpec
    assert "search.pipeline" in graph["search.__main__"]  # from .pipeline import run
    assert "archgen.errors" in graph["search.evaluators.base"] or "archgen" in graph["search.evaluators.base"]
    assert "archgen.rows" in graph["archgen.blocks.mobilenet"]  # from .. import rows


def test_no_module_imports_in_a_circle():
    assert cycles(import_graph()) == []


def test_a_circle_would_be_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_command_main():
    graph = import_graph()
    offenders = {m: sorted(t for t in targets if t.endswith("__main__")) for m, targets in graph.items()}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_the_cost_package_is_library_only():
    """archgen.cost holds counts, latency, backends, the lookup table and memory; the commands that
    use them (and the search space they time) live outside it."""
    graph = import_graph()
    commands = {"archgen.space", "archgen.target", "archgen.validate", "archgen.benchmark", "archgen.cli",
                "archgen.__main__"}
    cost = {m: sorted(graph[m] & commands) for m in graph if m.startswith("archgen.cost")}
    assert {m: t for m, t in cost.items() if t} == {}
    assert not any(MODULES[m].read_text().count('if __name__ == "__main__"') for m in graph if m.startswith("archgen.cost"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_is_over_80_lines(name):
    path = MODULES[name]
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines, line {f.lineno})"
            for f in _functions(ast.parse(path.read_text())) if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{path.relative_to(REPO)}: split {', '.join(long)}"
