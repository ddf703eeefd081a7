r"""RMSProp, AdaGrad and AdaDelta: dividing by a running root mean square, or by the root of
summed squares.

Second moments are real for complex gradients and float32 for float16 parameters; see
"Complex parameters" and "float16 state" in the design notes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import abs_sq, bias_correction, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import trace
from gradtx.transforms.regularizers import add_decayed_weights
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


ScaleByRStdDevState = ScaleByStddevState  # Optax's name


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

    Args:
        decay: the decay rate :math:`\rho` of :math:`v`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, under the root or added to it (see ``eps_in_sqrt``): a number or 0-d array, >= 0.
        initial_scale: :math:`v_0`, a number.
        eps_in_sqrt: add :math:`\epsilon` under the root; ``False`` gives
            :math:`g_t / (\sqrt{v_t} + \epsilon)` (torch.optim's form).
        bias_correction: divide :math:`v_t` by :math:`1-\rho^t` first.

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
    r"""Centered RMSProp (Graves, 2013, :arxiv:`1308.0850`): divide by a running standard deviation.

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t, \quad v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        u_t = g_t / \sqrt{v_t - m_t^2 + \epsilon}

    Args:
        decay: the decay rate :math:`\rho` of :math:`m` and :math:`v`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, under the root or added to it (see ``eps_in_sqrt``): a number or 0-d array, >= 0.
        initial_scale: :math:`v_0`, a number (:math:`m_0 = 0`).
        eps_in_sqrt: add :math:`\epsilon` under the root; ``False`` adds it to the root instead.
        bias_correction: divide both :math:`m_t` and :math:`v_t` by :math:`1-\rho^t` first.

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

    Args:
        initial_accumulator_value: :math:`s_0`, Optax's default 0.1 (torch.optim uses 0): a
            number, >= 0.
        eps: :math:`\epsilon`, added under the root: a number or 0-d array, >= 0.

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
    r"""RMSProp (Tieleman & Hinton, 2012), optionally centered (Graves, 2013, :arxiv:`1308.0850`) and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{v_t + \epsilon}

    Args:
        learning_rate: the step size :math:`\eta`, by default torch.optim's 1e-2 (Optax has none):
            a number, 0-d array or schedule of the step, >= 0.
        decay: the decay rate :math:`\rho` of :math:`v`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, under the root or added to it (see ``eps_in_sqrt``): a number or 0-d array, >= 0.
        initial_scale: :math:`v_0`, a number.
        eps_in_sqrt: add :math:`\epsilon` under the root; ``False`` adds it to the root instead.
        centered: divide by the running standard deviation (:func:`scale_by_stddev`) instead.
        momentum: the coefficient of a momentum (:func:`gradtx.trace`) applied to the already
            scaled step, as in Optax: a number or 0-d array in [0, 1); ``None`` for none.
        nesterov: use Nesterov's momentum; ignored without ``momentum``.
        bias_correction: divide the running averages by :math:`1-\rho^t` first.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.rmsprop(0.01, decay=0.9, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]  # -0.01 / sqrt(0.1)
        [-0.0316]
    """
    scaling = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    momentum_block = [] if momentum is None else [trace(momentum, nesterov)]
    return chain(scaling, scale_by_learning_rate(learning_rate, allow_none=False), *momentum_block)


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> GradientTransformation:
    r"""AdaGrad (Duchi, Hazan & Singer, 2011): per-coordinate steps shrinking with the summed squares.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{s_t + \epsilon}

    Args:
        learning_rate: the step size :math:`\eta`, by default torch.optim's 1e-2 (Optax has none):
            a number, 0-d array or schedule of the step, >= 0.
        initial_accumulator_value: :math:`s_0`, by default Optax's 0.1: a number, >= 0.
        eps: :math:`\epsilon`, added under the root, by default Optax's 1e-7: a number or 0-d
            array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
        >>> updates.tolist()
        [-0.5]
    """
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate, allow_none=False))


class ScaleByAdaDeltaState(NamedTuple):
    """AdaDelta's state: running averages ``e_g`` of :math:`g^2` and ``e_x`` of :math:`\\Delta x^2`."""

    e_g: Updates
    e_x: Updates
    hyperparams: dict[str, Any]


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    r"""AdaDelta's direction (Zeiler, 2012, :arxiv:`1212.5701`, Algorithm 1): a step with the units of the parameters.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \quad
        \Delta x_t = \frac{\sqrt{E[\Delta x^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t, \quad
        E[\Delta x^2]_t = \rho E[\Delta x^2]_{t-1} + (1-\rho) \Delta x_t^2

    and :math:`u_t = \Delta x_t` (the sign is flipped by the learning rate).

    Args:
        rho: the decay rate :math:`\rho` of both running averages: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added under both roots: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adadelta(rho=0.5, eps=1e-2)
        >>> u, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]  # sqrt(0.01) / sqrt(0.5 + 0.01)
        [0.14]
    """
    hp = Hyperparams(rho=check_decay("rho", rho), eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        return ScaleByAdaDeltaState(magnitudes_like(params), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.e_g, updates)
        h = hp.values(state.hyperparams)
        e_g = jax.tree.map(lambda g, e: update_moment(g, e, h["rho"], 2), updates, state.e_g)

        def step(g, eg, ex):
            dtype = compute_dtype(g, eg, ex)
            rho_, eps_ = cast_scalars(dtype, h["rho"], h["eps"])
            real = real_dtype(dtype)
            dx = g.astype(dtype) * jnp.sqrt(ex.astype(real) + eps_) / jnp.sqrt(eg.astype(real) + eps_)
            new_ex = rho_ * ex + (1 - rho_) * abs_sq(dx)
            return dx.astype(g.dtype), new_ex.astype(ex.dtype)

        out, e_x = unzip(jax.tree.map(step, updates, e_g, state.e_x), updates, 2)
        return out, ScaleByAdaDeltaState(e_g, e_x, state.hyperparams)

    return GradientTransformation(init, update)


def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
) -> GradientTransformation:
    r"""AdaDelta (Zeiler, 2012, :arxiv:`1212.5701`): :math:`\theta_t = \theta_{t-1} - \eta\, \Delta x_t` (see :func:`scale_by_adadelta`).

    Args:
        learning_rate: the step size :math:`\eta`, which the paper does not have: ``None`` means
            :math:`\eta = 1` (torch.optim's default; Optax's ``None`` applies none, and no sign flip
            either); otherwise a number, 0-d array or schedule of the step, >= 0.
        rho: the decay rate :math:`\rho` of both running averages: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added under both roots: a number or 0-d array, >= 0.
        weight_decay: the L2 coefficient :math:`\lambda`, added to the gradient as in torch.optim
            and Optax, :math:`g_t \leftarrow g_t + \lambda \theta_{t-1}`: a number, 0-d array or
            schedule of the step, >= 0.
        weight_decay_mask: the leaves to decay: a tree of booleans like the parameters, or a
            function of the parameters returning one; ``None`` decays all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.array([1.0])
        >>> tx = gradtx.adadelta(rho=0.5, eps=1e-2)
        >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(params), params)
        >>> [round(x, 4) for x in updates.tolist()]
        [-0.14]
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    )
