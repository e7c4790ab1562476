"""The shape of `sandbox/`: no import cycles (lazy imports included), stages apart from the runner.

An import cycle hidden behind a function-level import still ties two modules together; a stage
that imports the runner could not be read or tested on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "sandbox"


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = ("opsmerge_sandbox", *f.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """Modules of `sandbox` this file imports at run time (anywhere, but not for type checking)."""
    found: set[str] = set()

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = typing_only or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.ImportFrom) and child.module and not guarded:
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.add(sub if sub in known else child.module)
            elif isinstance(child, ast.Import) and not guarded:
                found.update(a.name for a in child.names)
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return found & known


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_sandbox_has_no_import_cycles_not_even_behind_lazy_imports() -> None:
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_stage_imports_the_runner() -> None:
    modules = _modules()
    importers = [
        name
        for name, path in modules.items()
        if "opsmerge_sandbox.pipeline.runner" in _imports(path, set(modules))
        and name != "opsmerge_sandbox.app"
    ]
    assert importers == []


def test_the_stage_order_lives_in_one_module() -> None:
    stages = (ROOT / "pipeline" / "stages.py").read_text()
    order = [
        "parse_headers",
        "Authenticate(",
        "ResolveWorkspace(",
        "RateLimit(",
        "Authorize(",
        "Sunset(",
        "Faults(",
        "ReadRequest(",
        "Handle(",
        "Envelope(",
        "StrictCheck(",
        "Commit(",
        "respond,",
        "RecordExchange(",
    ]
    body = stages[stages.index("def build_stages") :]
    positions = [body.index(step) for step in order]
    assert positions == sorted(positions)
    runner = (ROOT / "pipeline" / "runner.py").read_text()
    assert not any(step.rstrip("(,") in runner for step in order)


def test_every_package_in_the_tree_is_one_the_distribution_installs() -> None:
    """The distribution lists its packages by hand (import names differ from folder names): a
    folder left out installs without its modules, and an installed sandbox fails at import."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: root / where for name, where in config["package-dir"].items()}
    in_tree = {
        ".".join([name, *init.parent.relative_to(folder).parts])
        for name, folder in folders.items()
        for init in folder.rglob("__init__.py")
    }
    data_only = {  # folders of data files the distribution ships as packages too
        ".".join([name, *d.relative_to(folder).parts])
        for name, folder in folders.items()
        for d in folder.rglob("*")
        if d.is_dir() and "__pycache__" not in d.parts and not (d / "__init__.py").exists()
        and any(d.glob("*.yaml"))
    }
    assert in_tree - set(config["packages"]) == set()
    assert set(config["packages"]) - in_tree - data_only == set()
