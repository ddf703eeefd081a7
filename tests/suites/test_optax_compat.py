"""Moving from Optax is a change of import: every public name of Optax 0.2.8, in its namespace,
exists in gradtx and accepts Optax's keyword arguments, in Optax's positions, with a default
wherever Optax has one (gradtx may add keywords, never rename or drop one).

The test walks Optax's public API by introspection (skipped when Optax is not installed; the
``test`` extra pins the version it was written against). ``DELIBERATE`` lists the differences
kept on purpose, each with its reason (docs/migration.md explains them to users); ``NOT_YET``
lists what is still to build, as strict expected failures: once a name is built, its entry fails
until it is removed. Optax's ``contrib`` names are walked too, and each is also at gradtx's top level.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import gradtx

optax = pytest.importorskip("optax")

OPTAX_VERSION = "0.2.8"
NAMESPACES = [
    "",
    "losses",
    "projections",
    "tree",
    "tree_utils",
    "schedules",
    "transforms",
    "second_order",
    "assignment",
    "perturbations",
    "microbatching",
    "experimental.aggregating",
    "contrib",
]

# (namespace, name) -> why gradtx differs on purpose.
DELIBERATE: dict[tuple[str, str], str] = {}

# (namespace, name) -> what is missing; each is an expected failure until built.
NOT_YET: dict[tuple[str, str], str] = {}


def _module(root: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def _public(namespace: str) -> list[str]:
    """The public names of an Optax namespace: its ``__all__`` (which also holds names Optax
    provides lazily, with a deprecation warning) and those ``dir`` shows without a leading
    underscore; modules and the typing helpers it imports are left out."""
    module = _module(optax, namespace)
    names = set(getattr(module, "__all__", ())) | {n for n in dir(module) if not n.startswith("_")}
    typing_names = {"Any", "NamedTuple", "Protocol", "Sequence"}
    return sorted(
        n for n in names if hasattr(module, n) and not inspect.ismodule(getattr(module, n)) and n not in typing_names
    )


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def signature_problems(theirs: Any, ours: Any) -> list[str]:
    """Where ``ours`` does not accept a call written for ``theirs``: a keyword it lacks, a
    positional argument in another position, an argument without the default Optax gives it."""
    a, b = _signature(theirs), _signature(ours)
    if a is None or b is None:
        return []
    params = b.parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    takes_args = any(p.kind is p.VAR_POSITIONAL for p in params.values())
    positional = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    their_positional = [n for n, p in a.parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    problems = []
    for name, p in a.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in params:
            if not (takes_kwargs and p.kind is not p.POSITIONAL_ONLY):
                problems.append(f"no argument {name!r}")
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            index = their_positional.index(name)
            if name not in positional and not takes_args:
                problems.append(f"{name!r} is keyword-only, Optax's is positional (position {index})")
            elif name in positional and positional.index(name) != index:
                problems.append(f"{name!r} is at position {positional.index(name)}, Optax's at {index}")
        if p.default is not p.empty and params[name].default is inspect.Parameter.empty:
            problems.append(f"{name!r} has no default; Optax's is {p.default!r}")
    return problems


def _cases() -> list[Any]:
    if getattr(optax, "__version__", None) != OPTAX_VERSION:
        return []
    cases = []
    for namespace in NAMESPACES:
        for name in _public(namespace):
            key = (namespace, name)
            marks = [pytest.mark.xfail(reason=NOT_YET[key], strict=True)] if key in NOT_YET else []
            cases.append(pytest.param(namespace, name, marks=marks, id=f"{namespace or 'optax'}.{name}"))
    return cases


def test_the_pinned_optax_is_installed():
    assert optax.__version__ == OPTAX_VERSION, (
        f"the compatibility table was written against Optax {OPTAX_VERSION}, found {optax.__version__}; "
        "install the version the test extra pins"
    )


@pytest.mark.parametrize("namespace, name", _cases())
def test_optax_name_works_in_gradtx(namespace, name):
    if (namespace, name) in DELIBERATE:
        pytest.skip(DELIBERATE[(namespace, name)])
    where = f"gradtx.{namespace}.{name}" if namespace else f"gradtx.{name}"
    ours_module = _module(gradtx, namespace)
    assert ours_module is not None, f"gradtx has no namespace gradtx.{namespace}"
    assert hasattr(ours_module, name), f"{where} is missing"
    theirs, ours = getattr(_module(optax, namespace), name), getattr(ours_module, name)
    if callable(theirs) and not inspect.isclass(theirs) or inspect.isclass(theirs) and not hasattr(theirs, "_fields"):
        problems = signature_problems(theirs, ours)
        assert not problems, f"{where}: " + "; ".join(problems)
    if hasattr(theirs, "_fields"):  # a state: Optax's fields are readable on gradtx's
        missing = [f for f in theirs._fields if not hasattr(ours, f)]
        assert not missing, f"{where} lacks Optax's fields {missing}"


@pytest.mark.parametrize("name", _public("contrib") if getattr(optax, "__version__", None) == OPTAX_VERSION else [])
def test_contrib_names_are_at_the_top_level_too(name):
    assert getattr(gradtx, name, None) is getattr(gradtx.contrib, name), f"gradtx.{name} is not gradtx.contrib.{name}"


def test_the_tables_name_only_what_optax_has():
    cases = {(ns, n) for ns in NAMESPACES for n in _public(ns)}
    stale = sorted((set(DELIBERATE) | set(NOT_YET)) - cases)
    assert not stale, f"entries for names Optax {OPTAX_VERSION} does not have: {stale}"


def test_signature_check_catches_what_a_script_would_hit():
    def optax_like(learning_rate, b1=0.9, *, nesterov=False):
        return learning_rate, b1, nesterov

    def renamed(lr, b1=0.9, *, nesterov=False):
        return lr, b1, nesterov

    def reordered(b1=0.9, learning_rate=1e-3, *, nesterov=False):
        return learning_rate, b1, nesterov

    def no_default(learning_rate, b1, *, nesterov=False):
        return learning_rate, b1, nesterov

    def extended(learning_rate, b1=0.9, eps=1e-8, *, nesterov=False, extra=None):
        return learning_rate, b1, nesterov

    assert signature_problems(optax_like, renamed) == ["no argument 'learning_rate'"]
    assert signature_problems(optax_like, reordered) == [
        "'learning_rate' is at position 1, Optax's at 0",
        "'b1' is at position 0, Optax's at 1",
    ]
    assert signature_problems(optax_like, no_default) == ["'b1' has no default; Optax's is 0.9"]
    assert signature_problems(optax_like, extended) == []
