"""The import graph of rag/, read statically (ast): no cycles, no private names across modules, layers kept.

Every `import` and `from ... import` anywhere in a file counts: at module level, inside functions (lazy imports)
and under `if TYPE_CHECKING:`. A lazy import still makes the two modules depend on each other; it only hides
the cycle until the function runs. Relative imports are resolved against the importing module.

An import of `rag.a.b` (or `from rag.a.b import x`) is an edge to `rag.a.b`, plus one to each package on the
way (`rag.a`) that the importer is not itself inside: Python runs that package's `__init__` first, so a
package whose `__init__` imports the importer closes a cycle. `from rag.a import b` is an edge to the
submodule `rag.a.b` when there is one, else to the package `rag.a`.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rag"

# package -> packages it must not import (data flows one way: corpus -> index -> retrieve -> read -> score)
LAYERS = {
    "rag.corpus": ("rag.retrievers", "rag.readers", "rag.pipeline", "rag.entities", "rag.evaluation", "rag.world", "rag.cli"),
    "rag.retrievers": ("rag.readers", "rag.pipeline", "rag.entities", "rag.evaluation", "rag.world", "rag.cli"),
    "rag.readers": ("rag.pipeline", "rag.entities", "rag.evaluation", "rag.world", "rag.cli"),
    # the one pipeline from reader settings to answers sits above readers and retrievers, below evaluation and cli
    "rag.pipeline": ("rag.entities", "rag.evaluation", "rag.world", "rag.cli"),
    "rag.entities": ("rag.pipeline", "rag.evaluation", "rag.world", "rag.cli"),
    "rag.evaluation": ("rag.world", "rag.cli"),
    "rag.buckets": ("rag.entities", "rag.evaluation"),
    "rag.counts": ("rag.entities", "rag.evaluation"),
}
LIBRARY_BANS = ("rag.cli",)  # nothing outside the command line imports it


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package __init__)."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


MODULES = _modules()


def _known(name: str) -> str:
    """The longest prefix of a dotted name that is a module of rag (rag.a.b.Name -> rag.a.b)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _base(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_pkg else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int, str | None]]:
    """(imported module, name taken from it or None, line, local name bound to a module or None) per import."""
    path, is_pkg = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "rag" or a.name.startswith("rag."):
                    # `import rag.a.b` binds `rag`; `import rag.a.b as m` binds m to rag.a.b
                    out.append((_known(a.name), None, node.lineno, a.asname if a.asname else None))
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_pkg, node)
            if base != "rag" and not base.startswith("rag."):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in MODULES:  # a submodule, bound to a local name
                    out.append((sub, None, node.lineno, a.asname or a.name))
                else:
                    out.append((_known(base), a.name, node.lineno, None))
    return out


def _graph() -> dict[str, dict[str, int]]:
    """module -> {module it depends on: first line}."""
    g: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for m in MODULES:
        own = {".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 2)}
        for target, _, line, _ in _imports(m):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in MODULES and dep not in own:
                    g[m].setdefault(dep, line)
    return g


def _cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _path(g: dict[str, dict[str, int]], comp: list[str]) -> str:
    """One cycle through a component, with the line of each import: a (12) -> b (40) -> a."""
    inside = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    todo = [start]
    while todo:  # breadth-first, back to start
        v = todo.pop(0)
        for w in sorted(g[v]):
            if w not in inside:
                continue
            if w == start:
                hops = [v]
                while hops[-1] != start:
                    hops.append(prev[hops[-1]])
                hops.reverse()
                hops.append(start)
                return " -> ".join(f"{a} (line {g[a][b]})" for a, b in zip(hops, hops[1:])) + f" -> {start}"
            if w not in prev and w != start:
                prev[w] = v
                todo.append(w)
    return " <-> ".join(comp)


def test_no_import_cycles():
    g = _graph()
    found = _cycles(g)
    assert not found, "import cycles in rag/:\n" + "\n".join(_path(g, c) for c in found)


def _private_uses() -> set[tuple[str, str, str, int]]:
    """(module, module imported from, private name, line): `from x import _y` and `x._y` on an imported module."""
    out = set()
    for m, (path, _) in MODULES.items():
        bound = {}
        for target, name, line, local in _imports(m):
            if name is not None and name.startswith("_") and not name.startswith("__") and target != m:
                out.add((m, target, name, line))
            if local is not None:
                bound[local] = target
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__") and bound[node.value.id] != m):
                out.add((m, bound[node.value.id], node.attr, node.lineno))
    return out


def test_no_private_names_across_modules():
    uses = sorted(_private_uses())
    assert not uses, "private names imported from another module:\n" + "\n".join(
        f"{m} line {line}: {name} from {t}" for m, t, name, line in uses)


def test_layers():
    g = _graph()
    bad = defaultdict(list)
    for m, deps in g.items():
        for layer, banned in LAYERS.items():
            if m == layer or m.startswith(layer + "."):
                for d, line in deps.items():
                    if any(d == b or d.startswith(b + ".") for b in banned):
                        bad[m].append(f"{d} (line {line})")
        if m != "rag.cli" and not m.startswith("rag.cli."):
            bad[m] += [f"{d} (line {line})" for d, line in deps.items() if d in LIBRARY_BANS or d.startswith("rag.cli.")]
    bad = {m: v for m, v in bad.items() if v}
    assert not bad, "imports against the layers:\n" + "\n".join(f"{m}: {', '.join(sorted(set(v)))}" for m, v in sorted(bad.items()))


def test_the_analysis_sees_lazy_and_relative_imports(tmp_path):
    """The checks above are only as good as the import reading: a function-level import, a TYPE_CHECKING one and
    a relative one are all edges."""
    g = _graph()
    assert "rag.evaluation.report" in g["rag.evaluation.runner"]  # lazy: `from rag.evaluation.report import render`
    assert "rag.readers.base" in g["rag.evaluation.generation"]  # under TYPE_CHECKING
    assert "rag.readers" in g["rag.evaluation.runner"]  # a package's __init__ runs first
    tree = ast.parse("from .base import READERS\nfrom . import fake\n")
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [_base("rag.readers.answer", False, n) for n in nodes] == ["rag.readers.base", "rag.readers"]
    assert _base("rag.readers", True, nodes[0]) == "rag.readers.base"


def test_readers_register_tiny_lm_without_importing_the_world():
    code = ("import sys\nfrom rag.readers import READERS\nassert 'rag.world' not in sys.modules, 'rag.readers imported rag.world'\n"
            "cls = READERS.get('tiny-lm')\nassert cls.__module__ == 'rag.world.tinylm', cls\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
