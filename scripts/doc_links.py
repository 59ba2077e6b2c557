"""Checks the links between the repository's Markdown documents: every
relative link names a file that exists, and every `#anchor` a heading of
its document (as GitHub makes anchors from headings). Links to the web are
left alone. Run by scripts/test-examples; exits 1 naming each broken link.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
SKIPPED = {"target", "node_modules", ".venv", ".git", ".data"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def documents() -> List[Path]:
    """The repository's Markdown: what git tracks or would (ignored files,
    such as the packages in the test venvs, are not ours); every file
    outside the skipped folders where git cannot tell."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
        capture_output=True,
    )
    if listed.returncode == 0:
        return sorted({REPO / name for name in listed.stdout.decode().split("\0") if name and (REPO / name).exists()})
    return sorted(p for p in REPO.rglob("*.md") if not SKIPPED & set(p.relative_to(REPO).parts))


def prose(doc: Path) -> List[Tuple[int, str]]:
    """The document's lines outside fenced code blocks, with their numbers."""
    lines, fenced = [], False
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(doc: Path) -> Set[str]:
    """GitHub's anchors for the headings: lower case, punctuation but `-`
    and `_` dropped, spaces as `-`, repeats numbered."""
    seen: Counter = Counter()
    found = set()
    for _, line in prose(doc):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def broken() -> List[str]:
    problems = []
    for doc in documents():
        for number, line in prose(doc):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                linked = (doc.parent / path).resolve() if path else doc
                where = f"{doc.relative_to(REPO)}:{number}: ({target})"
                if not linked.exists():
                    problems.append(f"{where}: no such file")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    problems.append(f"{where}: no heading with that anchor")
    return problems


if __name__ == "__main__":
    found = broken()
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        raise SystemExit(f"{len(found)} broken links between the documents")
    print(f"==> the links between {len(documents())} documents hold", file=sys.stderr)
