"""The house's rules that import-linter cannot say by itself, checked on the real import graph.

import-linter (run by `make test` as `lint-imports`) keeps the layers and the forbidden imports;
these tests add what its contracts cannot express: every module of tfopt is placed in the layers,
the runtime that travels to devices imports from an allow-list (a new module or library cannot
slip past a hand-kept list of forbidden ones), and the house's size limits hold.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the runtime may import: the standard library, numpy, LiteRT, LiteRT-LM and itself.
RUNTIME_ALLOWED = {"numpy", "ai_edge_litert", "litert_lm", "tfopt.runtime"}
GENERATED = {"tfopt/metadata/schema_generated.py"}  # flatc's output, not written by hand
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 8


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("tfopt", "converters", include_external_packages=True)


def _contracts() -> list[dict]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return doc["tool"]["importlinter"]["contracts"]


def _layer_names() -> set[str]:
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    names = (n.strip().strip("()") for layer in layers for n in layer.replace("|", ":").split(":"))
    return set(names)


def test_every_module_is_placed_in_the_layers(graph: grimp.ImportGraph) -> None:
    placed = _layer_names()
    ours = {m for m in graph.modules if m.split(".")[0] in ("tfopt", "converters")}
    unplaced = sorted(
        m for m in ours - {"tfopt", "converters"}
        # a package is placed by its modules (tfopt.lm by tfopt.lm.report, ...)
        if not any(m == p or m.startswith(p + ".") or p.startswith(m + ".") for p in placed)
    )
    assert not unplaced, f"modules in no layer of pyproject.toml's layers contract: {unplaced}"


def test_the_runtime_imports_only_the_allow_list(graph: grimp.ImportGraph) -> None:
    runtime = {"tfopt.runtime"} | graph.find_descendants("tfopt.runtime")
    outside = set()
    for module in runtime:
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            allowed = top in sys.stdlib_module_names or top in RUNTIME_ALLOWED or any(
                imported == a or imported.startswith(a + ".") for a in RUNTIME_ALLOWED
            )
            if not allowed:
                outside.add(f"{module} -> {imported}")
    assert not outside, f"the runtime imports beyond stdlib, numpy and LiteRT: {sorted(outside)}"


def _sources() -> list[Path]:
    files = sorted((ROOT / "tfopt").rglob("*.py")) + sorted((ROOT / "converters").rglob("*.py"))
    return [p for p in files if str(p.relative_to(ROOT)) not in GENERATED]


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _sources()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long_or_too_wide() -> None:
    bad = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
            if params and params[0].arg in ("self", "cls"):
                params = params[1:]
            lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if lines > MAX_FUNCTION_LINES or len(params) > MAX_PARAMETERS:
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                bad.append(f"{where} ({lines} lines, {len(params)} parameters)")
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines or {MAX_PARAMETERS} parameters: {bad}"


def test_package_inits_only_re_export() -> None:
    """A package's `__init__.py` holds its docstring, imports and `__all__`, not logic."""
    heavy = []
    for path in (ROOT / "tfopt").rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        logic = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        if path.parent == ROOT / "tfopt":  # the facade: lazy names through module __getattr__
            logic = [n for n in logic if n.name not in ("__getattr__", "__dir__")]
        if logic:
            heavy.append(f"{path.relative_to(ROOT)}: {', '.join(n.name for n in logic)}")
    assert not heavy, f"package __init__ files with logic: {heavy}"


LIBRARY_EXEMPT = ("tfopt/cli.py", "tfopt/commands/", "tfopt/runtime/")  # the CLIs name their flags


def test_library_errors_name_no_cli_flag() -> None:
    """A library error names a parameter with `errors.option()`; the CLI renders its flag."""
    import re

    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    found = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        if rel.startswith(LIBRARY_EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    if flag.search(part.value):
                        found.append(f"{rel}:{node.lineno} {part.value!r}")
    assert not found, f"library errors naming CLI flags (use errors.option): {found}"
