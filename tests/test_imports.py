"""Layers, not circles: the import graph of fillblank/ and stages/, read from the source with
`ast` (every import statement at any depth; those under `if TYPE_CHECKING:` aside)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGES = ("fillblank", "stages")
# The only imports allowed inside functions: heavy dependencies that most stages never need
# (torchvision alone takes seconds to import), by module and name imported.
LAZY = {
    ("fillblank.backbones", "efficientnet_lite_pytorch"),
    ("fillblank.backbones", "torchvision"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, inside a function) of every import of `path`, outside `if
    TYPE_CHECKING:` blocks. (The project writes no relative imports.)"""
    tree = ast.parse(path.read_text())

    def within(kinds: tuple[type, ...], test=lambda node: True) -> set[int]:
        return {id(sub) for node in ast.walk(tree) if isinstance(node, kinds) and test(node) for sub in ast.walk(node)}

    skipped = within((ast.If,), lambda node: "TYPE_CHECKING" in ast.unparse(node.test))
    in_function = within((ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        assert not getattr(node, "level", 0), f"{path}:{node.lineno}: a relative import"
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found += [(target, id(node) in in_function) for target in targets]
    return found


def graph() -> dict[str, set[str]]:
    """Each module of PACKAGES and the modules of PACKAGES it imports."""
    paths = {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for target, _ in imports(path):
            while target and target not in paths:  # fillblank.decode.step.Blanks -> fillblank.decode.step
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back():
    edges = graph()
    assert sum(map(len, edges.values())) > 100  # the graph was read
    assert cycles(edges) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_ground_floor_imports_nothing_above_it():
    edges = graph()
    ground = {"fillblank.params", "fillblank.errors", "fillblank.atomic", "fillblank.provenance"}
    for name in ground:
        assert edges[name] <= ground, (name, edges[name] - ground)


def test_imports_inside_functions_are_only_the_listed_heavy_ones():
    lazy = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for target, inside in imports(path):
                if inside:
                    lazy.add((module_name(path), target.split(".")[0]))
    assert lazy <= LAZY, lazy - LAZY


def test_importing_the_stages_and_the_cli_loads_no_torchvision():
    """What the function-level imports are for: `python -m stages.<name>` starts without it."""
    check = "import sys, stages.fill, stages.train, fillblank.cli; print('torchvision' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
