"""progprune_cli's import graph, read from the source with `ast`: its circles and the layer each module sits in.

Every import counts, at module level or inside a function: a function-level import is still a dependency, only a
later one. Importing `a.b.c` also runs the packages `a` and `a.b` (their __init__), so those are edges too, except
for a package the importer is itself inside (it is already being imported). A module's layer is 0 when it imports
nothing of progprune_cli, else one more than the highest layer it imports (a circle shares one layer).

Usage: python bench/import_graph.py [--edges MODULE]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "progprune_cli"


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its own name, for its __init__)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(tree: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> Iterator[str]:
    """Every module of `modules` that `tree` imports by name: `from x import y` imports the module x.y when there
    is one (x's __init__ may still be loading then), else the name y out of the module x."""
    here = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importer's package, up level - 1
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def build_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (with the packages that importing them runs)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for target in _imported(tree, name, path.name == "__init__.py", modules):
            if target not in modules:
                continue
            pieces = target.split(".")
            for depth in range(1, len(pieces) + 1):
                ancestor = ".".join(pieces[:depth])
                inside = name == ancestor or name.startswith(ancestor + ".")
                if ancestor == target or not inside:
                    graph[name].add(ancestor)
        graph[name].discard(name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
    return sorted(found)


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's layer: 0 for one that imports nothing of the package, else 1 + the highest it imports; the
    modules of a circle share the layer of the circle."""
    component = {member: tuple(group) for group in circles(graph) for member in group}
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        if node in layer:
            return layer[node]
        group = component.get(node, (node,))
        for member in group:
            layer[member] = 0  # provisional, so a walk back into the circle stops
        below = {target for member in group for target in graph[member]} - set(group)
        value = max((depth(target) + 1 for target in below), default=0)
        for member in group:
            layer[member] = value
        return value

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        depth(node)
    return layer


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing `start` may import, directly or not (function-level imports included)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", metavar="MODULE", help="also print what MODULE imports and what imports it")
    args = parser.parse_args()
    graph = build_graph()
    print(f"import graph of {PACKAGE} ({len(graph)} modules, {sum(map(len, graph.values()))} edges), read with ast "
          "from the source: module-level and function-level imports, and the packages each import runs")
    found = circles(graph)
    print(f"\ncircles (strongly connected components): {len(found) or 'none'}")
    for group in found:
        print(f"  {len(group)} modules: " + ", ".join(group))
    layer = layers(graph)
    print("\nlayers (0: imports nothing of the package; n: imports something of layer n - 1, nothing higher):")
    for value in sorted(set(layer.values())):
        print(f"  {value:2d}: " + ", ".join(sorted(m for m in layer if layer[m] == value)))
    if args.edges:
        print(f"\n{args.edges} imports: " + ", ".join(sorted(graph[args.edges])))
        print(f"{args.edges} is imported by: " + ", ".join(sorted(m for m in graph if args.edges in graph[m])))


if __name__ == "__main__":
    main()
