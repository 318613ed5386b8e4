"""The layout is the pipeline: imports run one way, down it, with no circles.

The layers and the forbidden edges are import-linter contracts in pyproject.toml; this test runs
them, and checks separately, with grimp's graph, that no set of modules imports itself in a
circle (a circle inside one layer is not caught by the layers contract).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph (TYPE_CHECKING and function-level imports
    included): the groups of two or more modules that import each other in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(m: str) -> None:
        nonlocal counter
        index[m] = low[m] = counter
        counter += 1
        stack.append(m)
        on_stack.add(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return groups


def test_no_import_circles() -> None:
    graph = grimp.build_graph("casekit", cache_dir=None)
    assert _strongly_connected(graph) == []


def test_circle_finder_finds_a_circle() -> None:
    """The check above would pass on a broken finder; this one shows it can fail."""
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _strongly_connected(graph) == [["p.a", "p.b"]]


def test_imports_follow_the_pipeline_contracts() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed: it is in the dev extra of pyproject.toml"
    res = subprocess.run([exe, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout, res.stdout
