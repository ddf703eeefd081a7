"""Adam's relatives: AdaBelief, Yogi, RAdam and Adan.

Each ``scale_by_*`` is one paper's direction, built from :mod:`gradtx.optimizers.adam`'
pieces; each optimizer chains it with weight decay (where it has one) and the
learning rate. With float32 gradients above ~1.8e19 the squared moments
overflow to ``+inf``, which no float32 state can avoid; the arithmetic is
arranged so that the affected elements then get a zero update, never NaN.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import abs_sq, bias_correction, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_range
from gradtx.optimizers.adam import ScaleByAdamState, adam_hyperparams, adam_scalars, adam_step
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

# ----------------------------------------------------------------- AdaBelief


ScaleByBeliefState = ScaleByAdamState  # AdaBelief keeps Adam's fields: count, mu, nu (here s_t)


def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdaBelief's direction (Zhuang et al., 2020, :arxiv:`2010.07468`, Algorithm 2): Adam divided by the "belief" in the gradient.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \\
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    :math:`s_t`, the variance of the gradient around its prediction :math:`m_t`, is
    the ``nu`` of a :class:`gradtx.ScaleByAdamState`.

    Args:
        b1: the decay rate :math:`\beta_1` of :math:`m_t`: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`s_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, the paper's :math:`\epsilon` inside :math:`s_t`: a number
            or 0-d array, >= 0.
        nesterov: use NAdam's look-ahead :math:`\hat m_t` (see :func:`gradtx.scale_by_adam`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_belief()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # g - m_1 = 0.9 g: the first step is sign(g) / 0.9
        [1.1111, -1.1111]
    """
    hp = adam_hyperparams(b1, b2, eps, eps_root)

    def init(params):
        return ScaleByAdamState(zero_count(), moments_like(params, None), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        scalars = adam_scalars(h, count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)

        def belief(g, m, s):
            dtype = compute_dtype(g, m, s)
            b2_, eps_root_ = cast_scalars(dtype, h["b2"], h["eps_root"])
            surprise = abs_sq(g.astype(dtype) - m.astype(dtype))
            return (b2_ * s + (1 - b2_) * surprise + eps_root_).astype(s.dtype)

        nu = jax.tree.map(belief, updates, mu, state.nu)
        out = jax.tree.map(
            lambda g, m, s: adam_step(g, m, s, scalars, nesterov, eps_root_in_sqrt=False)[1].astype(g.dtype),
            updates,
            mu,
            nu,
        )
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdaBelief (Zhuang et al., 2020, :arxiv:`2010.07468`): :math:`\theta_t = \theta_{t-1} - \eta\, u_t` with :func:`scale_by_belief`'s :math:`u_t`.

    Args:
        learning_rate: the step size :math:`\eta`, by default the authors' code's 1e-3 (Optax has
            none): a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of :math:`m_t`: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`s_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, the paper's :math:`\epsilon` inside :math:`s_t`: a number
            or 0-d array, >= 0.
        nesterov: use NAdam's look-ahead :math:`\hat m_t` (see :func:`gradtx.scale_by_adam`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adabelief()
        >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 6) for x in updates.tolist()]  # -lr * sign(g) / 0.9
        [-0.001111]
    """
    return chain(
        scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


# ---------------------------------------------------------------------- Yogi


def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> GradientTransformation:
    r"""Yogi's direction (Zaheer et al., 2018, Algorithm 2): Adam whose :math:`v` changes additively.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \\
        u_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    Algorithm 2 omits Adam's bias correction; gradtx applies it, as Optax does. The
    state is a :class:`gradtx.ScaleByAdamState`.

    Args:
        b1: the decay rate :math:`\beta_1` of :math:`m_t`: a number or 0-d array in [0, 1).
        b2: the rate :math:`\beta_2` of the additive change of :math:`v_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        initial_accumulator_value: :math:`v_0`, a number >= 0; :math:`m_0 = 0` (Optax starts
            :math:`m` at ``initial_accumulator_value`` too).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_yogi(eps=0.0, initial_accumulator_value=0.0)
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]
        [1.0, -1.0]
    """
    hp = adam_hyperparams(b1, b2, eps, eps_root)
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def init(params):
        nu = magnitudes_like(params, fill_value=initial_accumulator_value)
        return ScaleByAdamState(zero_count(), moments_like(params, None), nu, hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        scalars = adam_scalars(h, count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)

        def additive(g, v):
            dtype = compute_dtype(g, v)
            (b2_,) = cast_scalars(dtype, h["b2"])
            g2, v = abs_sq(g.astype(dtype)), v.astype(real_dtype(dtype))
            # sign(v - g^2) by comparisons: v = g^2 = inf (float32 overflow) keeps v, not inf - inf
            step = (1 - b2_) * g2
            return jnp.where(v > g2, v - step, jnp.where(v < g2, v + step, v))

        nu = jax.tree.map(lambda g, v: additive(g, v).astype(v.dtype), updates, state.nu)
        out = jax.tree.map(lambda g, m, v: adam_step(g, m, v, scalars)[1].astype(g.dtype), updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def yogi(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
) -> GradientTransformation:
    r"""Yogi (Zaheer et al., 2018): :math:`\theta_t = \theta_{t-1} - \eta\, u_t` with :func:`scale_by_yogi`'s :math:`u_t`.

    :math:`\epsilon_{root} = 0` and :math:`v_0 = 10^{-6}`, :func:`scale_by_yogi`'s defaults.

    Args:
        learning_rate: the step size :math:`\eta`, by default the 1e-2 the paper recommends (Optax
            has none): a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of :math:`m_t`: a number or 0-d array in [0, 1).
        b2: the rate :math:`\beta_2` of the additive change of :math:`v_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.yogi()
        >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]  # -lr * 3 / (3 + eps), v_0 aside
        [-0.01]
    """
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate, allow_none=False))


# --------------------------------------------------------------------- RAdam


def _sma_length(b2: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""RAdam's :math:`\rho_\infty = 2/(1-\beta_2) - 1` and :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`.

    As written, :math:`\rho_t` is a difference of two numbers near :math:`\rho_\infty`
    (~2000), off by ~1e-2 in float32: enough to move :math:`\rho_5 = 4.996` past 5.
    With :math:`a = 1-\beta_2`, :math:`x = -t\log(1-a)`, :math:`c = -\log(1-a) - a`
    and :math:`\varphi(x) = e^x - 1 - x` (series), :math:`\rho_t = 2(\varphi(x) + tc)/(a(e^x - 1)) - 1`
    sums positive terms; it is used while :math:`x < 1`.
    """
    dtype = b2.dtype
    t = count.astype(dtype)
    a = 1 - b2
    log_b2 = jnp.log1p(-a)
    x = -t * log_b2
    phi = x * x * jnp.polyval(jnp.asarray([1 / math.factorial(k) for k in range(12, 1, -1)], dtype), x)
    c_series = a * a * jnp.polyval(jnp.asarray([1 / k for k in range(12, 1, -1)], dtype), a)
    c = jnp.where(a < 0.1, c_series, -log_b2 - a)
    rho_inf = 2 / a - 1
    small_x = 2 * (phi + t * c) / (a * jnp.expm1(x)) - 1
    large_x = rho_inf - 2 * t * jnp.exp(-x) / -jnp.expm1(-x)
    return rho_inf, jnp.where(x < 1, small_x, large_x)


def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rectified Adam's direction (Liu et al., 2020, :arxiv:`1908.03265`, Algorithm 2).

    Adam's adaptive step has an unbounded variance while few gradients have been
    seen: RAdam uses momentum SGD until the length :math:`\rho_t` of the simple
    moving average that :math:`v_t` approximates exceeds ``threshold``:

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}, \\
        u_t = r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon) \;\text{ if } \rho_t > \text{threshold},
        \quad u_t = \hat m_t \;\text{ otherwise}

    with Adam's :math:`\hat m_t, \hat v_t`. :math:`\rho_t` is computed exactly to float32 rounding.

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        threshold: the :math:`\rho_t` beyond which the step is rectified: a number or 0-d array,
            >= 4. Algorithm 2 uses 4; the authors' code and Optax use 5, the default.
        nesterov: use NAdam's look-ahead :math:`\hat m_t` (see :func:`gradtx.scale_by_adam`), in
            both branches.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_radam()
        >>> state, steps = tx.init(jnp.zeros(1)), []
        >>> for _ in range(7):
        ...     u, state = tx.update(jnp.array([2.0]), state)
        ...     steps.append(round(u.item(), 4))
        >>> steps  # m_hat = 2 while rho_t <= 5, then r_t * sign(g)
        [2.0, 2.0, 2.0, 2.0, 2.0, 0.0258, 0.0327]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        eps_root=check_nonnegative("eps_root", eps_root),
        threshold=check_range("threshold", threshold, 4.0),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByAdamState(zero_count(), moments_like(params, None), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        scalars = adam_scalars(h, count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.nu)

        rho_inf, rho = _sma_length(h["b2"], count)
        rectify = rho > h["threshold"]
        ratio = (rho - 4) * (rho - 2) * rho_inf / jnp.where(rectify, (rho_inf - 4) * (rho_inf - 2) * rho, 1)
        r = jnp.sqrt(jnp.where(rectify, ratio, 0))

        def direction(g, m, v):
            m_hat, adaptive = adam_step(g, m, v, scalars, nesterov)
            return jnp.where(rectify, r.astype(adaptive.dtype) * adaptive, m_hat).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""RAdam (Liu et al., 2020, :arxiv:`1908.03265`): :math:`\theta_t = \theta_{t-1} - \eta\, u_t` with :func:`scale_by_radam`'s :math:`u_t`.

    Args:
        learning_rate: the step size :math:`\eta`, by default the authors' code's 1e-3 (Optax has
            none): a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        threshold: the :math:`\rho_t` beyond which the step is rectified (see
            :func:`scale_by_radam`): a number or 0-d array, >= 4.
        nesterov: use NAdam's look-ahead :math:`\hat m_t` (see :func:`gradtx.scale_by_adam`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.radam()
        >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 6) for x in updates.tolist()]  # rho_1 = 1: momentum SGD, -lr * m_hat
        [-0.002]
    """
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


