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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import paths as _paths
from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation
from gradtx.core.numerics import zero_count

HYPERPARAMS_FIELD = "hyperparams"


class Scheduled(NamedTuple):
    """A hyperparameter that follows a schedule; ``value`` is the one the next update uses."""

    value: jax.Array


def float_dtype():
    """The dtype hyperparameters are stored in: float64 when x64 is on, else float32."""
    return jnp.result_type(float)


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

        return {
            name: Scheduled(self._evaluate(name, zero_count()))
            if name in self.scheduled
            else jnp.asarray(value, dtype=float_dtype())
            for name, value in self.given.items()
        }

    def advance(self, stored: dict[str, Any], count: jax.Array) -> dict[str, Any]:
        if not self.scheduled:
            return stored
        return {
            name: Scheduled(self._evaluate(name, count).astype(value.value.dtype)) if name in self.scheduled else value
            for name, value in stored.items()
        }

    @staticmethod
    def values(stored: dict[str, Any]) -> dict[str, jax.Array]:
        return {k: v.value if isinstance(v, Scheduled) else v for k, v in stored.items()}


# ----------------------------------------------------------------- for users


FORWARDS_FIELD = "forwards_hyperparams"


def forwarded(state_class: type, names: tuple[str, ...] | bool = True) -> type:
    """Mark a wrapper's state class as one whose hyperparameters stand for those of the same names
    in the states it wraps (all of them, or ``names``): the wrapper writes its values there before
    every update, as ``inject_hyperparams`` does, so :func:`hyperparams` lists the wrapper's only.
    Any other wrapper's hyperparameters and its inner optimizer's are listed side by side."""
    setattr(state_class, FORWARDS_FIELD, names)
    return state_class


class _Entry(NamedTuple):
    qualified: str  # owner path and name, e.g. "0/b1"
    name: str
    leaf_index: int
    scheduled: bool
    forwards: bool  # the owner writes this value into the states it wraps


def hyperparam_entries(state: Any) -> list[_Entry]:
    """Every hyperparameter in ``state``: its name, the path of its owner and where it is stored."""
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
        node = _paths.node_at(state, path[: at + 2])
        forwards = getattr(type(_paths.node_at(state, path[:at])), FORWARDS_FIELD, False)
        forwards = forwards is True or (not isinstance(forwards, bool) and name in forwards)
        entries[qualified] = _Entry(qualified, name, index, isinstance(node, Scheduled), forwards)
    return _unshadowed(list(entries.values()))


def _owner(entry: _Entry) -> str:
    return entry.qualified.rpartition("/")[0]


def _inside(inner: str, outer: str) -> bool:
    return inner != outer and (outer == "" or inner.startswith(outer + "/"))


def _unshadowed(entries: list[_Entry]) -> list[_Entry]:
    """A forwarding wrapper's hyperparameter (see :func:`forwarded`) stands for the same name in the
    states it wraps, unless the wrapped one follows a schedule: then that one, the value of the next
    update, is the entry."""
    hidden: set[str] = set()
    for outer in entries:
        if not outer.forwards:
            continue
        for inner in entries:
            if inner.name == outer.name and _inside(_owner(inner), _owner(outer)):
                hidden.add(outer.qualified if inner.scheduled else inner.qualified)
    return [e for e in entries if e.qualified not in hidden]


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
    entries = hyperparam_entries(state)
    leaves = jax.tree.leaves(state)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {(e.name if counts[e.name] == 1 else e.qualified): _plain(leaves[e.leaf_index]) for e in entries}


def _find(entries: list[_Entry], key: str) -> _Entry:
    wanted = key.strip("/").split("/")
    found = [e for e in entries if e.qualified.split("/")[-len(wanted) :] == wanted]
    exact = [e for e in found if e.qualified == "/".join(wanted)]
    found = exact or found  # the outermost owner's name is its whole path ("eps" beside "inner/0/eps")
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
    entries = hyperparam_entries(state)
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


def renamed(inner: GradientTransformation, **names: str) -> GradientTransformation:
    """``inner`` with hyperparameters renamed in its state (``decay="beta"``), so that
    they read back under the argument names of the optimizer built from it."""
    back = {new: old for old, new in names.items()}

    def rename(state, mapping):
        if hasattr(state, "_fields"):  # a NamedTuple state, possibly wrapping others (masked)
            return type(state)(
                *(
                    {mapping.get(k, k): v for k, v in value.items()}
                    if field == "hyperparams"
                    else rename(value, mapping)
                    for field, value in zip(state._fields, state)
                )
            )
        if isinstance(state, tuple):
            return tuple(rename(s, mapping) for s in state)
        return state

    def init(params):
        return rename(inner.init(params), names)

    def update(updates, state, params=None, **extra_args):
        updates, state = inner.update(updates, rename(state, back), params, **extra_args)
        return updates, rename(state, names)

    return GradientTransformation(init, update)
