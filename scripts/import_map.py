"""The map of imports between the project's own modules, derived from the code.

Reads every module of the packages ``bridge`` and ``config`` with :mod:`ast` and collects
each ``import`` and ``from ... import`` of a project module, at module level and inside
functions alike. Imports under ``if TYPE_CHECKING:`` are left out, as they never run. The
modules of ``bridge.providers`` count as one module, ``bridge.providers``; every other
module stands for itself. A module that imports no project module shows ``(none)``.

    python scripts/import_map.py                 # print the block
    python scripts/import_map.py --check FILE    # exit 1 with a diff when FILE's block differs
    python scripts/import_map.py --write FILE    # rewrite FILE's block

The block is the text between ``<!-- import-map:start -->`` and ``<!-- import-map:end -->``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "config")
COLLAPSED = ("bridge.providers",)  # packages whose modules are shown as the package itself
START = "<!-- import-map:start -->"
END = "<!-- import-map:end -->"


class MarkersMissing(Exception):
    """The file has no ``START ... END`` pair of markers."""


def module_name(path: Path, root: Path) -> str:
    """``bridge/http/hooks.py`` -> ``bridge.http.hooks``; ``bridge/http/__init__.py`` -> ``bridge.http``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collapse(name: str) -> str:
    for package in COLLAPSED:
        if name.startswith(package + "."):
            return package
    return name


def project_files(root: Path) -> dict[str, Path]:
    """Every module of the project's packages, by its dotted name."""
    files = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[module_name(path, root)] = path
    return files


def import_statements(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except those under ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)  # the body runs only under a type checker
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        else:
            yield from import_statements(child)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imported_modules(
    statement: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> Iterator[str]:
    """The project modules one import statement names.

    ``import a.b`` names ``a.b``; ``from a import b`` names ``a.b`` when that is a module,
    else ``a`` (``b`` is defined in it).
    """
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            owner = _owner(alias.name, modules)
            if owner:
                yield owner
        return
    base = _owner(_from_base(statement, module, is_package), modules)
    if base is None:
        return
    for alias in statement.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in modules else base


def _from_base(statement: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved."""
    if not statement.level:
        return statement.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (statement.level - 1)]
    return ".".join([*package, *([statement.module] if statement.module else [])])


def _owner(name: str, modules: set[str]) -> str | None:
    """The project module ``name`` is, or the closest one that contains it; None outside the project."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_map(root: Path = ROOT) -> dict[str, set[str]]:
    """Each project module (collapsed) and the project modules it imports."""
    files = project_files(root)
    modules = set(files)
    graph: dict[str, set[str]] = {collapse(name): set() for name in files}
    for name, path in files.items():
        importer = collapse(name)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for statement in import_statements(tree):
            for imported in imported_modules(statement, name, path.name == "__init__.py", modules):
                dependency = collapse(imported)
                if dependency != importer:
                    graph[importer].add(dependency)
    return graph


def render(graph: dict[str, set[str]]) -> str:
    """The Markdown block: a fenced list, one ``module -> dep, dep`` line per module, sorted."""
    lines = [f"{module} -> {', '.join(sorted(deps)) or '(none)'}" for module, deps in sorted(graph.items())]
    return "\n".join(["```text", *lines, "```"])


def split_document(text: str) -> tuple[str, str, str]:
    """(before and including START, the block, END and after); raises MarkersMissing."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"expected {START} followed by {END}")
    head = start + len(START)
    return text[:head], text[head:end], text[end:]


def diff(path: Path, root: Path = ROOT) -> str:
    """Empty when the block in ``path`` is the derived one, else a unified diff (documented -> derived)."""
    _, documented, _ = split_document(path.read_text(encoding="utf-8"))
    derived = render(import_map(root))
    if documented.strip() == derived:
        return ""
    lines = difflib.unified_diff(
        documented.strip().splitlines(),
        derived.splitlines(),
        fromfile=f"{path} (documented)",
        tofile="derived from the code",
        lineterm="",
    )
    return "\n".join(lines)


def write(path: Path, root: Path = ROOT) -> bool:
    """Rewrite the block in ``path``; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    before, _, after = split_document(text)
    updated = f"{before}\n{render(import_map(root))}\n{after}"
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="FILE", type=Path, help="exit 1 with a diff when FILE's block differs")
    mode.add_argument("--write", metavar="FILE", type=Path, help="rewrite FILE's block")
    args = parser.parse_args(argv)
    try:
        if args.check:
            found = diff(args.check)
            if found:
                print(f"{args.check}: the import map is out of date (fix: scripts/import_map.py --write {args.check})")
                print(found)
                return 1
            return 0
        if args.write:
            print(f"{args.write}: {'updated' if write(args.write) else 'already up to date'}")
            return 0
    except (OSError, MarkersMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(import_map()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