# ---------------------------------------------------------------------- Adan


class ScaleByAdanState(NamedTuple):
    """Adan's state: the moments ``m``, ``v`` (of gradient differences), ``n``, and the previous gradient ``g``."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    m: Updates
    v: Updates
    n: Updates
    g: Updates
    hyperparams: dict[str, Any]

    @property
    def t(self) -> jax.Array:
        """Optax's name for the step count."""
        return self.count


def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation:
    r"""Adan's direction (Xie et al., 2022, :arxiv:`2208.06677`, Algorithm 1): Nesterov momentum estimated from gradient differences.

    With :math:`\Delta_t = g_t - g_{t-1}` (0 at the first step),

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t, \quad
        n_t = \beta_3 n_{t-1} + (1-\beta_3) (g_t + \beta_2 \Delta_t)^2, \\
        u_t = \frac{\hat m_t + \beta_2 \hat v_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon}

    where hats divide by :math:`1-\beta_i^t`. The paper's :math:`m_0 = g_0` start is
    replaced, as in the authors' code, by bias correction. Optax weights
    :math:`\Delta_t` in :math:`n_t` and :math:`\hat v_t` in :math:`u_t` by :math:`1-\beta_2`;
    gradtx follows the paper (:math:`\beta_2`).

    Args:
        b1: the decay rate :math:`\beta_1` of :math:`m_t`, the complement of the paper's (its
            :math:`\beta_1 = 0.02` is ``b1=0.98``): a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`v_t`, which also weights :math:`\Delta_t` in
            :math:`n_t` and :math:`\hat v_t` in :math:`u_t`; the complement of the paper's: a number
            or 0-d array in [0, 1).
        b3: the decay rate :math:`\beta_3` of :math:`n_t`, the complement of the paper's: a number
            or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adan()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]
        [1.0, -1.0]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        b3=check_decay("b3", b3),
        eps=check_nonnegative("eps", eps),
        eps_root=check_nonnegative("eps_root", eps_root),
        allow_schedules=False,
    )

    def init(params):
        m, v, n = moments_like(params, None), moments_like(params, None), magnitudes_like(params)
        return ScaleByAdanState(zero_count(), m, v, n, moments_like(params, None), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.m, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        first = state.count == 0

        def step(g, m, v, n, g_prev):
            dtype = compute_dtype(g, m, v, n, g_prev)
            b1_, b2_, b3_, eps_, eps_root_ = cast_scalars(dtype, h["b1"], h["b2"], h["b3"], h["eps"], h["eps_root"])
            g_ = g.astype(dtype)
            delta = jnp.where(first, 0, g_ - g_prev.astype(dtype))
            new_m = b1_ * m + (1 - b1_) * g_
            new_v = b2_ * v + (1 - b2_) * delta
            new_n = b3_ * n + (1 - b3_) * abs_sq(g_ + b2_ * delta)
            u = (bias_correction(new_m, b1_, count) + b2_ * bias_correction(new_v, b2_, count)) / (
                jnp.sqrt(bias_correction(new_n, b3_, count) + eps_root_) + eps_
            )
            return u.astype(g.dtype), new_m.astype(m.dtype), new_v.astype(v.dtype), new_n.astype(n.dtype)

        out, m, v, n = unzip(jax.tree.map(step, updates, state.m, state.v, state.n, state.g), updates, 4)
        g = jax.tree.map(lambda x, old: x.astype(old.dtype), updates, state.g)
        return out, ScaleByAdanState(count, m, v, n, g, state.hyperparams)

    return GradientTransformation(init, update)


def adan(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""Adan (Xie et al., 2022, :arxiv:`2208.06677`): :func:`scale_by_adan` with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta\,(u_t + \lambda \theta_{t-1})

    The paper's proximal decay, :math:`\theta_t = (\theta_{t-1} - \eta u_t)/(1 + \lambda\eta)`,
    agrees to first order; gradtx (like Optax) uses AdamW's form.

    Args:
        learning_rate: the step size :math:`\eta`, by default the authors' code's 1e-3 (Optax has
            none): a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of :math:`m_t` (see :func:`scale_by_adan`): a number or
            0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`v_t`: a number or 0-d array in [0, 1).
        b3: the decay rate :math:`\beta_3` of :math:`n_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        weight_decay: the decay rate :math:`\lambda`: a number, 0-d array or schedule of the step, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.array([1.0, 1.0])
        >>> tx = gradtx.adan(0.1, weight_decay=0.5)
        >>> updates, _ = tx.update(jnp.array([1.0, -1.0]), tx.init(params), params)
        >>> [round(x, 4) for x in updates.tolist()]  # -0.1 * (sign(g) + 0.5)
        [-0.15, 0.05]
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
