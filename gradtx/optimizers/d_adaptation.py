r"""Learning-rate-free Adam: D-Adaptation (Defazio & Mishchenko, 2023, :arxiv:`2301.07733`) and
Prodigy (Mishchenko & Defazio, 2023, :arxiv:`2306.06101`).

Both run Adam with the step size :math:`\gamma_k d_k`, where :math:`\gamma_k` is a learning rate
left at 1 and :math:`d_k` a lower estimate of the distance :math:`D = \lVert x_0 - x_* \rVert`,
grown from :math:`d_0` (``estim_lr0``) as the run reveals it. The estimate is one number for
the whole tree: its inner products and l1 norms run over all leaves together. It is kept in the
state as ``estim_lr``, and the weighted numerator :math:`r_k` as ``numerator_weighted``.
Complex parameters work: :math:`g^2` is :math:`|g|^2`, inner products are
:math:`\mathrm{Re}\langle a, b \rangle` and :math:`|s|` is the modulus.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import (
    cast_scalars,
    check_updates,
    copied,
    magnitudes_like,
    moments_like,
    needs_params,
    real_vdot,
    update_moment,
)
from gradtx.core.numerics import compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_positive


def _betas(betas: Any) -> tuple[Any, Any]:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
    return check_decay("betas[0]", betas[0]), check_decay("betas[1]", betas[1])


def _hyperparams(learning_rate: Any, **numbers: Any) -> tuple[Hyperparams, Hyperparams]:
    """The learning rate (a number or a schedule) and the other hyperparameters (numbers), kept in one dict."""
    check_nonnegative("learning_rate", learning_rate)
    return Hyperparams(learning_rate=learning_rate), Hyperparams(allow_schedules=False, **numbers)


def _init_hyperparams(hps: tuple[Hyperparams, Hyperparams]) -> dict[str, Any]:
    return {**hps[0].init(), **hps[1].init()}


def _correction(on: bool, b1: jax.Array, b2: jax.Array, count: jax.Array) -> jax.Array:
    """The authors' optional bias correction of the step, :math:`\\sqrt{1-b_2^t}/(1-b_1^t)` at step ``t``."""
    if not on:
        return jnp.ones((), b1.dtype)
    t = count.astype(b1.dtype)
    return jnp.sqrt(1 - b2**t) / (1 - b1**t)


def _raised(d: jax.Array, numerator: jax.Array, l1: jax.Array) -> jax.Array:
    r""":math:`\max(d, \text{numerator} / l_1)`; ``d`` while :math:`l_1 = 0` (no gradient yet)."""
    return jnp.where(l1 > 0, jnp.maximum(d, numerator / jnp.where(l1 > 0, l1, 1)), d)


def _times(x: jax.Array, factor: Any) -> jax.Array:
    """``x * factor`` in at least float32 (the dtype of the arithmetic, not of storage)."""
    c = compute_dtype(x)
    (f,) = cast_scalars(c, factor)
    return x.astype(c) * f


# ------------------------------------------------------------------ D-Adaptation


