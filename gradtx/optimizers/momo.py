r"""MoMo and MoMo-Adam (Schaipp, Ohana, Eickenberg, Defazio & Gower, 2023, :arxiv:`2305.07583`):
Polyak-type step sizes from a momentum model of the loss.

MoMo averages the losses :math:`f_k`, the gradients :math:`g_k` and the products
:math:`\langle g_k, x_k\rangle` into a linear model of the loss, truncates it at a lower bound
:math:`f_*` and takes the proximal step on that model: a step size that is the learning rate
while the model is far above the bound and shrinks, Polyak-style, as it nears it. Both need the
loss of the current batch, ``update(grads, state, params, value=loss)``; with
``adapt_lower_bound=True`` the bound is estimated as training goes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import (
    cast_scalars,
    check_updates,
    magnitudes_like,
    moments_like,
    needs_params,
    real_vdot,
    update_moment,
)
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype, safe_increment, scalar_loss, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_range


class MomoState(NamedTuple):
    r"""MoMo's state: :math:`d_k` (``exp_avg``), :math:`\bar f_k` (``barf``), :math:`\gamma_k`,
    the lower bound :math:`f_*` used next (``lb``), the step count and the hyperparameters."""

    exp_avg: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


class MomoAdamState(NamedTuple):
    r"""MoMo-Adam's state: MoMo's, plus Adam's second moment :math:`v_k` (``exp_avg_sq``)."""

    exp_avg: Updates
    exp_avg_sq: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


def _hyperparams(learning_rate, lower_bound, weight_decay, **decays):
    """The learning rate, which may follow a schedule, and the fixed rest, checked."""
    rate = Hyperparams(learning_rate=check_nonnegative("learning_rate", learning_rate))
    fixed = Hyperparams(
        **decays,
        lower_bound=check_range("lower_bound", lower_bound),
        weight_decay=check_nonnegative("weight_decay", weight_decay),
        allow_schedules=False,
    )
    return rate, fixed


