"""Imports point one way: every sbdeploy module imports only from its own layer or below (sbdeploy._layers), no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sbdeploy._layers import LAYERS
from tests.conftest import REPO

PACKAGE = REPO / "sbdeploy"


def layer_of(module: str) -> int:
    """The layer of a module (``sbdeploy.nn.sb`` -> 2): the most specific name in LAYERS that holds it."""
    name = module.removeprefix("sbdeploy").removeprefix(".")
    holding = [
        (len(entry), number)
        for number, layer in enumerate(LAYERS)
        for entry in layer
        if name == entry or (entry != "" and name.startswith(entry + "."))
    ]
    if not holding:
        raise KeyError(f"{module} is in no layer of sbdeploy._layers.LAYERS")
    return max(holding)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """The sbdeploy modules a file imports (outside ``if TYPE_CHECKING:``), with the line of each import."""
    tree = ast.parse(path.read_text())
    guarded = [
        node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ]
    typing_only = {id(n) for node in guarded for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:  # a submodule, else the module
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `from sbdeploy.x import name`: the module sbdeploy.x
                name = name.rpartition(".")[0]
            if name.startswith("sbdeploy"):
                found.append((name, node.lineno))
    return found


GRAPH = {name: sorted({m for m, _ in imports_of(path)} - {name}) for name, path in MODULES.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        layer_of(name)  # KeyError names the module


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_higher_layer(name: str) -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {imported} (layer {layer_of(imported)}) at line {line}"
        for imported, line in imports_of(MODULES[name])
        if imported != name and layer_of(imported) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = path[path.index(name) :] + (name,)
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in GRAPH[name]:
            if not (
                imported == "sbdeploy" or name.startswith(imported + ".")
            ):  # a package's own __init__: loaded first
                visit(imported, (*path, name))
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, ())


def test_the_readme_layout_line_is_the_layer_list() -> None:
    line = " -> ".join(", ".join(f"`{e or 'sbdeploy'}`" for e in layer) for layer in LAYERS)
    assert line in (REPO / "README.md").read_text(), f"README.md's layout line should read:\n{line}"
