"""Hyperparameters live in the optimizer state, where they can be read and set by name.

Every transform keeps its numeric hyperparameters in a ``hyperparams`` field of
its state: a dict from the paper's names (``learning_rate``, ``b1``, ``eps``, ...)
to 0-d arrays. A hyperparameter given as a schedule (a function of the step) is
stored as :class:`Scheduled`, holding the value the *next* update will use.
Because the values are arrays in the state, changing one with
:func:`set_hyperparams` changes no shape or dtype, and a jitted step is not
recompiled.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree

HYPERPARAMS_FIELD = "hyperparams"


class Scheduled(NamedTuple):
    """A hyperparameter that follows a schedule; ``value`` is the one the next update uses."""

    value: jax.Array


def float_dtype():
    """The dtype hyperparameters are stored in: float64 when x64 is on, else float32."""
    return jnp.result_type(float)


# -------------------------------------------------------------------- validation


def _is_concrete_number(value: Any) -> bool:
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, bool)


def _concrete_value(value: Any) -> Any:
    """``value`` as a Python number when it is one, or a 0-d numeric array whose value is
    known now (not traced under ``jit``); otherwise None."""
    if _is_concrete_number(value):
        return value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, (jax.Array, np.ndarray)) or np.ndim(value) != 0 or value.dtype == bool:
        return None
    try:
        return np.asarray(value).item()
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_range(
    name: str, value: Any, low: float | None = None, high: float | None = None,
    *, low_open: bool = False, high_open: bool = False,
) -> Any:
    """Validate a hyperparameter given as a number or a 0-d array; schedules and traced values pass.

    Raises ``ValueError`` naming the argument and its value when it lies outside
    ``[low, high]`` (``(low`` / ``high)`` when open), or is not finite. A value
    traced under ``jit`` is not known when the optimizer is built, and passes.

    Example:
        >>> from gradtx.core.hyperparams import check_range
        >>> check_range("b1", 1.5, 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: b1 must be in [0.0, 1.0), got 1.5
    """
    number = None if callable(value) else _concrete_value(value)
    if number is None:
        return value
    if isinstance(number, complex):
        raise ValueError(f"{name} must be a real number, got {number!r}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above or not np.isfinite(number):
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (")" if high_open or high is None else "]")
        raise ValueError(f"{name} must be in {interval}, got {number!r}")
    return value


def check_decay(name: str, value: Any) -> Any:
    """A decay rate or momentum: a number in ``[0, 1)``."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_nonnegative(name: str, value: Any) -> Any:
    """A number ``>= 0`` (eps, weight decay, ...)."""
    return check_range(name, value, 0.0)


def check_positive(name: str, value: Any) -> Any:
    """A number ``> 0`` (a clipping threshold, ...)."""
    return check_range(name, value, 0.0, low_open=True)


# ------------------------------------------------------------ for transform authors


class Hyperparams:
    """The hyperparameters of one transform, as given at construction.

    ``init()`` makes the dict kept in the state; ``advance(stored, count)``
    re-evaluates the scheduled ones for step ``count``; ``values(stored)`` reads
    them back as arrays.
    """

    def __init__(self, *, allow_schedules: bool = True, **given: Any):
        for name, value in given.items():
            if value is None or isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a number, an array or a schedule, got {value!r}")
            if callable(value) and not allow_schedules:
                raise TypeError(
                    f"{name} must be a number or an array, got the callable {value!r}; "
                    "to schedule it, wrap the optimizer with gradtx.inject_hyperparams"
                )
            if not callable(value) and jnp.ndim(value) != 0:
                raise ValueError(f"{name} must be a scalar, got a value of shape {jnp.shape(value)}")
        self.given = given
        self.scheduled = {k for k, v in given.items() if callable(v)}

    def _evaluate(self, name: str, count: jax.Array) -> jax.Array:
        value = jnp.asarray(self.given[name](count))
        if value.ndim != 0:
            raise ValueError(f"the schedule for {name} must return a scalar, got shape {value.shape}")
        return value.astype(float_dtype())

    def init(self) -> dict[str, Any]:
        from gradtx.core.numerics import zero_count

        return {
            name: Scheduled(self._evaluate(name, zero_count())) if name in self.scheduled
            else jnp.asarray(value, dtype=float_dtype())
            for name, value in self.given.items()
        }

    def advance(self, stored: dict[str, Any], count: jax.Array) -> dict[str, Any]:
        if not self.scheduled:
            return stored
        return {
            name: Scheduled(self._evaluate(name, count).astype(value.value.dtype))
            if name in self.scheduled else value
            for name, value in stored.items()
        }

    @staticmethod
    def values(stored: dict[str, Any]) -> dict[str, jax.Array]:
        return {k: v.value if isinstance(v, Scheduled) else v for k, v in stored.items()}


# ----------------------------------------------------------------- for users


class _Entry(NamedTuple):
    qualified: str  # owner path and name, e.g. "0/b1"
    name: str
    leaf_index: int
    scheduled: bool


def _entries(state: Any) -> list[_Entry]:
    entries: dict[str, _Entry] = {}
    for index, (path, _) in enumerate(_tree.leaves_with_path(state)):
        names = [_tree.key_name(k) for k in path]
        if HYPERPARAMS_FIELD not in names[:-1]:
            continue
        at = len(names) - 1 - names[::-1].index(HYPERPARAMS_FIELD)
        if at + 1 >= len(names):
            continue
        name = names[at + 1]
        qualified = "/".join(names[:at] + [name])
        if qualified in entries:
            continue
        node = _tree._node_at(state, path[: at + 2])
        entries[qualified] = _Entry(qualified, name, index, isinstance(node, Scheduled))
    return list(entries.values())


def _plain(value: Any) -> Any:
    """A concrete 0-d array as the shortest Python number that round-trips in its dtype."""
    if isinstance(value, jax.core.Tracer):
        return value
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return float(str(array))
    return array.item()


def hyperparams(state: Any) -> dict[str, Any]:
    """Every hyperparameter in an optimizer state, by name, as plain Python numbers.

    A name used by one transform only is returned as it is (``"learning_rate"``);
    a name found in several is returned under each owner's path
    (``"0/decay"``, ``"1/decay"``). Scheduled values are those the next update
    uses. Under ``jit`` the values are arrays.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(3)})
        >>> gradtx.hyperparams(state)
        {'b1': 0.9, 'b2': 0.999, 'eps': 1e-08, 'eps_root': 0.0, 'learning_rate': 0.001}
    """
    entries = _entries(state)
    leaves = jax.tree.leaves(state)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {
        (e.name if counts[e.name] == 1 else e.qualified): _plain(leaves[e.leaf_index])
        for e in entries
    }


def _find(entries: list[_Entry], key: str) -> _Entry:
    wanted = key.strip("/").split("/")
    found = [e for e in entries if e.qualified.split("/")[-len(wanted):] == wanted]
    if not found:
        known = sorted({e.name for e in entries})
        raise KeyError(f"no hyperparameter '{key}' in this state; it has {known}")
    if len(found) > 1:
        raise ValueError(
            f"'{key}' is ambiguous: it names {[e.qualified for e in found]}; "
            "pass one of those paths, e.g. set_hyperparams(state, **{'%s': value})" % found[0].qualified
        )
    return found[0]


def set_hyperparams(state: Any, **values: Any) -> Any:
    """A copy of ``state`` with hyperparameters replaced, its structure and dtypes unchanged.

    Names are matched as in :func:`hyperparams`; a qualified name
    (``**{"0/decay": 0.95}``) chooses among several. Setting a scheduled
    hyperparameter is an error: its value is recomputed at every step.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(3)})
        >>> state = gradtx.set_hyperparams(state, learning_rate=3e-4)
        >>> gradtx.hyperparams(state)["learning_rate"]
        0.0003
    """
    entries = _entries(state)
    leaves, treedef = jax.tree.flatten(state)
    for key, value in values.items():
        entry = _find(entries, key)
        if entry.scheduled:
            raise ValueError(
                f"'{entry.qualified}' follows a schedule and is recomputed at every step; "
                "give the optimizer a number (or use gradtx.inject_hyperparams) to set it by hand"
            )
        old = leaves[entry.leaf_index]
        new = jnp.asarray(value)
        if new.shape != jnp.shape(old):
            raise ValueError(f"{entry.qualified} must be a scalar, got a value of shape {new.shape}")
        leaves[entry.leaf_index] = new.astype(old.dtype)
    return jax.tree.unflatten(treedef, leaves)


def step_count(state: Any) -> jax.Array:
    """The number of updates applied: the first ``count`` found in the state.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.sgd(0.1)
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.ones(2), state)
        >>> int(gradtx.step_count(state))
        1
    """
    for path, leaf in _tree.leaves_with_path(state):
        names = [_tree.key_name(k) for k in path]
        if "count" in names and HYPERPARAMS_FIELD not in names:
            return leaf
    raise ValueError("this state has no step counter ('count'); it was not built by a counting transform")


# --------------------------------------------------------------- scheduling any


class InjectHyperparamsState(NamedTuple):
    """``inject_hyperparams``: the step count and the inner optimizer's state."""

    count: jax.Array
    inner_state: Any


def _schedule_entries(state: Any, values: dict[str, jax.Array], dtype: Any) -> tuple[Any, set[str]]:
    """Replace every entry named in ``values`` by ``Scheduled(value)``; return the names found."""
    found: set[str] = set()

    def replace(path, leaf):
        names = [_tree.key_name(k) for k in path]
        if len(names) < 2 or names[-2] != HYPERPARAMS_FIELD or names[-1] not in values:
            return leaf
        found.add(names[-1])
        old = leaf.value if isinstance(leaf, Scheduled) else leaf
        return Scheduled(jnp.asarray(values[names[-1]]).astype(dtype or jnp.asarray(old).dtype))

    new = jax.tree_util.tree_map_with_path(replace, state, is_leaf=lambda x: isinstance(x, Scheduled))
    return new, found


def inject_hyperparams(
    inner_factory: Callable[..., Any], static_args: str | tuple[str, ...] = (), hyperparam_dtype: Any = None,
) -> Callable[..., Any]:
    """Let any numeric argument of an optimizer factory be a schedule.

    ``inject_hyperparams(gradtx.adam)(learning_rate=sched, b1=0.9)`` builds Adam
    and, at every step, sets each hyperparameter given as a function of the step
    to that function's value. Numbers stay numbers (every gradtx hyperparameter
    already lives in the state, where :func:`set_hyperparams` changes it).
    Callables that are not schedules, such as a weight-decay ``mask`` function,
    must be named in ``static_args``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=lambda t: 0.1 / (1 + t), momentum=0.9)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.ones(1), state)
        >>> gradtx.hyperparams(state)
        {'momentum': 0.9, 'learning_rate': 0.05}
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)

    def build(*args: Any, **kwargs: Any):
        from gradtx.core.base import GradientTransformation
        from gradtx.core.numerics import safe_increment, zero_count

        given = dict(signature.bind(*args, **kwargs).arguments)
        schedules = {k: v for k, v in given.items() if k not in static and callable(v)}
        placeholders = {k: jnp.asarray(s(0), dtype=float_dtype()) for k, s in schedules.items()}
        inner = inner_factory(**{**given, **placeholders})

        def at(count):
            return {k: s(count) for k, s in schedules.items()}

        def init(params):
            inner_state, found = _schedule_entries(inner.init(params), at(zero_count()), hyperparam_dtype)
            missing = sorted(set(schedules) - found)
            if missing:
                known = sorted({e.name for e in _entries(inner_state)})
                raise ValueError(
                    f"inject_hyperparams: the state of {getattr(inner_factory, '__name__', inner_factory)} "
                    f"keeps no hyperparameter named {missing}; it keeps {known}"
                )
            return InjectHyperparamsState(zero_count(), inner_state)

        def update(updates, state, params=None, **extra_args):
            updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
            count = safe_increment(state.count)
            inner_state, _ = _schedule_entries(inner_state, at(count), hyperparam_dtype)
            return updates, InjectHyperparamsState(count, inner_state)

        return GradientTransformation(init, update)

    return build