class DAdaptAdamWState(NamedTuple):
    r"""D-Adapt AdamW: the moments :math:`m_k` (``exp_avg``), :math:`v_k` (``exp_avg_sq``) and
    :math:`s_k` (``grad_sum``), the estimate :math:`d_k` (``estim_lr``), :math:`r_k`
    (``numerator_weighted``), the step count and the hyperparameters."""

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    use_bias_correction: bool = False,
) -> GradientTransformation:
    r"""AdamW with D-Adaptation (Defazio & Mishchenko, 2023, :arxiv:`2301.07733`, the Adam variant).

    With :math:`\lambda_k = \gamma_k d_k` and :math:`A_k = \mathrm{diag}(\sqrt{v_k} + \epsilon)`:

    .. math::
        r_{k+1} = \sqrt{\beta_2}\, r_k + (1-\sqrt{\beta_2})\, \lambda_k \langle g_k, s_k \rangle_{A_k^{-1}}, \quad
        m_{k+1} = \beta_1 m_k + (1-\beta_1) \lambda_k g_k, \quad
        v_{k+1} = \beta_2 v_k + (1-\beta_2) g_k^2, \\
        s_{k+1} = \sqrt{\beta_2}\, s_k + (1-\sqrt{\beta_2})\, \lambda_k g_k, \quad
        x_{k+1} = x_k - A_{k+1}^{-1} m_{k+1} - \omega \lambda_k x_k, \quad
        d_{k+1} = \max\left(d_k, \frac{r_{k+1}}{(1-\sqrt{\beta_2}) \lVert s_{k+1} \rVert_1}\right)

    The inner product uses :math:`A_k`, from before this step's gradient, and the weight decay
    :math:`\omega` is decoupled, as in the authors' code. Needs the parameters.

    Args:
        learning_rate: :math:`\gamma_k`, a factor on the adapted step (leave it at 1): a number, 0-d
            array or schedule of the step, >= 0.
        betas: :math:`(\beta_1, \beta_2)`, each a number or 0-d array in [0, 1); read and set as
            ``b1`` and ``b2``.
        eps: :math:`\epsilon`, added to :math:`\sqrt{v}`: a number or 0-d array, >= 0.
        estim_lr0: :math:`d_0`, the first estimate of the distance: a number or 0-d array, > 0.
        weight_decay: :math:`\omega`, decoupled: a number or 0-d array, >= 0.
        use_bias_correction: multiply :math:`\lambda_k` by :math:`\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})`,
            the authors' code's option; Optax's ``dadapt_adamw`` always does. ``False`` follows the paper.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.d_adaptation import dadapt_adamw
        >>> loss = lambda w: jnp.sum((w - 10.0) ** 2)
        >>> tx, w = dadapt_adamw(), jnp.zeros(2)
        >>> state, update = tx.init(w), jax.jit(tx.update)
        >>> for _ in range(300):
        ...     updates, state = update(jax.grad(loss)(w), state, w)
        ...     w = w + updates
        >>> bool(float(state.estim_lr) > 1.0), bool(jnp.all(jnp.abs(w - 10.0) < 0.1))
        (True, True)
    """
    b1, b2 = _betas(betas)
    hps = _hyperparams(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=check_nonnegative("eps", eps),
        estim_lr0=check_positive("estim_lr0", estim_lr0),
        weight_decay=check_nonnegative("weight_decay", weight_decay),
    )

    def init(params):
        scalar = jnp.zeros((), float_dtype())
        return DAdaptAdamWState(
            moments_like(params),
            magnitudes_like(params),
            moments_like(params),
            scalar + hps[1].values(hps[1].init())["estim_lr0"],
            scalar,
            zero_count(),
            _init_hyperparams(hps),
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.exp_avg, updates)
        needs_params("dadapt_adamw", params, updates)
        h = Hyperparams.values(state.hyperparams)
        dtype = float_dtype()
        b1_, b2_, lr, wd = (h[k].astype(dtype) for k in ("b1", "b2", "learning_rate", "weight_decay"))
        count = safe_increment(state.count)
        d = jnp.where(state.count == 0, h["estim_lr0"].astype(dtype), state.estim_lr)
        root = jnp.sqrt(b2_)
        dlr = d * lr * _correction(use_bias_correction, b1_, b2_, count)

        def a_inv(x, v):  # A^{-1} x = x / (sqrt(v) + eps)
            c = compute_dtype(x, v)
            (eps_,) = cast_scalars(c, h["eps"])
            return x.astype(c) / (jnp.sqrt(v.astype(real_dtype(c))) + eps_)

        g = updates
        a_inv_s = jax.tree.map(a_inv, state.grad_sum, state.exp_avg_sq)
        r = root * state.numerator_weighted + (1 - root) * dlr * real_vdot(g, a_inv_s, dtype)
        m = jax.tree.map(lambda g, m: update_moment(_times(g, dlr), m, b1_, 1), g, state.exp_avg)
        v = jax.tree.map(lambda g, v: update_moment(g, v, b2_, 2), g, state.exp_avg_sq)
        s = jax.tree.map(lambda g, s: update_moment(_times(g, dlr), s, root, 1), g, state.grad_sum)
        d_new = _raised(d, r, (1 - root) * _tree.norm(s, 1).astype(dtype))
        u = jax.tree.map(lambda g, m, v, x: (-a_inv(m, v) - _times(x, wd * dlr)).astype(g.dtype), g, m, v, params)
        hyperparams = hps[0].advance(state.hyperparams, count)
        return u, DAdaptAdamWState(m, v, s, d_new, r, count, hyperparams)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------- Prodigy


