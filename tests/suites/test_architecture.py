"""The import rules of the package, checked on its source (module-level imports, read with ``ast``).

- no gradtx import inside a function or class: every dependency shows at the top of its module;
- no ``from gradtx.x import _y`` (or ``x._y``) outside ``x``: what modules share is public;
- no import cycles;
- layers import downwards only: core < transforms < optimizers < integration < the face;
- optimizer families do not import one another, except the public names of ``optimizers.adam``;
- the graph of layers and top-level modules has at most five floors.

Each rule is a function of ``{module name: source}``, so the tests below also plant a violation
in a copy of the real sources and check that it is reported.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "gradtx")

# The face re-exports; schedules, losses and projections are building blocks that import only the core.
FACE = {"gradtx", "gradtx.tree", "gradtx.tree_utils"}
LAYERS = {"core": 0, "transforms": 1, "schedules": 1, "losses": 1, "projections": 1, "optimizers": 2, "contrib": 2}
INTEGRATION, FACE_RANK = 3, 4
LAYER_NAMES = {0: "core", 1: "transforms", 2: "optimizers", 3: "integration", 4: "the face"}
SHARED_FAMILY = "gradtx.optimizers.adam"
MAX_FLOORS = 5


def package_sources() -> dict[str, str]:
    sources = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                dotted = dotted.removesuffix(".__init__")
                with open(path, encoding="utf-8") as f:
                    sources[dotted] = f.read()
    return sources


def is_package(module: str, sources: dict[str, str]) -> bool:
    return any(other.startswith(module + ".") for other in sources)


def imports(module: str, sources: dict[str, str]) -> Iterator[tuple[ast.stmt, bool, str, str | None]]:
    """Every gradtx import in ``module``: (node, at module level, imported module, name or None)."""
    tree = ast.parse(sources[module])
    top = {id(node) for node in tree.body}
    here = module if is_package(module, sources) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gradtx":
                    yield node, id(node) in top, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "gradtx":
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in sources:
                    yield node, id(node) in top, submodule, None
                else:
                    yield node, id(node) in top, base, alias.name


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module-level imports between the package's modules."""
    return {
        m: {target for _, at_top, target, _ in imports(m, sources) if at_top and target in sources and target != m}
        for m in sources
    }


def function_level_imports(sources: dict[str, str]) -> list[str]:
    return [
        f"{m}, line {node.lineno}: imports {target} inside a function or class"
        for m in sources
        for node, at_top, target, _ in imports(m, sources)
        if not at_top
    ]


def private_imports(sources: dict[str, str]) -> list[str]:
    found = []
    for m in sources:
        aliases = {}
        for node, _, target, name in imports(m, sources):
            if name is not None and name.startswith("_") and target != m:
                found.append(f"{m}, line {node.lineno}: imports the private {target}.{name}")
            if name is None and isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    aliases[alias.asname or alias.name] = target
        for node in ast.walk(ast.parse(sources[m])):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{m}, line {node.lineno}: reads the private {aliases[node.value.id]}.{node.attr}")
    return found


