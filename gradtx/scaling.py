"""Scaling the updates by a number, a learning rate or a schedule."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.base import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams import Hyperparams, check_nonnegative
from gradtx.numerics import safe_increment, zero_count


def _times(updates, factor):
    return jax.tree.map(lambda u: (u * factor.astype(u.dtype)).astype(u.dtype), updates)


class ScaleState(NamedTuple):
    """``scale``: only the step size, readable by name."""

    hyperparams: dict[str, Any]


def scale(step_size: float) -> GradientTransformation:
    """Multiply every update by ``step_size``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale(-2.0)
        >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
        [-2.0, -2.0]
    """
    hp = Hyperparams(step_size=step_size, allow_schedules=False)

    def init(params):
        return ScaleState(hp.init())

    def update(updates, state, params=None, **extra_args):
        return _times(updates, hp.values(state.hyperparams)["step_size"]), state

    return GradientTransformation(init, update)


class ScaleByScheduleState(NamedTuple):
    """A transform whose factor may follow a schedule: the step count and the factor."""

    count: jax.Array
    hyperparams: dict[str, Any]


def _scheduled_scale(name: str, value: ScalarOrSchedule, sign: float) -> GradientTransformation:
    hp = Hyperparams(**{name: value})

    def init(params):
        return ScaleByScheduleState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        factor = hp.values(state.hyperparams)[name]
        count = safe_increment(state.count)
        return _times(updates, sign * factor), ScaleByScheduleState(count, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    r"""Multiply by :math:`-\eta` (gradient *descent*), or by :math:`+\eta` with ``flip_sign=False``.

    ``learning_rate`` is a number or a schedule ``step -> value``; update ``t``
    (counting from 0) uses ``learning_rate(t)``. Read or set it with
    ``gradtx.hyperparams(state)["learning_rate"]``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_learning_rate(0.5)
        >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
        [-0.5, -0.5]
    """
    check_nonnegative("learning_rate", learning_rate)
    return _scheduled_scale("learning_rate", learning_rate, -1.0 if flip_sign else 1.0)


def scale_by_schedule(step_size_fn: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """Multiply update ``t`` (counting from 0) by ``step_size_fn(t)``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_schedule(lambda t: 1.0 / (t + 1))
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.ones(1), state)
        >>> tx.update(jnp.ones(1), state)[0].tolist()
        [0.5]
    """
    if not callable(step_size_fn):
        raise TypeError(f"step_size_fn must be a function of the step, got {step_size_fn!r}")
    return _scheduled_scale("step_size", step_size_fn, 1.0)