class ProdigyState(NamedTuple):
    r"""Prodigy: the moments :math:`m_k` (``exp_avg``), :math:`v_k` (``exp_avg_sq``) and :math:`s_k`
    (``grad_sum``), the starting point :math:`x_0` (``params0``), the estimate :math:`d_k`
    (``estim_lr``), :math:`r_k` (``numerator_weighted``), the step count and the hyperparameters."""

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    params0: Updates
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
    *,
    use_bias_correction: bool = False,
) -> GradientTransformation:
    r"""Prodigy (Mishchenko & Defazio, 2023, :arxiv:`2306.06101`, the Adam version): D-Adaptation
    whose estimate grows faster, from the distance travelled :math:`x_0 - x_k`.

    .. math::
        m_{k+1} = \beta_1 m_k + (1-\beta_1) d_k g_k, \quad
        v_{k+1} = \beta_2 v_k + (1-\beta_2) d_k^2 g_k^2, \\
        r_{k+1} = \beta_3 r_k + (1-\beta_3)\, \gamma_k d_k^2 \langle g_k, x_0 - x_k \rangle, \quad
        s_{k+1} = \beta_3 s_k + (1-\beta_3)\, \gamma_k d_k^2 g_k, \\
        d_{k+1} = \max\left(d_k, c\, \frac{r_{k+1}}{\lVert s_{k+1} \rVert_1}\right), \quad
        x_{k+1} = x_k - \gamma_k d_k \left(\frac{m_{k+1}}{\sqrt{v_{k+1}} + d_k \epsilon} + \omega x_k\right)

    with decoupled weight decay :math:`\omega`, as in the authors' code. Needs the parameters;
    the state keeps :math:`x_0` in the parameters' dtype.

    Args:
        learning_rate: :math:`\gamma_k`, a factor on the adapted step (leave it at 1): a number, 0-d
            array or schedule of the step, >= 0.
        betas: :math:`(\beta_1, \beta_2)`, each a number or 0-d array in [0, 1); read and set as
            ``b1`` and ``b2``.
        beta3: :math:`\beta_3` in [0, 1); ``None`` for :math:`\sqrt{\beta_2}` (the paper's choice).
        eps: :math:`\epsilon`, added (times :math:`d_k`) to :math:`\sqrt{v}`: a number or 0-d array, >= 0.
        estim_lr0: :math:`d_0`, the first estimate of the distance: a number or 0-d array, > 0.
        estim_lr_coef: :math:`c`, a factor on the estimate: a number or 0-d array, > 0.
        weight_decay: :math:`\omega`, decoupled: a number or 0-d array, >= 0.
        safeguard_warmup: leave :math:`\gamma_k` out of :math:`s_{k+1}`, so that a learning-rate
            warm-up does not inflate the estimate (the authors' option).
        use_bias_correction: multiply :math:`\gamma_k` by :math:`\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})`
            in the step, :math:`r` and :math:`s`, the authors' code's option; Optax's ``prodigy``
            always does (and adds :math:`d_{k+1}\epsilon` rather than :math:`d_k\epsilon`). ``False``
            follows the paper.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.d_adaptation import prodigy
        >>> loss = lambda w: jnp.sum((w - 10.0) ** 2)
        >>> tx, w = prodigy(), jnp.zeros(2)
        >>> state, update = tx.init(w), jax.jit(tx.update)
        >>> for _ in range(300):
        ...     updates, state = update(jax.grad(loss)(w), state, w)
        ...     w = w + updates
        >>> bool(float(state.estim_lr) > 1.0), bool(jnp.all(jnp.abs(w - 10.0) < 0.1))
        (True, True)
    """
    b1, b2 = _betas(betas)
    numbers: dict[str, Any] = dict(
        b1=b1,
        b2=b2,
        eps=check_nonnegative("eps", eps),
        estim_lr0=check_positive("estim_lr0", estim_lr0),
        estim_lr_coef=check_positive("estim_lr_coef", estim_lr_coef),
        weight_decay=check_nonnegative("weight_decay", weight_decay),
    )
    if beta3 is not None:
        numbers["beta3"] = check_decay("beta3", beta3)
    hps = _hyperparams(learning_rate, **numbers)

    def init(params):
        scalar = jnp.zeros((), float_dtype())
        return ProdigyState(
            moments_like(params),
            magnitudes_like(params),
            moments_like(params),
            copied(params),
            scalar + hps[1].values(hps[1].init())["estim_lr0"],
            scalar,
            zero_count(),
            _init_hyperparams(hps),
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.exp_avg, updates)
        needs_params("prodigy", params, updates)
        h = Hyperparams.values(state.hyperparams)
        dtype = float_dtype()
        b1_, b2_, lr, wd, coef = (
            h[k].astype(dtype) for k in ("b1", "b2", "learning_rate", "weight_decay", "estim_lr_coef")
        )
        b3 = h["beta3"].astype(dtype) if "beta3" in h else jnp.sqrt(b2_)
        count = safe_increment(state.count)
        d = jnp.where(state.count == 0, h["estim_lr0"].astype(dtype), state.estim_lr)
        dlr = d * lr * _correction(use_bias_correction, b1_, b2_, count)
        weight = d**2 if safeguard_warmup else d * dlr  # of g_k in s_{k+1}

        def step(g, m, v, x):  # -gamma d (m / (sqrt(v) + d eps) + wd x)
            c = compute_dtype(g, m, v, x)
            d_, dlr_, eps_, wd_ = cast_scalars(c, d, dlr, h["eps"], wd)
            u = -dlr_ * (m.astype(c) / (jnp.sqrt(v.astype(real_dtype(c))) + d_ * eps_) + wd_ * x.astype(c))
            return u.astype(g.dtype)

        g = updates
        moved = jax.tree.map(lambda x0, x: _times(x0, 1.0) - _times(x, 1.0), state.params0, params)  # x_0 - x_k
        r = b3 * state.numerator_weighted + (1 - b3) * d * dlr * real_vdot(g, moved, dtype)
        m = jax.tree.map(lambda g, m: update_moment(_times(g, d), m, b1_, 1), g, state.exp_avg)
        v = jax.tree.map(lambda g, v: update_moment(_times(g, d), v, b2_, 2), g, state.exp_avg_sq)
        s = jax.tree.map(lambda g, s: update_moment(_times(g, weight), s, b3, 1), g, state.grad_sum)
        d_new = _raised(d, coef * r, _tree.norm(s, 1).astype(dtype))
        u = jax.tree.map(step, g, m, v, params)
        hyperparams = hps[0].advance(state.hyperparams, count)
        return u, ProdigyState(m, v, s, state.params0, d_new, r, count, hyperparams)

    return GradientTransformation(init, update)
