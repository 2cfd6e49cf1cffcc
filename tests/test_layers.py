"""The package's layers import one way only, and no module imports itself round a circle.

Layers, lowest first (ARCHITECTURE.md, Modules): the foundation modules at the top of the
package (``errors``, ``config``, ``version``); ``store``; ``api`` and ``mount``; the
capabilities; ``cli``. A module may import its own layer and those below it. Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s3fsv"
FOUNDATION = {"errors", "config", "version"}
RANKS = {
    "store": 1,
    "api": 2,
    "mount": 2,
    "fsspec": 3,
    "runs": 3,
    "pipelines": 4,
    "access": 3,
    "ingest": 5,
    "ops": 5,
    "cli": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, name: str) -> set[str]:
    """The s3fsv modules ``path`` imports (``from s3fsv.x import y`` counts as ``s3fsv.x.y``
    when that is a module, else ``s3fsv.x``)."""
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for guard in ast.walk(tree):  # imports for type checkers only are not dependencies
        if isinstance(guard, ast.If) and ast.unparse(guard.test).endswith("TYPE_CHECKING"):
            guard.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "s3fsv")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "s3fsv":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found - {name}


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 10  # the package itself: the public API, imported by nothing inside
    if parts[1] in FOUNDATION:
        return 0
    if parts[1] == "__main__":
        return 10
    return RANKS[parts[1]]


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path, name) for name, path in modules().items()}


def test_every_subpackage_has_a_rank() -> None:
    for name in modules():
        parts = name.split(".")
        if len(parts) > 1 and parts[1] not in FOUNDATION | {"__main__"}:
            assert parts[1] in RANKS, f"{name}: give its layer a rank in this test"


def test_imports_run_downwards_only() -> None:
    upward = [
        f"{mod} imports {dep}"
        for mod, deps in graph().items()
        for dep in deps
        if rank(dep) > rank(mod) or (rank(dep) == rank(mod) and _sibling_layers(mod, dep))
    ]
    assert upward == []


def _sibling_layers(a: str, b: str) -> bool:
    """Two different layers of the same rank (``api`` and ``mount``) never import each other."""
    la, lb = a.split(".")[1], b.split(".")[1]
    return la != lb and la not in FOUNDATION and lb not in FOUNDATION


def test_no_import_circles() -> None:
    deps = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(deps.get(node, ())):
            if state.get(dep) == 1:
                circles.append(trail[trail.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for start in sorted(deps):
        if start not in state:
            visit(start, [start])
    assert circles == []


@pytest.mark.parametrize(
    ("mod", "dep", "allowed"),
    [
        ("s3fsv.store.repo", "s3fsv.mount.vfs", False),
        ("s3fsv.mount.vfs", "s3fsv.cli.app", False),
        ("s3fsv.mount.vfs", "s3fsv.api.repo", False),
        ("s3fsv.cli.app", "s3fsv.store.repo", True),
        ("s3fsv.store.repo", "s3fsv.errors", True),
    ],
)
def test_the_rule_itself(mod: str, dep: str, allowed: bool) -> None:
    """The checks above would catch a violation (guards against a rule that passes anything)."""
    ok = rank(dep) < rank(mod) or (rank(dep) == rank(mod) and not _sibling_layers(mod, dep))
    assert ok is allowed
