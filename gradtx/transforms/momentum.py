r"""Momentum: heavy-ball and Nesterov momentum (``trace``) and moving averages (``ema``).

Arithmetic happens in at least float32; the buffers are stored in their own dtype
(``accumulator_dtype``) and updates leave in the dtype they came in.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradtx.core.aliases import Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import (
    cast_scalars,
    check_updates,
    moments_like,
    unzip,
    update_moment,
)
from gradtx.core.numerics import (
    bias_correction,
    compute_dtype,
    safe_increment,
    zero_count,
)
from gradtx.core.validation import check_decay


class TraceState(NamedTuple):
    """``trace``: the momentum buffer."""

    trace: Updates
    hyperparams: dict[str, Any]


def trace(decay: float, nesterov: bool = False, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""Heavy-ball momentum (Polyak, 1964, :doi:`10.1016/0041-5553(64)90137-5`), with Nesterov's variant.

    .. math::
        b_t = g_t + \mu\, b_{t-1}, \qquad u_t = b_t \;\;(\text{or } g_t + \mu\, b_t \text{ with Nesterov})

    Args:
        decay: :math:`\mu`, the momentum coefficient, kept in the state as ``momentum``.
            A number or 0-d array in [0, 1) (not a schedule).
        nesterov: return :math:`g_t + \mu\, b_t` (Nesterov's variant) instead of :math:`b_t`.
        accumulator_dtype: the dtype the buffer is stored in; ``None`` is the parameters'
            own (a real dtype asked for complex parameters gives the complex one of that
            precision).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.trace(0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u.tolist()
        [1.5]
    """
    hp = Hyperparams(momentum=check_decay("decay", decay), allow_schedules=False)

    def init(params):
        return TraceState(moments_like(params, accumulator_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.trace, updates)
        mu = hp.values(state.hyperparams)["momentum"]

        def step(g, b):
            dtype = compute_dtype(g, b)
            (m,) = cast_scalars(dtype, mu)
            new_b = g + m * b
            out = g + m * new_b if nesterov else new_b
            return out.astype(g.dtype), new_b.astype(b.dtype)

        pairs = jax.tree.map(step, updates, state.trace)
        out, new_trace = unzip(pairs, updates)
        return out, TraceState(new_trace, state.hyperparams)

    return GradientTransformation(init, update)


class EmaState(NamedTuple):
    """``ema``: the step count and the moving average."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    ema: Updates
    hyperparams: dict[str, Any]


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""An exponential moving average of the updates, optionally bias-corrected.

    .. math::
        e_t = \beta e_{t-1} + (1-\beta) g_t, \qquad u_t = e_t / (1 - \beta^t) \;\;(\text{or } e_t)

    Args:
        decay: :math:`\beta`, the decay rate. A number or 0-d array in [0, 1) (not a
            schedule).
        debias: return :math:`e_t / (1 - \beta^t)`; ``False`` returns :math:`e_t`.
        accumulator_dtype: the dtype the buffer is stored in; ``None`` is the parameters'
            own (a real dtype asked for complex parameters gives the complex one of that
            precision).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.ema(0.9)
        >>> u, _ = tx.update(jnp.full(1, 2.0), tx.init(jnp.zeros(1)))
        >>> [round(x, 5) for x in u.tolist()]
        [2.0]
    """
    hp = Hyperparams(decay=check_decay("decay", decay), allow_schedules=False)

    def init(params):
        return EmaState(zero_count(), moments_like(params, accumulator_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.ema, updates)
        beta = hp.values(state.hyperparams)["decay"]
        count = safe_increment(state.count)
        new = jax.tree.map(lambda g, e: update_moment(g, e, beta, 1), updates, state.ema)

        def out(g, e):
            (b,) = cast_scalars(compute_dtype(g, e), beta)
            return (bias_correction(e, b, count) if debias else e).astype(g.dtype)

        return jax.tree.map(out, updates, new), EmaState(count, new, state.hyperparams)

    return GradientTransformation(init, update)
