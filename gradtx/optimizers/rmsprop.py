r"""RMSProp and AdaGrad: dividing by a running root mean square, or by the root of summed squares.

Second moments are real for complex gradients and float32 for float16 parameters; see
"Complex parameters" and "float16 state" in the design notes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import (
    cast_scalars,
    check_updates,
    magnitudes_like,
    moments_like,
    unzip,
    update_moment,
)
from gradtx.core.numerics import (
    abs_sq,
    bias_correction,
    compute_dtype,
    real_dtype,
    safe_increment,
    zero_count,
)
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import trace
from gradtx.transforms.scaling import scale_by_learning_rate


class ScaleByRmsState(NamedTuple):
    """RMSProp's state: the step count and the moving average ``nu`` of squared gradients."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    nu: Updates
    hyperparams: dict[str, Any]


class ScaleByStddevState(NamedTuple):
    """Centered RMSProp's state: moving averages of the gradient (``mu``) and its square (``nu``)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def _rms_hyperparams(decay, eps) -> Hyperparams:
    return Hyperparams(decay=check_decay("decay", decay), eps=check_nonnegative("eps", eps), allow_schedules=False)


def _divide_by_root(g, denominator_sq, eps, eps_in_sqrt):
    return g / jnp.sqrt(denominator_sq + eps) if eps_in_sqrt else g / (jnp.sqrt(denominator_sq) + eps)


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp's scaling (Tieleman & Hinton, 2012): divide by a running root mean square.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad u_t = g_t / \sqrt{v_t + \epsilon}

    ``v`` starts at ``initial_scale``; ``eps_in_sqrt=False`` gives
    :math:`g_t / (\sqrt{v_t} + \epsilon)` (torch.optim's form); ``bias_correction``
    divides :math:`v_t` by :math:`1-\rho^t` first.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_rms(decay=0.75, eps=0.0)
        >>> u, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> u.tolist()  # 2 / sqrt(0.25 * 4)
        [2.0]
    """
    hp = _rms_hyperparams(decay, eps)
    debias = bias_correction

    def init(params):
        return ScaleByRmsState(zero_count(), magnitudes_like(params, fill_value=initial_scale), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.nu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["decay"], 2), updates, state.nu)

        def direction(g, v):
            dtype = compute_dtype(g, v)
            rho, eps_ = cast_scalars(dtype, h["decay"], h["eps"])
            v = v.astype(dtype)
            v_hat = _bias_correction(v, rho, count) if debias else v
            return _divide_by_root(g.astype(dtype), v_hat, eps_, eps_in_sqrt).astype(g.dtype)

        return jax.tree.map(direction, updates, nu), ScaleByRmsState(count, nu, state.hyperparams)

    return GradientTransformation(init, update)


_bias_correction = bias_correction  # the name is shadowed by an argument above


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Centered RMSProp (Graves, 2013): divide by a running standard deviation.

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t, \quad v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        u_t = g_t / \sqrt{v_t - m_t^2 + \epsilon}

    Options as in :func:`scale_by_rms`; ``bias_correction`` corrects both averages.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_stddev(decay=0.5, eps=0.0)
        >>> u, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> u.tolist()  # 2 / sqrt(0.5 * 4 - 1 ** 2)
        [2.0]
    """
    hp = _rms_hyperparams(decay, eps)
    debias = bias_correction

    def init(params):
        return ScaleByStddevState(
            zero_count(), moments_like(params, None), magnitudes_like(params, fill_value=initial_scale), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.nu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["decay"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["decay"], 2), updates, state.nu)

        def direction(g, m, v):
            dtype = compute_dtype(g, m, v)
            rho, eps_ = cast_scalars(dtype, h["decay"], h["eps"])
            m, v = m.astype(dtype), v.astype(real_dtype(dtype))
            if debias:
                m, v = _bias_correction(m, rho, count), _bias_correction(v, rho, count)
            # v - |m|^2 >= 0 exactly, but rounding makes it negative when the gradient hardly varies
            variance = jnp.maximum(v - abs_sq(m), 0)
            return _divide_by_root(g.astype(dtype), variance, eps_, eps_in_sqrt).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByStddevState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


class ScaleByRssState(NamedTuple):
    """AdaGrad's state: the running sum of squared gradients."""

    sum_of_squares: Updates
    hyperparams: dict[str, Any]


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    r"""AdaGrad's scaling (Duchi, Hazan & Singer, 2011): divide by the root of summed squares.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad u_t = g_t / \sqrt{s_t + \epsilon} \;\;(0 \text{ where } s_t = 0)

    ``s`` starts at ``initial_accumulator_value`` (Optax's default 0.1; torch.optim uses 0).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
        >>> u, _ = tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))
        >>> u.tolist()
        [-1.0]
    """
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    hp = Hyperparams(eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        return ScaleByRssState(magnitudes_like(params, fill_value=initial_accumulator_value), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.sum_of_squares, updates)
        eps_ = hp.values(state.hyperparams)["eps"]

        def step(g, s):
            dtype = compute_dtype(g, s)
            (e,) = cast_scalars(dtype, eps_)
            new_s = s.astype(real_dtype(dtype)) + abs_sq(g.astype(dtype))
            safe = jnp.where(new_s > 0, new_s, 1)
            u = jnp.where(new_s > 0, g * jax.lax.rsqrt(safe + e), 0)
            return u.astype(g.dtype), new_s.astype(s.dtype)

        out, sums = unzip(jax.tree.map(step, updates, state.sum_of_squares), updates)
        return out, ScaleByRssState(sums, state.hyperparams)

    return GradientTransformation(init, update)


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp (Tieleman & Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{v_t + \epsilon}

    Momentum, when given, is applied to the already scaled step, as in Optax.
    The default learning rate 1e-2 is torch.optim's (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.rmsprop(0.01, decay=0.9, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]  # -0.01 / sqrt(0.1)
        [-0.0316]
    """
    scaling = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    momentum_block = [] if momentum is None else [trace(momentum, nesterov)]
    return chain(scaling, scale_by_learning_rate(learning_rate), *momentum_block)


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> GradientTransformation:
    r"""AdaGrad (Duchi, Hazan & Singer, 2011): per-coordinate steps shrinking with the summed squares.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{s_t + \epsilon}

    The default learning rate 1e-2 is torch.optim's (Optax has none);
    ``initial_accumulator_value`` and ``eps`` are Optax's.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
        >>> updates.tolist()
        [-0.5]
    """
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))
