r"""The adaptive family: momentum, moving averages and the second-moment scalings.

Each transform keeps exponential moving averages ("moments") of the gradient
``g`` and returns a rescaled direction. Arithmetic happens in the promotion of
the gradient's and the moment's dtypes; moments are stored back in their own
dtype and updates leave in the dtype they came in.

Complex gradients work throughout: :math:`g^2` is :math:`|g|^2`, first moments are
complex and second moments real (float32 for complex64); second moments of float16
parameters are kept in float32, whose range holds :math:`(1-\beta_2) g^2`. See
"Complex parameters" and "float16 state" in the design notes.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation, Updates
from gradtx.core.hyperparams import Hyperparams, check_decay, check_nonnegative
from gradtx.core.numerics import (
    abs_sq, bias_correction, compute_dtype, magnitudes_like, moments_like, real_dtype, safe_increment, zero_count,
)


def _as(dtype, *values):
    """Hyperparameters (real numbers) in the real dtype of the computation ``dtype``."""
    return tuple(jnp.asarray(v).astype(real_dtype(dtype)) for v in values)


def _moment(g: jax.Array, m: jax.Array, decay: jax.Array, order: int) -> jax.Array:
    """One step of an exponential moving average of ``g`` (``order=1``) or of ``|g|**2`` (``order=2``),
    computed in at least float32 and stored in ``m``'s dtype (real for ``order=2``)."""
    dtype = compute_dtype(g, m)
    (decay,) = _as(dtype, decay)
    g = g.astype(dtype)
    target = g if order == 1 else abs_sq(g) if order == 2 else g**order
    return (decay * m + (1 - decay) * target).astype(m.dtype)


def _zeros(params, dtype):
    """First moments: zeros like ``params`` in ``dtype`` (complex leaves stay complex)."""
    return moments_like(params, dtype)


def _magnitudes(params, dtype=None, fill_value=0):
    """Second moments and other magnitudes: real, float32 for float16 parameters (see ``magnitude_dtype``)."""
    return magnitudes_like(params, fill_value, dtype)


def _check(state_tree: Updates, updates: Updates, shapes: bool = True) -> None:
    _tree.check_same_structure(state_tree, updates, "the tree this state was built for", "the updates", shapes=shapes)


# ------------------------------------------------------------------ momentum


class TraceState(NamedTuple):
    """``trace``: the momentum buffer."""

    trace: Updates
    hyperparams: dict[str, Any]


