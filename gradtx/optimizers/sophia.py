r"""Sophia (Liu, Li, Hall, Liang & Ma, 2023, :arxiv:`2305.14342`): a second-order optimizer that
divides the gradient's moving average by a moving average of the Hessian's diagonal, estimated
every few steps, and clips the ratio coordinate by coordinate.

The diagonal is estimated with Hutchinson's estimator :math:`u \odot (H u)` (the paper's Sophia-H),
one Hessian-vector product of the loss ``obj_fn`` given to ``update``; any other estimator with
the same ``update(updates, state, params, obj_fn=...)`` interface may replace it.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.control import cond
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, needs_params, update_moment
from gradtx.core.numerics import bias_correction, compute_dtype, safe_increment, zero_count
from gradtx.core.tree import check_real
from gradtx.core.validation import check_decay, check_nonnegative, check_positive, check_that
from gradtx.transforms.combine import chain
from gradtx.transforms.curvature import hutchinson_estimator_diag_hessian, needs_obj_fn
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

_HUTCHINSON = hutchinson_estimator_diag_hessian()  # the default estimator (seed 0); it makes its key in init


class SophiaState(NamedTuple):
    r"""Sophia's state: the step count, :math:`m` (``mu``), :math:`h` (``nu``), the estimator's state."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hessian_fn_state: Any
    hyperparams: dict[str, Any]


def _check_interval(value: Any) -> Any:
    return check_that("update_interval", value, lambda k: k >= 1 and float(k).is_integer(), "an integer >= 1")


def scale_by_sophia(
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
    bias_correction_mu: bool = False,
    lagged_hessian: bool = False,
) -> GradientTransformation:
    r"""Sophia's direction (:arxiv:`2305.14342`, Algorithm 1): clipped, Hessian-preconditioned momentum.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        h_t = \begin{cases} \beta_2 h_{t-k} + (1-\beta_2)\, \hat h_t & t \bmod k = 1 \\
              h_{t-1} & \text{otherwise} \end{cases}, \qquad
        u_t = \operatorname{clip}\!\left(\frac{m_t}{\max(\gamma h_t, \epsilon)}, \rho\right)

    with :math:`\hat h_t` the estimate of the Hessian's diagonal at :math:`\theta_t`
    (``hessian_diagonal_fn``), :math:`h_0 = 0` and :math:`\operatorname{clip}(z, \rho) =
    \max(\min(z, \rho), -\rho)`. Needs the parameters and the loss: ``update(g, state, params,
    obj_fn=loss)``; the estimator runs only on the steps where :math:`t \bmod k = 1`.
    The paper neither bias-corrects :math:`m` nor lags :math:`h`; Optax does both
    (``bias_correction_mu=True, lagged_hessian=True`` give its steps).

    Args:
        b1: :math:`\beta_1`, the decay of :math:`m`: a number or 0-d array in [0, 1).
        b2: :math:`\beta_2`, the decay of :math:`h` (per estimate): a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, the floor of the denominator: a number or 0-d array, > 0.
        gamma: :math:`\gamma`, the factor on :math:`h`: a number or 0-d array, >= 0.
        clip_threshold: :math:`\rho`, the largest step per coordinate: a number or 0-d array, > 0;
            ``None`` does not clip.
        update_interval: :math:`k`, the steps between two estimates: an integer >= 1.
        hessian_diagonal_fn: the estimator of the diagonal (a transform whose ``update`` takes
            ``obj_fn=`` and returns the estimate); the default, or ``None``, is
            :func:`hutchinson_estimator_diag_hessian` with seed 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        verbose: print (``jax.debug.print``) the win rate, the fraction of coordinates whose
            ratio was not clipped, every ``print_win_rate_every_n_steps`` steps.
        print_win_rate_every_n_steps: the period of that print, an integer >= 0 (0: never).
        bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t` (Optax); False: the paper.
        lagged_hessian: use :math:`h_{t-1}` in step :math:`t` (Optax: the estimate made at step
            :math:`t` first acts at :math:`t+1`); False: :math:`h_t`, the paper.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.sophia import scale_by_sophia
        >>> f = lambda w: 0.5 * jnp.sum(w**2)  # h_hat = 1, h_1 = 0.01, m_1 = 0.035 g
        >>> tx, w = scale_by_sophia(gamma=1.0), jnp.array([0.1, 10.0])
        >>> u, _ = tx.update(w, tx.init(w), w, obj_fn=f)
        >>> [round(x, 4) for x in u.tolist()]
        [0.35, 1.0]
    """
    hessian_diagonal_fn = hutchinson_estimator_diag_hessian() if hessian_diagonal_fn is None else hessian_diagonal_fn
    if print_win_rate_every_n_steps < 0 or not isinstance(print_win_rate_every_n_steps, numbers.Integral):
        raise ValueError(f"print_win_rate_every_n_steps must be an integer >= 0, got {print_win_rate_every_n_steps!r}")
    clip = {} if clip_threshold is None else {"clip_threshold": check_positive("clip_threshold", clip_threshold)}
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_positive("eps", eps),
        gamma=check_nonnegative("gamma", gamma),
        **clip,
        update_interval=_check_interval(update_interval),
        allow_schedules=False,
    )

    def init(params):
        check_real("scale_by_sophia", params, "it divides by an estimate of the Hessian's diagonal, a real quantity")
        return SophiaState(
            zero_count(),
            moments_like(params, mu_dtype),
            magnitudes_like(params),
            hessian_diagonal_fn.init(params),
            hp.init(),
        )

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        check_updates(state.mu, updates)
        needs_params("sophia", params, updates)
        needs_obj_fn("sophia", obj_fn)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)

        def estimate(nu, fn_state):  # lines 7-9: h_t = b2 h_{t-k} + (1 - b2) h_hat_t
            h_hat, fn_state = hessian_diagonal_fn.update(updates, fn_state, params, obj_fn=obj_fn, **extra_args)
            return jax.tree.map(lambda e, v: update_moment(e, v, h["b2"], 1), h_hat, nu), fn_state

        k = h["update_interval"].astype(state.count.dtype)
        nu, fn_state = cond(state.count % k == 0, estimate, lambda nu, s: (nu, s), state.nu, state.hessian_fn_state)

        def step(g, m, v):  # line 13: clip(m_t / max(gamma h_t, eps), rho)
            dtype = compute_dtype(g, m, v)
            b1_, gamma_, eps_ = cast_scalars(dtype, h["b1"], h["gamma"], h["eps"])
            m_ = bias_correction(m.astype(dtype), b1_, count) if bias_correction_mu else m.astype(dtype)
            ratio = m_ / jnp.maximum(gamma_ * v.astype(dtype), eps_)
            if clip_threshold is not None:
                (rho,) = cast_scalars(dtype, h["clip_threshold"])
                ratio = jnp.clip(ratio, -rho, rho)
            return ratio.astype(g.dtype)

        out = jax.tree.map(step, updates, mu, state.nu if lagged_hessian else nu)
        if verbose and print_win_rate_every_n_steps > 0 and clip_threshold is not None:
            _print_win_rate(out, h["clip_threshold"], state.count, print_win_rate_every_n_steps)
        return out, SophiaState(count, mu, nu, fn_state, state.hyperparams)

    return GradientTransformation(init, update)


