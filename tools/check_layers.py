#!/usr/bin/env python3
"""Check that every subpackage imports only what DEVELOPERS.md's layout table allows (``make lint`` runs it).

The table (the "may import" column of "Layout: one concern per subpackage") is the
contract; this script reads it from DEVELOPERS.md, so the document and the check cannot
drift apart. Every ``import vimpnet_ros.X`` / ``from vimpnet_ros.X import ...`` counts,
lazy imports inside functions included (they are dependencies too). A small AST walk,
written here because import-linter would need its own contract file restating the table.

It also finds import circles between modules (``a`` imports ``b`` and ``b``, directly or through
others, imports ``a``; lazy imports count here too, and so does ``from package import name`` as
an import of the package): a module that needs what imports it should get it passed in, or the
two should share a third module they both import.

Outside the engine, code uses only the engine's public surface: ``from vimpnet_ros.engine
import Name`` with a name ``vimpnet_ros/engine/__init__.py`` exports (its ``_EXPORTS`` table),
never a module inside the engine, so the engine may rearrange its modules freely.

Exit code 0 when the code follows the table and has no import circle, 1 with one line per
violation or circle otherwise.
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


def module_name(root: Path, path: Path) -> str:
    """``vimpnet_ros/engine/stream.py`` -> ``vimpnet_ros.engine.stream`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(root: Path, path: Path, modules: set[str]) -> set[str]:
    """The modules of the package that ``path`` imports (relative and lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    this = module_name(root, path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # ``from a import b``: the submodule a.b when there is one, else a name of a
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != this:
                found.add(target)
    return found


def import_circles(root: Path = ROOT) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected components of the import graph), sorted."""
    paths = {module_name(root, path): path for path in sorted((root / PACKAGE).rglob("*.py"))}
    graph = {name: sorted(module_imports(root, path, set(paths))) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (deep chains stay within the recursion limit)
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        circles.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return sorted(circles)


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


#: Subpackages whose modules the rest of the package may reach only through the names their __init__ exports.
SURFACES = ("engine",)


def exported_names(package_init: Path) -> set[str]:
    """The keys of ``_EXPORTS`` in a package's ``__init__.py`` (the lazily exported public names)."""
    tree = ast.parse(package_init.read_text(), str(package_init))
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets) and isinstance(node.value, ast.Dict):
            return {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
    return set()


def surface_violations(root: Path = ROOT) -> list[str]:
    """One line per import from outside a surface package that reaches past its exported names."""
    problems = []
    for surface in SURFACES:
        exported = exported_names(root / PACKAGE / surface / "__init__.py")
        base = f"{PACKAGE}.{surface}"
        for path in sorted((root / PACKAGE).rglob("*.py")):
            if path.relative_to(root / PACKAGE).parts[0] == surface:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith(f"{base}."):
                            problems.append(f"{where}: imports {alias.name}; use `from {base} import ...`")
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module.startswith(f"{base}."):
                        problems.append(
                            f"{where}: imports from {node.module}, inside '{surface}'; import the name "
                            f"from {base} (add it to _EXPORTS in {surface}/__init__.py if it is public)"
                        )
                    elif node.module == base:
                        problems.extend(
                            f"{where}: {base} does not export {alias.name!r} (_EXPORTS)"
                            for alias in node.names
                            if alias.name not in exported
                        )
    return problems


def main() -> int:
    problems = violations() + surface_violations()
    problems += [f"import circle: {' <-> '.join(circle)}" for circle in import_circles()]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