def cycles(sources: dict[str, str]) -> list[str]:
    edges, found, state = graph(sources), [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                found.append(" -> ".join(stack[stack.index(n) :] + [m, n]) if n in stack else f"{m} -> {n}")
            elif n not in state:
                visit(n, stack + [m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    return found


def rank(module: str) -> int:
    if module in FACE:
        return FACE_RANK
    top = module.split(".")[1]
    return LAYERS.get(top, INTEGRATION)


def layer_violations(sources: dict[str, str]) -> list[str]:
    return [
        f"{m} ({LAYER_NAMES[rank(m)]}) imports {n} ({LAYER_NAMES[rank(n)]}), a layer above it"
        for m, targets in sorted(graph(sources).items())
        if m != "gradtx"  # the package's own __init__ is the face
        for n in sorted(targets)
        if rank(n) > rank(m)
    ]


def family_violations(sources: dict[str, str]) -> list[str]:
    found = []
    for m in sorted(sources):
        if not m.startswith("gradtx.optimizers."):
            continue
        for node, _, target, name in imports(m, sources):
            if not target.startswith("gradtx.optimizers.") or target == m:
                continue
            if target == SHARED_FAMILY and (name is None or not name.startswith("_")):
                continue
            found.append(f"{m}, line {node.lineno}: the family imports another family, {target}")
    return found


def units(sources: dict[str, str]) -> dict[str, set[str]]:
    """The graph folded into its layers: the folders core/transforms/optimizers/... and top-level modules."""
    unit = {m: ".".join(m.split(".")[:2]) for m in sources}
    folded: dict[str, set[str]] = {}
    for m, targets in graph(sources).items():
        folded.setdefault(unit[m], set()).update(unit[n] for n in targets if unit[n] != unit[m])
    return folded


def floors(edges: dict[str, set[str]]) -> int:
    """How many floors the graph stands on: a node stands one floor above the highest it imports."""
    height: dict[str, int] = {}

    def of(node: str) -> int:
        if node not in height:
            height[node] = 1 + max((of(n) for n in edges.get(node, ())), default=0)
        return height[node]

    return max(of(n) for n in edges)


RULES = {
    "function-level imports": function_level_imports,
    "private cross-imports": private_imports,
    "cycles": cycles,
    "layers": layer_violations,
    "families": family_violations,
}


@pytest.fixture(scope="module")
def sources():
    return package_sources()


@pytest.mark.parametrize("rule", RULES)
def test_the_package_keeps_the_rule(sources, rule):
    broken = RULES[rule](sources)
    assert not broken, f"{rule}:\n" + "\n".join(broken)


def test_the_layers_stand_on_at_most_five_floors(sources):
    assert not cycles(sources)
    folded = units(sources)
    assert floors(folded) <= MAX_FLOORS, folded


def test_the_three_layers_are_folders(sources):
    for layer in ("gradtx.core", "gradtx.transforms", "gradtx.optimizers"):
        assert is_package(layer, sources), f"{layer} is not a folder"
    assert {"gradtx.core.kit", "gradtx.core.aliases", "gradtx.core.validation"} <= set(sources)


def planted(sources: dict[str, str], module: str, line: str) -> dict[str, str]:
    copy = dict(sources)
    copy[module] = line + "\n" + copy[module]
    return copy


def test_a_planted_private_cross_import_is_reported(sources):
    bad = planted(sources, "gradtx.optimizers.sign", "from gradtx.core.hyperparams import _Entry")
    assert any("private gradtx.core.hyperparams._Entry" in v for v in private_imports(bad))
    bad = planted(sources, "gradtx.optimizers.sign", "from gradtx.core import tree as t\nx = t._packed")
    assert any("private gradtx.core.tree._packed" in v for v in private_imports(bad))


def test_a_planted_cycle_is_reported(sources):
    bad = planted(sources, "gradtx.core.numerics", "from gradtx.core import tree")
    found = cycles(bad)
    assert any("gradtx.core.numerics" in c and "gradtx.core.tree" in c for c in found), found


def test_a_planted_upward_import_and_family_import_are_reported(sources):
    bad = planted(sources, "gradtx.transforms.scaling", "from gradtx.optimizers.adam import adam")
    assert any(
        v.startswith("gradtx.transforms.scaling (transforms) imports gradtx.optimizers.adam")
        for v in layer_violations(bad)
    )
    bad = planted(sources, "gradtx.optimizers.factored", "from gradtx.optimizers.sign import lion")
    assert any("gradtx.optimizers.factored" in v and "optimizers.sign" in v for v in family_violations(bad))
    bad = planted(sources, "gradtx.optimizers.factored", "from gradtx.optimizers.adam import _hidden")
    assert family_violations(bad)
    ok = planted(sources, "gradtx.optimizers.factored", "from gradtx.optimizers.adam import scale_by_adam")
    assert not family_violations(ok)


def test_a_planted_function_level_import_is_reported(sources):
    bad = planted(sources, "gradtx.core.kit", "def late():\n    from gradtx.core import tree\n")
    assert any("gradtx.core.kit, line 2" in v for v in function_level_imports(bad))


def test_floors_are_counted_from_the_ground():
    assert floors({"a": set(), "b": {"a"}, "c": {"a", "b"}}) == 3
