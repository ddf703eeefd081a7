"""How a transform was built, as a value: two transforms built by the same factory with equal
arguments compare equal and hash alike, so one passed as a static argument to ``jax.jit`` (or held
in a static field of a Flax ``TrainState``) does not cause a recompilation when it is rebuilt.

A transform is a pair of closures. Its recipe is the code of each closure and, recursively, the
values the closures captured: numbers, strings, dtypes, tuples, dicts, other closures, the objects
of gradtx's own classes by their attributes, and small arrays by their contents. Anything else (a
large or traced array, an object of another library) counts as itself, compared by identity, so
two recipes are equal only when every part is known to be equal.
"""

from __future__ import annotations

import types
from typing import Any

import jax
import numpy as np

SMALL_ARRAY = 64  # arrays up to this many elements are compared by value
_CACHE = "__gradtx_recipe__"  # where a function keeps its recipe: closures do not change what they captured


def recipe(value: Any) -> Any:
    """A hashable value that is equal for values built the same way (see the module docstring).

    Args:
        value: a transform, a function, or any value a closure may capture.

    Example:
        >>> from gradtx.core.recipe import recipe
        >>> def make(rate):
        ...     return lambda g: g * rate
        >>> recipe(make(0.1)) == recipe(make(0.1)), recipe(make(0.1)) == recipe(make(0.2))
        (True, False)
    """
    if isinstance(value, types.FunctionType):  # a transform's closures: computed once, kept on the function
        cached = value.__dict__.get(_CACHE)
        if cached is None:
            cached = value.__dict__[_CACHE] = _recipe(value, {})
        return cached
    return _recipe(value, {})


def _recipe(value: Any, seen: dict[int, int]) -> Any:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, type, np.dtype)):
        return (type(value).__name__, value)
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.item())
    if id(value) in seen:  # a closure that refers to itself
        return ("cycle", seen[id(value)])
    seen[id(value)] = len(seen)
    try:
        return _compound(value, seen)
    finally:
        del seen[id(value)]


def _compound(value: Any, seen: dict[int, int]) -> Any:
    if isinstance(value, (jax.Array, np.ndarray)):
        if isinstance(value, jax.core.Tracer) or value.size > SMALL_ARRAY:
            return ("object", id(value))
        array = np.asarray(value)
        return ("array", array.shape, array.dtype.str, array.tobytes())
    if isinstance(value, types.FunctionType):
        cells = tuple(_recipe(c.cell_contents, seen) if _filled(c) else ("empty",) for c in value.__closure__ or ())
        defaults = _recipe(value.__defaults__, seen)
        keywords = _recipe(value.__kwdefaults__, seen)
        return ("function", value.__code__, cells, defaults, keywords)
    if isinstance(value, types.MethodType):
        return ("method", _recipe(value.__func__, seen), _recipe(value.__self__, seen))
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_recipe(v, seen) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((_recipe(k, seen), _recipe(v, seen)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_recipe(v, seen) for v in value))
    if type(value).__module__.startswith("gradtx.") and hasattr(value, "__dict__"):
        return (type(value), _recipe(vars(value), seen))
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return ("value", value)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - raises ValueError for a cell not yet assigned
    except ValueError:
        return False
    return True