def _momo(who, rate, fixed, b1_name, adam, bias_correction, adapt_lower_bound):
    def init(params):
        h = {**rate.init(), **fixed.init()}
        lb = jnp.array(Hyperparams.values(h)["lower_bound"], copy=True)  # its own buffer, apart from h's
        moments = (moments_like(params), magnitudes_like(params)) if adam else (moments_like(params),)
        zeros = (jnp.zeros((), float_dtype()) for _ in range(2))
        return (MomoAdamState if adam else MomoState)(*moments, *zeros, lb, zero_count(), h)

    def update(updates, state, params=None, value=None, **extra_args):
        needs_params(who, params, updates)
        check_updates(state.exp_avg, updates)
        if value is None:
            raise ValueError(f"{who} needs the loss: call update(updates, state, params, value=loss)")
        h = Hyperparams.values(state.hyperparams)
        dtype = state.barf.dtype
        k = safe_increment(state.count)
        beta, alpha, lam, lb0 = cast_scalars(dtype, h[b1_name], h["learning_rate"], h["weight_decay"], h["lower_bound"])
        # Algorithm 1 starts the averages at the first values; with bias correction they start at 0
        decay = beta if bias_correction else jnp.where(state.count == 0, 0, beta)
        rho = 1 - beta ** k.astype(dtype) if bias_correction else jnp.ones((), dtype)

        f = scalar_loss(value, who).astype(dtype)
        barf = decay * state.barf + (1 - decay) * f
        d = jax.tree.map(lambda g, m: update_moment(g, m, decay, 1), updates, state.exp_avg)
        gamma = decay * state.gamma + (1 - decay) * real_vdot(updates, params, dtype)
        if adam:
            v = jax.tree.map(lambda g, s: update_moment(g, s, h["b2"], 2), updates, state.exp_avg_sq)

            def precondition(s):  # D_k = eps + sqrt(v_k / (1 - b2^k)); 0 only where d_k is 0 too
                c = compute_dtype(s)
                b2, eps = cast_scalars(c, h["b2"], h["eps"])
                root = eps + jnp.sqrt(s.astype(c) / (1 - b2 ** k.astype(c)))
                return jnp.where(root > 0, root, jnp.inf)

            D = jax.tree.map(precondition, v)
        else:  # the identity
            D = jax.tree.map(lambda m: jnp.ones((), real_dtype(compute_dtype(m))), d)

        shrink = 1 + alpha * lam
        dot = real_vdot(d, params, dtype)  # <d_k, x_k>
        norms = jax.tree.map(lambda m, s: jnp.sum(abs_sq(m.astype(compute_dtype(m))) / s).astype(dtype), d, D)
        norm = sum(jax.tree.leaves(norms), jnp.zeros((), dtype))  # |d_k|^2 in the norm of D_k^-1
        lb = state.lb if adapt_lower_bound else lb0
        if adapt_lower_bound:  # the model lies below the bound: reset the bound under it
            below = shrink * (barf - gamma) + dot
            lb = jnp.where(below < shrink * rho * lb, jnp.maximum(below / (2 * shrink * rho), lb0), lb)
        gap = shrink * (barf - gamma - rho * lb) + dot
        cap = alpha / rho
        tau = jnp.minimum(cap, jnp.where(norm > 0, jnp.maximum(gap, 0) / jnp.where(norm > 0, norm, 1), cap))
        if adapt_lower_bound:  # the model's value after the step
            lb = jnp.maximum((barf + dot - gamma - tau * norm / 2) / rho, lb0)

        def step(g, x, m, s):
            c = compute_dtype(g, x, m)
            tau_, alpha_lam, shrink_ = cast_scalars(c, tau, alpha * lam, shrink)
            u = -(tau_ * m.astype(c) / s.astype(real_dtype(c)) + alpha_lam * x.astype(c)) / shrink_
            return u.astype(g.dtype)  # (x - tau d / D) / (1 + alpha lam) - x

        out = jax.tree.map(step, updates, params, d, D)
        h_next = rate.advance(state.hyperparams, k)
        if adam:
            return out, MomoAdamState(d, v, barf, gamma, lb.astype(dtype), k, h_next)
        return out, MomoState(d, barf, gamma, lb.astype(dtype), k, h_next)

    return GradientTransformation(init, update)


