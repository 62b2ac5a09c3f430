"""The import graph of the library and the service, read from the source (nothing is imported).

- No cycles through module-level imports (imports under ``if TYPE_CHECKING:`` are left out: they never run).
- The validation pass and the CLI have no cycle even counting the imports inside functions.
- ``smartcash_core`` imports neither the service nor FastAPI, anywhere.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smartcash_core", "service")
Graph = dict[str, set[str]]


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages (a package is its ``__init__``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _children(node: ast.AST, lazy: bool) -> Iterator[ast.AST]:
    """Statements whose imports run when the module is imported (all statements with ``lazy``)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from child.orelse
        elif lazy or not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child


def imported_names(tree: ast.AST, module: str, is_package: bool, lazy: bool) -> Iterator[str]:
    """Every dotted name an import statement asks for (``from a import b`` gives ``a.b``)."""
    pending = list(_children(tree, lazy))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield from (f"{base}.{alias.name}" for alias in node.names)
        else:
            pending.extend(_children(node, lazy))


def import_graph(modules: Mapping[str, Path], lazy: bool = False) -> Graph:
    """Module -> the project modules it imports (a name resolves to its longest known module prefix)."""
    graph: Graph = {}
    for module, path in modules.items():
        targets = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in imported_names(tree, module, path.name == "__init__.py", lazy):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def external_imports(modules: Mapping[str, Path], package: str) -> dict[str, set[str]]:
    """Module of ``package`` -> top-level names it imports anywhere (functions included)."""
    found = {}
    for module, path in modules.items():
        if module == package or module.startswith(package + "."):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = imported_names(tree, module, path.name == "__init__.py", lazy=True)
            found[module] = {name.split(".")[0] for name in names}
    return found


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return module_files(ROOT, PACKAGES)


def test_no_import_cycles(modules: dict[str, Path]) -> None:
    graph = import_graph(modules)
    assert len(graph) > 50 and graph["smartcash_core.validation.runner"]  # the real tree was read
    assert cycles(graph) == []


def test_validation_and_cli_have_no_cycle_even_through_function_imports(modules: dict[str, Path]) -> None:
    mine = ("smartcash_core.validation", "smartcash_core.cli")
    involved = [cycle for cycle in cycles(import_graph(modules, lazy=True))
                if any(member.startswith(mine) for member in cycle)]
    assert involved == []


def test_the_library_never_imports_the_service_or_fastapi(modules: dict[str, Path]) -> None:
    imports = external_imports(modules, "smartcash_core")
    assert "smartcash_core.validation.runner" in imports
    offenders = {module: names & {"service", "fastapi", "starlette"} for module, names in imports.items()}
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_checker_finds_a_cycle_behind_from_imports_and_ignores_type_checking(tmp_path: Path) -> None:
    """The checks above are only as good as this reader: a cycle through ``from . import`` and a package
    ``__init__`` is found; one that closes only under TYPE_CHECKING or inside a function is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.a import thing\n")
    (package / "a.py").write_text("from . import b\nthing = 1\n")
    (package / "b.py").write_text("import pkg\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n")
    (package / "d.py").write_text("def f():\n    import pkg.c\n")
    modules = module_files(tmp_path, ("pkg",))
    assert cycles(import_graph(modules)) == [["pkg", "pkg.a", "pkg.b"]]
    assert ["pkg.c", "pkg.d"] not in cycles(import_graph(modules, lazy=True))  # TYPE_CHECKING never runs
    (package / "c.py").write_text("import pkg.d\n")
    assert ["pkg.c", "pkg.d"] in cycles(import_graph(modules, lazy=True))
    assert ["pkg.c", "pkg.d"] not in cycles(import_graph(modules))
