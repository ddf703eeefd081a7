"""Measuring the updates as they pass through a chain, without changing them: a snapshot of a
function of the updates, its moving average, or several at once, kept in the state under a name
that ``gradtx.tree.get(state, name)`` finds.

Put the block where the updates are worth measuring: ``chain(monitor({...}), clip_by_global_norm(1.0),
...)`` measures the raw gradients, after it the clipped ones. The measurements are in the state
from ``init`` on (zeros until the first update), so the state keeps its structure and a jitted
training loop does not retrace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Updates
from gradtx.core.base import EmptyState, GradientTransformation, stateless
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import ema


class SnapshotState(NamedTuple):
    """``snapshot``: the last measurement, ``{name: value}``."""

    measurement: dict[str, Any]


class MonitorState(NamedTuple):
    """``monitor``: the last measurements by name, and the states of the stateful measures, in the
    order of the dict given to ``monitor``."""

    measurements: dict[str, Any]
    measure_states: tuple[Any, ...]


def _zeros_like_output(measure: Callable[[Updates], Any], updates: Updates) -> Any:
    shapes = jax.eval_shape(measure, updates)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _stateless_measure(measure: Callable[[Updates], Any]) -> GradientTransformation:
    """A transform whose update returns ``measure(updates)``."""
    return stateless(lambda updates, params: measure(updates))


def snapshot(measure_name: str, measure: Callable[[Updates], Any]) -> GradientTransformation:
    """Keep ``measure(updates)`` in the state under ``measure_name``; the updates pass unchanged.

    Args:
        measure_name: the name the measurement is kept under (``gradtx.tree.get(state, name)``).
        measure: a function of the updates, such as :func:`gradtx.tree.norm`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.chain(gradtx.snapshot("grad_norm", gradtx.tree.norm), gradtx.sgd(0.1))
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> float(state[0].measurement["grad_norm"])
        5.0
    """
    if not isinstance(measure_name, str) or not callable(measure):
        raise TypeError(f"snapshot takes a name and a function, got {measure_name!r} and {measure!r}")

    def init(params):
        return SnapshotState({measure_name: _zeros_like_output(measure, params)})

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, SnapshotState({measure_name: measure(updates)})

    return GradientTransformation(init, update)


def measure_with_ema(
    measure: Callable[[Updates], Any], decay: float, debias: bool = True, accumulator_dtype: Any = None
) -> GradientTransformation:
    r"""A stateful measure for :func:`monitor`: the exponential moving average of
    ``measure(updates)``, which its ``update`` returns in place of the updates.

    .. math:: a_t = \beta a_{t-1} + (1 - \beta)\, \mathrm{measure}(u_t), \quad
       \text{returned: } a_t / (1 - \beta^t) \text{ with ``debias``}

    Args:
        measure: a function of the updates returning an array (or a tree of arrays).
        decay: :math:`\beta` in [0, 1).
        debias: divide by :math:`1 - \beta^t` (True), so the first value is the first measurement.
        accumulator_dtype: the dtype of the average; None keeps the measurement's.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.measure_with_ema(gradtx.tree.norm, decay=0.9)
        >>> state = tx.init(jnp.zeros(2))
        >>> value, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> round(float(value), 4)
        5.0
    """

    averaged = ema(decay, debias=debias, accumulator_dtype=accumulator_dtype)
    measured = chain(_stateless_measure(measure), averaged)

    def init(params):
        return (EmptyState(), averaged.init(_zeros_like_output(measure, params)))

    def update(updates, state, params=None, **extra_args):
        return measured.update(updates, state, params, **extra_args)

    return GradientTransformation(init, update)


def monitor(measures: Mapping[str, GradientTransformation | Callable[[Updates], Any]]) -> GradientTransformation:
    """Keep several measurements of the updates in the state by name; the updates pass unchanged.

    Each measure is a function of the updates (kept as it is at every step) or a transform whose
    ``update`` returns the measurement, such as :func:`measure_with_ema`.

    Args:
        measures: ``{name: function or transform}``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.monitor({"norm": gradtx.tree.norm, "norm_ema": gradtx.measure_with_ema(gradtx.tree.norm, 0.5)})
        >>> state = tx.init(jnp.zeros(2))
        >>> for g in ([3.0, 4.0], [6.0, 8.0]):
        ...     _, state = tx.update(jnp.array(g), state)
        >>> {k: round(float(v), 4) for k, v in state.measurements.items()}
        {'norm': 10.0, 'norm_ema': 8.3333}
    """
    if not isinstance(measures, Mapping) or not measures:
        raise TypeError(f"monitor takes a non-empty dict of name: measure, got {measures!r}")
    names = list(measures)
    transforms: list[GradientTransformation] = []
    for name in names:
        measure = measures[name]
        if isinstance(measure, GradientTransformation):
            transforms.append(measure)
        elif callable(measure):
            transforms.append(_stateless_measure(measure))
        else:
            raise TypeError(f"monitor: the measure {name!r} must be a function or a transform, got {measure!r}")

    def init(params):
        states = tuple(tx.init(params) for tx in transforms)
        shapes = [
            jax.eval_shape(lambda s, tx=tx: tx.update(params, s, params)[0], s) for tx, s in zip(transforms, states)
        ]
        zeros = {name: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape) for name, shape in zip(names, shapes)}
        return MonitorState(zeros, states)

    def update(updates, state, params=None, **extra_args):
        values, states = {}, []
        for name, tx, inner in zip(names, transforms, state.measure_states):
            values[name], new = tx.update(updates, inner, params, **extra_args)
            states.append(new)
        return updates, MonitorState(values, tuple(states))

    return GradientTransformation(init, update)
