"""The package's import contract: no cycles, the broker contract stands alone, and data flows one way.

Read from the source with :mod:`ast` (nothing is imported), so the test sees imports inside
functions too: a lazy import hides a cycle from Python, not from a reader. Imports under
``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# pyproject.toml's package-dir: the rooms at the repository root install as gridwatch.<room>.
ROOMS = ("edge", "models", "broker", "server", "deploy")

# The edge pipeline's stages, upstream first: a stage may import its own folder and those before it.
EDGE_STAGES = ("capture", "perception", "reading", "rules", "evidence", "delivery", "node")
# The server's rooms, lowest first; the root modules split into the base (settings, database, clock)
# that every room may use and the entry points (cli, runner) that nothing imports.
SERVER_LAYERS = (
    {"gridwatch.server"},
    {"gridwatch.server.registry"},
    {"gridwatch.server.tickets"},
    {"gridwatch.server.ingest"},
    {"gridwatch.server.integrations", "gridwatch.server.privacy"},
    {"gridwatch.server.api"},
    {"gridwatch.server.cli", "gridwatch.server.runner"},
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["gridwatch", *parts])


def package_modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the package below ``root`` (migrations are Alembic's scripts, not imported)."""
    return {
        module_name(root, path): path
        for room in ROOMS
        for path in sorted((root / room).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str, known: set[str]) -> set[str]:
    """The package modules ``source`` imports when it runs (at any depth, TYPE_CHECKING left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                found.add(node.module)
            # ``from gridwatch.server.tickets import sla`` imports the module ``sla``.
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    return {name: imported_modules(path.read_text(encoding="utf-8"), known) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _edge_stage(module: str) -> int:
    """-1 for the edge's own base (config, the package itself), else the stage's position."""
    parts = module.split(".")
    return EDGE_STAGES.index(parts[2]) if len(parts) > 2 and parts[2] in EDGE_STAGES else -1


def _server_layer(module: str) -> int:
    for depth in (3, 2):
        prefix = ".".join(module.split(".")[:depth])
        for layer, members in enumerate(SERVER_LAYERS):
            if prefix in members:
                return layer
    raise AssertionError(f"{module} is in no server layer; add its folder to SERVER_LAYERS")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that break the contract, one line each."""
    forbidden = {
        "gridwatch.broker": {"gridwatch.edge", "gridwatch.server"},
        "gridwatch.models": {"gridwatch.edge", "gridwatch.server", "gridwatch.broker"},
        "gridwatch.edge": {"gridwatch.server"},
        "gridwatch.server": {"gridwatch.edge"},
    }
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if _room(target) in forbidden.get(_room(module), set()):
                found.append(f"{module} imports {target}: {_room(module)} may not import {_room(target)}")
            elif _room(module) == _room(target) == "gridwatch.edge" and _edge_stage(target) > _edge_stage(module):
                found.append(f"{module} imports {target}: the edge's data flows "
                             f"{' → '.join(EDGE_STAGES)}, never upstream")
            elif _room(module) == _room(target) == "gridwatch.server" and _server_layer(target) > _server_layer(module):
                found.append(f"{module} imports {target}: a lower server room may not import a higher one")
    return found


# -- the package as it is ---------------------------------------------------------------------------


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(package_modules())
    assert len(graph) > 100, "the walk found too few modules to mean anything"
    assert cycles(graph) == []


def test_rooms_import_only_downstream() -> None:
    assert violations(import_graph(package_modules())) == []


def test_every_folder_is_small_and_says_what_it_owns() -> None:
    for init in sorted(list(REPO.glob("edge/**/__init__.py")) + list(REPO.glob("server/**/__init__.py"))):
        folder = init.parent
        if "migrations" in folder.parts:
            continue
        modules = sorted(p.name for p in folder.glob("*.py"))
        assert len(modules) <= 12, f"{folder.relative_to(REPO)} holds {len(modules)} modules: {modules}"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 40, f"{init.relative_to(REPO)} does not say what the folder owns"


# -- the checks themselves fail on what they are for ------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_cycle_is_found_even_behind_a_lazy_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "server/__init__.py": "",
        "server/tickets/__init__.py": "",
        "server/tickets/categories.py": """
            def complete():
                from gridwatch.server.tickets.lifecycle import CLOCKED_STAGES
                return CLOCKED_STAGES
        """,
        "server/tickets/lifecycle.py": "from gridwatch.server.tickets import sla\n",
        "server/tickets/sla.py": "from gridwatch.server.tickets.categories import complete\n",
        "server/settings.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from gridwatch.server.tickets.sla import complete
        """,
    })
    graph = import_graph(package_modules(tmp_path))
    assert cycles(graph) == [["gridwatch.server.tickets.categories", "gridwatch.server.tickets.lifecycle",
                              "gridwatch.server.tickets.sla"]]
    assert graph["gridwatch.server.settings"] == set()


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("broker/contract.py", "from gridwatch.edge.config import Zone\n", "broker may not import gridwatch.edge"),
    ("edge/node/runner.py", "import gridwatch.server.db\n", "gridwatch.edge may not import gridwatch.server"),
    ("edge/perception/detect.py", "from gridwatch.edge.node import runner\n", "never upstream"),
    ("server/tickets/sla.py", "from gridwatch.server.api import auth\n", "a lower server room"),
])
def test_a_forbidden_import_is_named(tmp_path: Path, module: str, source: str, expected: str) -> None:
    _write(tmp_path, {
        "broker/contract.py": "", "edge/config.py": "", "edge/node/runner.py": "", "edge/perception/detect.py": "",
        "server/db.py": "", "server/tickets/sla.py": "", "server/api/auth.py": "",
    })
    _write(tmp_path, {module: source})
    found = violations(import_graph(package_modules(tmp_path)))
    assert len(found) == 1 and expected in found[0], found
