"""The package's layers, read from its own import statements: a forbidden edge or a circle fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rare_hf

ROOT = Path(rare_hf.__file__).parent

# Which layer each may import from (besides itself, errors and utils, which everything may use).
ALLOWED = {
    "utils": set(),
    "errors": set(),
    "text": set(),
    "teacher": {"text"},
    "retrieval": {"text"},
    "demo": {"text"},
    "testing": {"text", "demo"},
    "steps": {"teacher", "retrieval", "text"},
    "io": {"steps", "teacher", "retrieval", "text", "demo"},  # the card marks data the demo teacher wrote
}
# Third-party packages a layer must not load, even lazily. The teacher may use numpy: embeddings are arrays
# (only rare_hf.teacher.embedder imports it; the chat client stays free of it).
FORBIDDEN_PACKAGES = {
    "teacher": {"datasets", "bm25s", "pyarrow"},
    "retrieval": {"openai", "aiohttp"},
    "text": {"openai", "datasets", "bm25s"},
    "testing": {"openai", "datasets"},
}
# Top-level modules that join the layers (the CLI, Ray, the DataFlow operators) and the kept-importable names.
TOP = {"cli", "ray", "dataflow", "hub", "prompts", "answers", "parsing", "__init__"}


def _layer(path: Path) -> str:
    part = path.relative_to(ROOT).parts[0]
    return part.removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in a file, function-level ones included."""
    package = ".".join(("rare_hf", *path.relative_to(ROOT).parent.parts))
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                if not node.module:  # from . import x: each name may be a module
                    found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(importing layer, imported layer or package, where) for every import of the package."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        source = _layer(path)
        for module, line in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line} imports {module}"
            parts = module.split(".")
            if parts[0] == "rare_hf" and len(parts) > 1:
                edges.append((source, parts[1], where))
            elif parts[0] != "rare_hf":
                edges.append((source, f"package:{parts[0]}", where))
    return edges


def test_every_layer_imports_only_what_it_may() -> None:
    wrong = []
    for source, target, where in _edges():
        if source in TOP or source == target or target in ("errors", "utils", "__init__", "__version__"):
            continue
        if target.startswith("package:"):
            if target.removeprefix("package:") in FORBIDDEN_PACKAGES.get(source, set()):
                wrong.append(where)
        elif target not in ALLOWED.get(source, set()):
            wrong.append(where)
    assert wrong == []


def test_the_layers_have_no_circle() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in _edges():
        if source != target and not target.startswith("package:") and source not in TOP and target not in TOP:
            graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert [layer for layer in graph if reaches(layer, layer, set())] == []


@pytest.mark.parametrize("module", ["rare_hf.retrieval.bm25", "rare_hf.text.answers", "rare_hf.teacher.client"])
def test_a_layer_loads_without_the_layers_above_it(module: str) -> None:
    """In a fresh interpreter: mining needs no LLM client, text needs nothing, the teacher no ``datasets``."""
    import subprocess
    import sys

    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'datasets', 'bm25s', 'numpy'}), "
        "sorted({m.split('.')[1] for m in sys.modules if m.startswith('rare_hf.') and m.count('.') >= 1}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    packages, layers = out.strip().split("] [")
    expected = {
        "rare_hf.retrieval.bm25": ("['bm25s', 'datasets', 'numpy'", {"retrieval", "utils", "text"}),
        "rare_hf.text.answers": ("[", {"text"}),
        "rare_hf.teacher.client": ("['openai'", {"teacher", "text", "errors"}),
    }[module]
    assert packages == expected[0]
    assert {name.strip("'[] ") for name in layers.split(",")} - {""} <= expected[1]


def test_no_module_is_over_400_lines_and_no_function_over_80() -> None:
    long_modules, long_functions = {}, {}
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        if (lines := len(text.splitlines())) > 400:
            long_modules[str(path.relative_to(ROOT))] = lines
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body  # the docstring (Args, Returns, Example) does not count
                has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
                start = body[1].lineno if has_doc else body[0].lineno
                if node.end_lineno - start + 1 > 80:
                    long_functions[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - start + 1
    assert (long_modules, long_functions) == ({}, {})
