"""The package's dependency rules, read from the source (imports inside functions count).

* No import cycle between modules: data flows through a package one way, a file calls the
  steps after it and never back (the loading pipeline: hub.load -> read -> unwrap -> detect
  -> build).
* Packages depend downwards only: cli -> train -> evaluate / export / serve -> infer / data /
  losses -> hub -> archs / io -> metrics / degrade (-> errors, version).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower rank = lower layer; an import may only point to a strictly lower rank (or stay
# inside its own package).
RANKS = {
    "errors": 0,
    "version": 0,
    "metrics": 1,
    "degrade": 1,
    "io": 2,
    "archs": 2,
    "hub": 3,
    "data": 4,
    "losses": 4,
    "infer": 4,
    "evaluate": 5,
    "export": 5,
    "serve": 5,
    "train": 6,
    "cli": 7,
    "<root>": 8,
    "__main__": 9,
}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in (SRC / "sisr").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the sisr modules it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges[mod].update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in mods:
                        edges[mod].add(sub)
                    elif base in mods:
                        edges[mod].add(base)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else "<root>"


def test_no_import_cycles() -> None:
    assert _cycles(_imports(_modules())) == []


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_packages_depend_downwards_only() -> None:
    mods = _modules()
    assert {_package(m) for m in mods} <= set(RANKS), "a new package needs a rank here"
    wrong = sorted(
        f"{a} -> {b}"
        for a, targets in _imports(mods).items()
        for b in targets
        if _package(a) != _package(b) and RANKS[_package(b)] >= RANKS[_package(a)]
    )
    assert wrong == []


def test_the_foreign_file_pipeline_runs_one_way() -> None:
    """read -> unwrap -> detect -> build: no step imports a step before it or the loader."""
    edges = _imports(_modules())
    steps = [
        "sisr.hub.load",
        "sisr.hub.read",
        "sisr.hub.unwrap",
        "sisr.hub.detect",
        "sisr.hub.build",
    ]
    for i, step in enumerate(steps):
        assert not edges[step] & set(steps[: i + 1]) - {step}, step
    assert "sisr.hub.load" not in edges["sisr.hub.weights"]
