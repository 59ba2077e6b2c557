#!/usr/bin/env python3
"""Fails when the files of a crate import each other in a cycle.

Reads every crate's `src/` (and each integration-test folder) as a graph:
a file is a node, and each `use` or inline path through `crate::`,
`super::` or `self::` in its code (comments, strings and `#[cfg(test)] mod
tests` left out) is an edge to the file that defines the module it names.
A strongly connected component of more than one file is a cycle: printed,
and the exit status is 1. `mod` declarations are ownership, not use, and
make no edge; nor do intra-doc links.

Usage: scripts/module_cycles.py [REPO]   (default: the repository's root)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

Graph = Dict[Path, Set[Path]]


def code_of(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*", "", text, flags=re.S)


def use_paths(tree: str) -> Iterator[str]:
    """`a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`."""
    brace = tree.find("{")
    if brace < 0:
        yield tree.strip()
        return
    prefix, body = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    depth, part = 0, ""
    for ch in body + ",":
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            if part.strip():
                yield from (prefix + path for path in use_paths(part))
            part = ""
        else:
            part += ch


def module_of(src: Path, file: Path) -> List[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    return parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts


def file_of(src: Path, module: List[str], path: str) -> Optional[Path]:
    segments = [s.split(" as ")[0].strip() for s in path.split("::") if s.strip()]
    if not segments or segments[0] not in ("crate", "super", "self"):
        return None
    base = [] if segments[0] == "crate" else list(module)
    rest = segments[1:] if segments[0] == "crate" else segments
    while rest and rest[0] in ("super", "self"):
        base = base[:-1] if rest[0] == "super" else base
        rest = rest[1:]
    parts = base + rest
    for length in range(len(parts), 0, -1):
        stem = src.joinpath(*parts[:length])
        for candidate in (stem.with_suffix(".rs"), stem / "mod.rs"):
            if candidate.exists():
                return candidate
    return None


def graph(src: Path) -> Graph:
    edges: Graph = {}
    for file in sorted(src.rglob("*.rs")):
        code = code_of(file.read_text())
        paths = [p for m in re.finditer(r"\buse\s+([^;]+);", code) for p in use_paths(re.sub(r"\s+", " ", m.group(1)))]
        inline = re.sub(r"\buse\s+[^;]+;", "", code)
        paths += re.findall(r"\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+", inline)
        targets = (file_of(src, module_of(src, file), path) for path in paths)
        edges[file] = {target for target in targets if target is not None and target != file}
    return edges


def cycles(edges: Graph) -> List[List[Path]]:
    """Tarjan's strongly connected components of more than one node."""
    index: Dict[Path, int] = {}
    low: Dict[Path, int] = {}
    stack: List[Path] = []
    found: List[List[Path]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for next_node in edges.get(node, ()):
            if next_node not in index:
                visit(next_node)
                low[node] = min(low[node], low[next_node])
            elif next_node in stack:
                low[node] = min(low[node], index[next_node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(100_000)
    for node in edges:
        if node not in index:
            visit(node)
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    folders = sorted(p for p in [*root.glob("*/src"), *root.glob("*/tests/*")] if p.is_dir())
    bad = 0
    for src in folders:
        for component in cycles(graph(src)):
            bad += 1
            print(f"{src.relative_to(root)}: a cycle among " + ", ".join(str(f.relative_to(src)) for f in component))
    print(f"module cycles: {bad} (in {len(folders)} source folders)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
