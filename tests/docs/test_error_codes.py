"""Every error code the API can answer is snake_case and listed in docs/API.md's error table (issue 13).

The codes are collected from the service's source, not from a list kept beside it: ``code = "..."`` on
error classes and assignments, ``{"code": "..."}`` bodies, ``error_body(...)`` calls, and the library error
mapping. The table in docs/API.md ("## Error codes") must list exactly those.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from service.errors import SmartCashError, library_error_status

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
API_DOC = ROOT / "docs" / "API.md"
CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _constants(node: ast.AST) -> set[str]:
    return {
        child.value
        for child in ast.walk(node)
        if isinstance(child, ast.Constant) and isinstance(child.value, str) and CODE.fullmatch(child.value)
    }


def _assigned(node: ast.AST) -> tuple[set[str], ast.AST | None]:
    """Names an assignment binds (plain or annotated) and the value it binds them to."""
    if isinstance(node, ast.Assign):
        return {target.id for target in node.targets if isinstance(target, ast.Name)}, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}, node.value
    return set(), None


def _codes_in(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names, value = _assigned(node)
        if "code" in names and value is not None:  # class attributes and handler variables
            found |= _constants(value)
        elif "_LIBRARY_ERRORS" in names and value is not None:  # (error class, status, code, fix) rows
            rows = [row for row in ast.walk(value) if isinstance(row, ast.Tuple) and len(row.elts) == 4]
            found |= {code for row in rows for code in _constants(row.elts[2])}
        elif isinstance(node, ast.Dict):  # {"code": ...} bodies written directly
            for key, item in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    found |= _constants(item)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "error_body":
            found |= {code for arg in node.args for code in _constants(arg)}
    return found


def api_error_codes() -> set[str]:
    codes: set[str] = set()
    for path in sorted(SERVICE.rglob("*.py")):
        codes |= _codes_in(ast.parse(path.read_text(encoding="utf-8")))
    codes.add(library_error_status(SmartCashError("an error no mapping names"))[1])
    return codes


def documented_codes() -> set[str]:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_the_walk_finds_the_codes_of_every_kind_of_source() -> None:
    codes = api_error_codes()
    # a class attribute, a handler's literal, a library mapping, a job body, the dataset codes
    kinds = {"path_rejected", "invalid_request", "bad_checkpoint", "interrupted", "dataset_split_missing"}
    assert kinds <= codes
    assert "library_error" in codes and len(codes) > 25


def test_every_error_code_is_snake_case_and_documented() -> None:
    codes, documented = api_error_codes(), documented_codes()
    assert all(CODE.fullmatch(code) for code in codes), sorted(codes)
    assert not codes - documented, f"undocumented codes: {sorted(codes - documented)}"
    assert not documented - codes, f"documented codes the API never sends: {sorted(documented - codes)}"