def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
    *,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""MoMo: SGD with momentum and a model-based step size (Schaipp et al., 2023, :arxiv:`2305.07583`, Algorithm 1).

    With :math:`k = 1, 2, \dots` the update, :math:`f_k` the loss (``value``) and :math:`g_k` the gradient:

    .. math::
        \bar f_k = (1-\beta) f_k + \beta \bar f_{k-1}, \quad
        d_k = (1-\beta) g_k + \beta d_{k-1}, \quad
        \gamma_k = (1-\beta) \langle g_k, x_k\rangle + \beta \gamma_{k-1}, \\
        \tau_k = \min\left(\frac{\alpha_k}{\rho_k},
            \frac{\left[(1+\alpha_k\lambda)(\bar f_k - \gamma_k - \rho_k f_*) + \langle d_k, x_k\rangle\right]_+}{\lVert d_k\rVert^2}\right), \quad
        x_{k+1} = \frac{x_k - \tau_k d_k}{1 + \alpha_k \lambda}

    The averages start at the first values (:math:`\bar f_0 = f_1`, :math:`d_0 = g_1`,
    :math:`\gamma_0 = \langle g_1, x_1\rangle`) and :math:`\rho_k = 1`, as in the paper's Algorithm 1
    and Optax; ``bias_correction=True`` starts them at 0 with :math:`\rho_k = 1 - \beta^k`. With
    :math:`\lambda = 0` the step is Algorithm 1's; the weight decay is the exact proximal step with
    :math:`\frac{\lambda}{2}\lVert x\rVert^2` added to the model, as in the authors' code (Optax
    divides only :math:`x_k` by :math:`1 + \alpha_k\lambda`, not the step). With
    ``adapt_lower_bound`` the bound is estimated online (the paper's rule for unknown bounds):
    reset to half the model's value when the model falls below it, then set to the model's value after the step,
    :math:`(h_k - \tau_k\lVert d_k\rVert^2/2)/\rho_k` with :math:`h_k = \bar f_k + \langle d_k,
    x_k\rangle - \gamma_k`, never below ``lower_bound``. Needs the parameters and ``value=loss``;
    the update is :math:`x_{k+1} - x_k`, to be added. Inner products are real (complex
    parameters count as pairs of reals).

    Args:
        learning_rate: :math:`\alpha_k`, the largest step, >= 0: a number, 0-d array or schedule.
        beta: the momentum :math:`\beta`, a number or 0-d array in [0, 1).
        lower_bound: :math:`f_*`, a lower bound of the loss (0 for most losses): a finite number or 0-d array.
        weight_decay: :math:`\lambda`, >= 0: a number or 0-d array.
        adapt_lower_bound: estimate :math:`f_*` online, starting from (and never below) ``lower_bound``.
        bias_correction: start the averages at 0 and correct them by :math:`\rho_k` (the authors'
            code's option); the default follows Algorithm 1.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.momo import momo
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = momo(), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     value, grad = jax.value_and_grad(loss)(w)
        ...     updates, state = tx.update(grad, state, w, value=value)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 3) for x in w.tolist()]
        [3.0, 3.0]
    """
    rate, fixed = _hyperparams(learning_rate, lower_bound, weight_decay, beta=check_decay("beta", beta))
    return _momo("momo", rate, fixed, "beta", False, bias_correction, adapt_lower_bound)


def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo-Adam: Adam with MoMo's model-based step size (Schaipp et al., 2023, :arxiv:`2305.07583`, Algorithm 2).

    MoMo's model (see :func:`momo`, with :math:`\beta = \beta_1`), with averages started at 0,
    :math:`\rho_k = 1 - \beta_1^k`, and the norm and the step preconditioned by Adam's
    :math:`D_k = \epsilon + \sqrt{v_k / (1 - \beta_2^k)}`, :math:`v_k = \beta_2 v_{k-1} + (1-\beta_2) |g_k|^2`:

    .. math::
        \tau_k = \min\left(\frac{\alpha_k}{\rho_k},
            \frac{\left[(1+\alpha_k\lambda)(\bar f_k - \gamma_k - \rho_k f_*) + \langle d_k, x_k\rangle\right]_+}{\lVert d_k\rVert^2_{D_k^{-1}}}\right), \quad
        x_{k+1} = \frac{x_k - \tau_k D_k^{-1} d_k}{1 + \alpha_k \lambda}

    The weight decay and ``adapt_lower_bound`` are as in :func:`momo`. Needs the parameters and ``value=loss``.

    Args:
        learning_rate: :math:`\alpha_k`, >= 0: a number, 0-d array or schedule.
        b1: :math:`\beta_1`, the momentum of :math:`\bar f, d, \gamma`: a number or 0-d array in [0, 1).
        b2: :math:`\beta_2`, the decay rate of :math:`v_k`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root in :math:`D_k`: a number or 0-d array, >= 0.
        lower_bound: :math:`f_*`, a lower bound of the loss: a finite number or 0-d array.
        weight_decay: :math:`\lambda`, >= 0: a number or 0-d array.
        adapt_lower_bound: estimate :math:`f_*` online, starting from (and never below) ``lower_bound``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.momo import momo_adam
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = momo_adam(0.5), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(200):
        ...     value, grad = jax.value_and_grad(loss)(w)
        ...     updates, state = tx.update(grad, state, w, value=value)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    rate, fixed = _hyperparams(
        learning_rate,
        lower_bound,
        weight_decay,
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
    )
    return _momo("momo_adam", rate, fixed, "b1", True, True, adapt_lower_bound)