def trace(decay: float, nesterov: bool = False, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""Heavy-ball momentum (Polyak, 1964), with Nesterov's variant.

    .. math::
        b_t = g_t + \mu\, b_{t-1}, \qquad u_t = b_t \;\;(\text{or } g_t + \mu\, b_t \text{ with Nesterov})

    ``decay`` is the momentum coefficient :math:`\mu`; the state holds it as ``momentum``.

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
        return TraceState(_zeros(params, accumulator_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.trace, updates)
        mu = hp.values(state.hyperparams)["momentum"]

        def step(g, b):
            dtype = compute_dtype(g, b)
            (m,) = _as(dtype, mu)
            new_b = g + m * b
            out = g + m * new_b if nesterov else new_b
            return out.astype(g.dtype), new_b.astype(b.dtype)

        pairs = jax.tree.map(step, updates, state.trace)
        out, new_trace = _unzip(pairs, updates)
        return out, TraceState(new_trace, state.hyperparams)

    return GradientTransformation(init, update)


def _unzip(pairs, like):
    """Split a tree of pairs, shaped like ``like`` above the pairs, into two trees."""
    treedef = jax.tree.structure(like)
    flat = treedef.flatten_up_to(pairs)
    return (
        jax.tree.unflatten(treedef, [p[0] for p in flat]),
        jax.tree.unflatten(treedef, [p[1] for p in flat]),
    )


class EmaState(NamedTuple):
    """``ema``: the step count and the moving average."""

    count: jax.Array
    ema: Updates
    hyperparams: dict[str, Any]


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""An exponential moving average of the updates, optionally bias-corrected.

    .. math::
        e_t = \beta e_{t-1} + (1-\beta) g_t, \qquad u_t = e_t / (1 - \beta^t) \;\;(\text{or } e_t)

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.ema(0.9)
        >>> u, _ = tx.update(jnp.full(1, 2.0), tx.init(jnp.zeros(1)))
        >>> [round(x, 5) for x in u.tolist()]
        [2.0]
    """
    hp = Hyperparams(decay=check_decay("decay", decay), allow_schedules=False)

    def init(params):
        return EmaState(zero_count(), _zeros(params, accumulator_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.ema, updates)
        beta = hp.values(state.hyperparams)["decay"]
        count = safe_increment(state.count)
        new = jax.tree.map(lambda g, e: _moment(g, e, beta, 1), updates, state.ema)

        def out(g, e):
            (b,) = _as(compute_dtype(g, e), beta)
            return (bias_correction(e, b, count) if debias else e).astype(g.dtype)

        return jax.tree.map(out, updates, new), EmaState(count, new, state.hyperparams)

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------- Adam


class ScaleByAdamState(NamedTuple):
    """Adam's state: the step count ``t`` and the moments ``m`` (``mu``) and ``v`` (``nu``)."""

    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def _adam_hyperparams(b1, b2, eps, eps_root) -> Hyperparams:
    return Hyperparams(
        b1=check_decay("b1", b1), b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps), eps_root=check_nonnegative("eps_root", eps_root),
        allow_schedules=False,
    )


def _bias_reciprocals(b1, b2, count):
    """``1 / (1 - b1^t)``, ``1 / (1 - b1^(t+1))`` and ``1 / (1 - b2^t)``: Adam's bias corrections
    as factors. Multiplying by them (as XLA does under ``jit`` anyway) keeps eager and jitted
    updates equal to the bit."""
    t, t_next = count.astype(b1.dtype), safe_increment(count).astype(b1.dtype)
    return 1 / (1 - b1**t), 1 / (1 - b1**t_next), 1 / (1 - b2**t)


def _adam_first_moment(g, m, b1, c1, c1_next, nesterov):
    """The bias-corrected first moment, given :func:`_bias_reciprocals`; Nesterov's look-ahead
    form when asked (Dozat, 2016)."""
    return b1 * m * c1_next + (1 - b1) * g * c1 if nesterov else m * c1


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
    mu_dtype: Any = None, nu_dtype: Any = None, *, nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam's direction (Kingma & Ba, 2015, Algorithm 1).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = m_t / (1-\beta_1^t), \quad \hat v_t = v_t / (1-\beta_2^t), \quad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    With ``nesterov=True`` (NAdam, Dozat 2016),
    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`.
    ``eps_root > 0`` keeps the square root differentiable at zero gradients.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adam()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # the first step is sign(g), up to eps
        [1.0, -1.0]
    """
    hp = _adam_hyperparams(b1, b2, eps, eps_root)

    def init(params):
        return ScaleByAdamState(zero_count(), _zeros(params, mu_dtype), _magnitudes(params, nu_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: _moment(g, m, h["b1"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: _moment(g, v, h["b2"], 2), updates, state.nu)

        @functools.cache  # once per dtype, not once per leaf: the program stays small
        def constants(dtype):
            b1_, b2_, eps_, eps_root_ = _as(dtype, h["b1"], h["b2"], h["eps"], h["eps_root"])
            return (b1_, eps_, eps_root_, *_bias_reciprocals(b1_, b2_, count))

        def direction(g, m, v):
            dtype = compute_dtype(g, m, v)
            b1_, eps_, eps_root_, c1, c1_next, c2 = constants(dtype)
            m_hat = _adam_first_moment(g.astype(dtype), m.astype(dtype), b1_, c1, c1_next, nesterov)
            v_hat = v.astype(real_dtype(dtype)) * c2  # real, for complex g too
            return (m_hat / (jnp.sqrt(v_hat + eps_root_) + eps_)).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


class ScaleByAmsgradState(NamedTuple):
    """AMSGrad's state: Adam's, plus the running maximum of the corrected second moment."""

    count: jax.Array
    mu: Updates
    nu: Updates
    nu_max: Updates
    hyperparams: dict[str, Any]


def scale_by_amsgrad(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None,
) -> GradientTransformation:
    r"""AMSGrad (Reddi, Kale & Kumar, 2018): Adam with a non-increasing step size.

    .. math::
        \hat v^{max}_t = \max(\hat v^{max}_{t-1}, \hat v_t), \qquad
        u_t = \hat m_t / (\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon)

    with :math:`\hat m_t, \hat v_t` Adam's bias-corrected moments (the maximum is
    taken of the corrected :math:`\hat v_t`, as Optax does; torch.optim takes it
    before correcting).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_amsgrad()
        >>> u, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]
        [1.0]
    """
    hp = _adam_hyperparams(b1, b2, eps, eps_root)

    def init(params):
        return ScaleByAmsgradState(
            zero_count(), _zeros(params, mu_dtype), _magnitudes(params), _magnitudes(params), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        _check(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: _moment(g, m, h["b1"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: _moment(g, v, h["b2"], 2), updates, state.nu)

        def step(g, m, v, v_max):
            dtype = compute_dtype(g, m, v, v_max)
            b1_, b2_, eps_, eps_root_ = _as(dtype, h["b1"], h["b2"], h["eps"], h["eps_root"])
            real = real_dtype(dtype)  # the second moments are real for complex gradients too
            new_max = jnp.maximum(v_max.astype(real), bias_correction(v.astype(real), b2_, count))
            u = bias_correction(m.astype(dtype), b1_, count) / (jnp.sqrt(new_max + eps_root_) + eps_)
            return u.astype(g.dtype), new_max.astype(v_max.dtype)

        out, nu_max = _unzip(jax.tree.map(step, updates, mu, nu, state.nu_max), updates)
        return out, ScaleByAmsgradState(count, mu, nu, nu_max, state.hyperparams)

    return GradientTransformation(init, update)


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    r"""AdaMax (Kingma & Ba, 2015, Algorithm 2): Adam with the infinity norm.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u^{\infty}_t = \max(\beta_2 u^{\infty}_{t-1}, |g_t| + \epsilon), \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{u^{\infty}_t}

    The state is a :class:`ScaleByAdamState` whose ``nu`` holds :math:`u^\infty`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adamax()
        >>> u, _ = tx.update(jnp.array([-4.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]
        [-1.0]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1), b2=check_decay("b2", b2), eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByAdamState(zero_count(), _zeros(params, None), _magnitudes(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: _moment(g, m, h["b1"], 1), updates, state.mu)

        def infinity_norm(g, u):
            dtype = compute_dtype(jnp.abs(g), u)  # real, for complex gradients too
            b2_, eps_ = _as(dtype, h["b2"], h["eps"])
            return jnp.maximum(b2_ * u, jnp.abs(g).astype(dtype) + eps_).astype(u.dtype)

        nu = jax.tree.map(infinity_norm, updates, state.nu)

        def direction(g, m, u):
            dtype = compute_dtype(g, m, u)
            (b1_,) = _as(dtype, h["b1"])
            return (bias_correction(m.astype(dtype), b1_, count) / u).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


# ------------------------------------------------------------- RMS and AdaGrad


class ScaleByRmsState(NamedTuple):
    """RMSProp's state: the step count and the moving average ``nu`` of squared gradients."""

    count: jax.Array
    nu: Updates
    hyperparams: dict[str, Any]


class ScaleByStddevState(NamedTuple):
    """Centered RMSProp's state: moving averages of the gradient (``mu``) and its square (``nu``)."""

    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def _rms_hyperparams(decay, eps) -> Hyperparams:
    return Hyperparams(decay=check_decay("decay", decay), eps=check_nonnegative("eps", eps), allow_schedules=False)


def _divide_by_root(g, denominator_sq, eps, eps_in_sqrt):
    return g / jnp.sqrt(denominator_sq + eps) if eps_in_sqrt else g / (jnp.sqrt(denominator_sq) + eps)


def scale_by_rms(
    decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
    eps_in_sqrt: bool = True, bias_correction: bool = False,
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
        return ScaleByRmsState(zero_count(), _magnitudes(params, fill_value=initial_scale), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.nu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        nu = jax.tree.map(lambda g, v: _moment(g, v, h["decay"], 2), updates, state.nu)

        def direction(g, v):
            dtype = compute_dtype(g, v)
            rho, eps_ = _as(dtype, h["decay"], h["eps"])
            v = v.astype(dtype)
            v_hat = _bias_correction(v, rho, count) if debias else v
            return _divide_by_root(g.astype(dtype), v_hat, eps_, eps_in_sqrt).astype(g.dtype)

        return jax.tree.map(direction, updates, nu), ScaleByRmsState(count, nu, state.hyperparams)

    return GradientTransformation(init, update)


_bias_correction = bias_correction  # the name is shadowed by an argument above


def scale_by_stddev(
    decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
    eps_in_sqrt: bool = True, bias_correction: bool = False,
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
            zero_count(), _zeros(params, None), _magnitudes(params, fill_value=initial_scale), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        _check(state.nu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: _moment(g, m, h["decay"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: _moment(g, v, h["decay"], 2), updates, state.nu)

        def direction(g, m, v):
            dtype = compute_dtype(g, m, v)
            rho, eps_ = _as(dtype, h["decay"], h["eps"])
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
        return ScaleByRssState(_magnitudes(params, fill_value=initial_accumulator_value), hp.init())

    def update(updates, state, params=None, **extra_args):
        _check(state.sum_of_squares, updates)
        eps_ = hp.values(state.hyperparams)["eps"]

        def step(g, s):
            dtype = compute_dtype(g, s)
            (e,) = _as(dtype, eps_)
            new_s = s.astype(real_dtype(dtype)) + abs_sq(g.astype(dtype))
            safe = jnp.where(new_s > 0, new_s, 1)
            u = jnp.where(new_s > 0, g * jax.lax.rsqrt(safe + e), 0)
            return u.astype(g.dtype), new_s.astype(s.dtype)

        out, sums = _unzip(jax.tree.map(step, updates, state.sum_of_squares), updates)
        return out, ScaleByRssState(sums, state.hyperparams)

    return GradientTransformation(init, update)
