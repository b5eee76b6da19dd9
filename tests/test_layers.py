"""The package's layering, read from the source: every ``import`` (top-level or inside a
function -- a lazy import hides a circle, it does not remove it) goes down or sideways
within its layer, never up, and no two modules import each other in a circle.

    base (errors, config)
      <- cells <- recurrence <- models           the library
      <- tasks                                   tasks and data: never the library
      <- run                                     one run: library + tasks
      <- tools, seqlab_bench                     many runs, the command line, benchmarks
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = {"cells", "recurrence", "models"}
ALLOWED = {
    "base": {"base"},
    "cells": {"base", "cells"},
    "recurrence": {"base", "cells", "recurrence"},
    "models": {"base", *LIBRARY},
    "sample": {"base", *LIBRARY},  # seqlab.sample: the old import path of models.generate
    "tasks": {"base", "tasks"},
    "run": {"base", *LIBRARY, "tasks", "run"},
    "tools": {"base", *LIBRARY, "tasks", "run", "tools", "bench"},
    "bench": {"base", *LIBRARY, "tasks", "run", "bench"},
}
FACADE = {"seqlab", "seqlab.__main__"}  # the public entry points re-export from every layer


def layer(module: str) -> str:
    if module.startswith("seqlab_bench"):
        return "bench"
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "config"):
        return "base"
    return "tools" if parts[1] == "__main__" else parts[1]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in ("seqlab", "seqlab_bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ("seqlab", "seqlab_bench")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module an imported dotted name lives in (``from a.b import C`` -> ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        m: {r for i in imports_of(p) if (r := resolve(i, known)) and r != m}
        for m, p in known.items()
    }


def test_every_module_has_a_layer() -> None:
    assert {layer(m) for m in graph()} <= set(ALLOWED)


def test_no_import_goes_up() -> None:
    upward = [
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in graph().items()
        if m not in FACADE
        for d in deps
        if layer(d) not in ALLOWED[layer(m)]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    g = graph()
    pkg = lambda m: m.rpartition(".")[0]  # a package's __init__ re-exporting its children
    edges = {m: {d for d in deps if pkg(m) != d and m != pkg(d)} for m, deps in g.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_check_would_notice() -> None:
    """The walker sees lazy imports inside functions (so the checks above can fail)."""
    g = graph()
    assert "seqlab.run.loop" in g["seqlab.tools.cli"]  # imported inside cmd_train
    assert layer("seqlab.tools.cli") == "tools" and "tools" not in ALLOWED["run"]
