#!/usr/bin/env python3
"""Check that every subpackage imports only what DEVELOPERS.md's layout table allows (``make lint`` runs it).

The table (the "may import" column of "Layout: one concern per subpackage") is the
contract; this script reads it from DEVELOPERS.md, so the document and the check cannot
drift apart. Every ``import vimpnet_ros.X`` / ``from vimpnet_ros.X import ...`` counts,
lazy imports inside functions included (they are dependencies too). A small AST walk,
written here because import-linter would need its own contract file restating the table.

Exit code 0 when the code follows the table, 1 with one line per violation otherwise.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vimpnet_ros"
#: Table rows look like: | `vimpnet_ros/engine/` | what | model, errors |
_ROW = re.compile(r"^\|\s*`vimpnet_ros/(?P<name>[a-z_]+)(?:/|\.py)`\s*\|[^|]*\|(?P<allowed>[^|]*)\|")


def allowed_imports(developers_md: Path) -> dict[str, set[str]]:
    """Subpackage -> the vimpnet_ros subpackages it may import, from the layout table."""
    table: dict[str, set[str]] = {}
    for line in developers_md.read_text().splitlines():
        match = _ROW.match(line.strip())
        if match:
            names = re.findall(r"`([a-z_]+)`", match.group("allowed"))
            table[match.group("name")] = set(names)
    if not table:
        raise SystemExit(f"no layout table found in {developers_md}")
    return table


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(vimpnet_ros subpackage, line) for every import of the package in a file."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def violations(root: Path = ROOT) -> list[str]:
    """One line per import the table does not allow."""
    table = allowed_imports(root / "DEVELOPERS.md")
    problems = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        relative = path.relative_to(root / PACKAGE)
        owner = relative.parts[0].removesuffix(".py")
        if owner in ("__init__", "__main__"):
            continue
        if owner not in table:
            problems.append(f"{path.relative_to(root)}: subpackage '{owner}' is missing from the DEVELOPERS.md table")
            continue
        for imported, line in sorted(imported_packages(path)):
            if imported != owner and imported not in table[owner]:
                problems.append(
                    f"{path.relative_to(root)}:{line}: '{owner}' imports '{imported}', which DEVELOPERS.md does not "
                    f"allow (it may import: {', '.join(sorted(table[owner])) or 'nothing of ours'})"
                )
    return problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
