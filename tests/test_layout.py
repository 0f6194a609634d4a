"""The package's layers (src/momentum_ssl/__init__.py): every module imports, no import circle
inside the package, and imports point one way, from the entry points down to the plumbing.

The import graph is read from the source (every ``import`` and ``from ... import`` anywhere in a
module, the ones inside functions included, since those are circles that only a late call
would reveal), so the test needs no GPU and imports nothing but the package itself."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PACKAGE = "momentum_ssl"

# Top to bottom. A module may import from a lower layer, and from its own group (the same
# package) except within stages: no stage imports another, what two share lives below them.
# config sits between the core's method files, whose settings it collects (core/methods), and
# everything that reads params (config/__init__.py says why).
LAYERS = [("entry",), ("stages",), ("analysis",), ("core", "data"), ("config",),
          ("core.methods",), ("core.models",), ("plumbing",)]
RANK = {group: len(LAYERS) - i for i, groups in enumerate(LAYERS) for group in groups}
NO_IMPORTS_WITHIN = {"stages"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c of a package: its module
                target = target.rpartition(".")[0]
            if target.split(".")[0] == PACKAGE and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def group(name: str) -> str:
    parts = name.split(".")[1:]
    if not parts or parts[0] in ("cli", "__main__", "workflow", "study", "fingerprint"):
        return "entry"
    if parts[0] == "core" and len(parts) > 1 and parts[1] in ("methods", "models"):
        return f"core.{parts[1]}"
    return parts[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (Tarjan's strongly connected components with more than one module)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_relative_function_level_and_absolute_imports():
    edges = graph()
    # function-level: the CLI imports each stage only when its command runs
    assert "momentum_ssl.stages.pretrain" in edges["momentum_ssl.cli"]
    # two dots, from a subpackage of a subpackage
    assert "momentum_ssl.plumbing.distributed" in edges["momentum_ssl.core.methods.simclr"]
    # ``from .x import name`` inside a package's __init__
    assert "momentum_ssl.core.methods.byol" in edges["momentum_ssl.core.methods"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_inside_the_package():
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_layers():
    wrong = []
    for source, targets in graph().items():
        for target in targets:
            a, b = group(source), group(target)
            if a == b and a not in NO_IMPORTS_WITHIN:
                continue
            if RANK[a] <= RANK[b]:
                wrong.append(f"{source} ({a}) imports {target} ({b})")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_belongs_to_a_layer_and_every_package_says_what_belongs_there():
    for name, path in modules().items():
        assert group(name) in RANK, f"{name} is in no layer of LAYERS"
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no docstring"


def test_the_layers_cover_the_package():
    """Each layer of LAYERS has modules: a renamed folder fails here, not silently."""
    groups = {group(name) for name in modules()}
    assert groups == set(RANK)


def test_every_module_imports_in_a_fresh_interpreter():
    """Import every module, in order of name, in one new process: an import-time circle (or a
    name moved without its importers) fails here with the module's name."""
    names = [n for n in modules() if not n.endswith("__main__")]  # __main__ runs the CLI
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as err:\n"
            "        sys.exit(f'{name}: {type(err).__name__}: {err}')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