def _print_win_rate(ratios: Updates, rho: jax.Array, count: jax.Array, every: int) -> None:
    """Print the fraction of coordinates of ``ratios`` strictly inside (-rho, rho), every ``every`` steps."""
    leaves = jax.tree.leaves(ratios)
    inside = sum((jnp.sum(jnp.abs(r.astype(jnp.float32)) < rho.astype(jnp.float32)) for r in leaves), jnp.zeros(()))
    rate = inside / max(sum(int(jnp.size(r)) for r in leaves), 1)
    cond(
        count % every == 0,
        lambda: jax.debug.print("sophia: step {step}, win rate {rate}", step=count, rate=rate),
        lambda: None,
    )


def sophia(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    weight_decay_mask: Mask = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
    bias_correction_mu: bool = False,
    lagged_hessian: bool = False,
) -> GradientTransformation:
    r"""Sophia-H (Liu et al., 2023, :arxiv:`2305.14342`): clipped steps along momentum over curvature.

    .. math::
        \theta_{t+1} = \theta_t - \eta_t \lambda \theta_t
            - \eta_t \operatorname{clip}\!\left(\frac{m_t}{\max(\gamma h_t, \epsilon)}, \rho\right)

    with :math:`m_t, h_t` as in :func:`scale_by_sophia` (Algorithm 1, Hutchinson's estimator by
    default). Call ``update(grads, state, params, obj_fn=loss)``, ``loss(params)`` a scalar.

    Args:
        learning_rate: :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: :math:`\beta_1`, the decay of the gradient's average: in [0, 1).
        b2: :math:`\beta_2`, the decay of the Hessian diagonal's average: in [0, 1).
        eps: :math:`\epsilon`, the floor of the denominator, > 0.
        weight_decay: :math:`\lambda`, decoupled weight decay: a number, 0-d array or schedule, >= 0.
        weight_decay_mask: the leaves to decay: a tree of bools or a function of the parameters;
            ``None``: all.
        gamma: :math:`\gamma`, the factor on :math:`h`, >= 0.
        clip_threshold: :math:`\rho`, the largest step per coordinate (times :math:`\eta`), > 0;
            ``None`` does not clip.
        update_interval: :math:`k`, the steps between two Hessian estimates, an integer >= 1.
        hessian_diagonal_fn: the estimator; the default (or ``None``) is
            :func:`hutchinson_estimator_diag_hessian` with seed 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        verbose: print the win rate (see :func:`scale_by_sophia`).
        print_win_rate_every_n_steps: the period of that print, >= 0 (0: never).
        bias_correction_mu: bias-correct :math:`m` as Optax does (the paper does not).
        lagged_hessian: step with :math:`h_{t-1}` as Optax does (the paper uses :math:`h_t`).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.sophia import sophia
        >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 100.0]) * w**2)
        >>> tx, w = sophia(0.05, b1=0.9, weight_decay=0.0, update_interval=1), jnp.ones(2)
        >>> step = jax.jit(lambda w, state: tx.update(jax.grad(loss)(w), state, w, obj_fn=loss))
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = step(w, state)
        ...     w = gradtx.apply_updates(w, updates)
        >>> bool(loss(w) < 1e-9), round(float(w[0] / w[1]), 3)  # Newton-like: the same pace in both
        (True, 1.0)
    """
    return chain(
        scale_by_sophia(
            b1,
            b2,
            eps,
            gamma,
            clip_threshold,
            update_interval,
            hessian_diagonal_fn,
            mu_dtype,
            verbose,
            print_win_rate_every_n_steps,
            bias_correction_mu,
            lagged_hessian,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
