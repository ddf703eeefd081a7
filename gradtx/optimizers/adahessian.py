r"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, 2020, :arxiv:`2006.00719`): Adam
with the squared gradient replaced by the squared diagonal of the Hessian.

The diagonal is estimated with Hutchinson's estimator :math:`z \odot (H z)` (Rademacher
:math:`z`, one Hessian-vector product of the loss ``obj_fn`` given to ``update``), averaged over
the spatial axes of convolution kernels, and kept as an exponential moving average of its square,
whose square root, raised to the Hessian power :math:`k`, divides the gradient's average.
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
from gradtx.core.validation import check_decay, check_nonnegative, check_range, check_that, concrete_value
from gradtx.transforms.combine import chain
from gradtx.transforms.curvature import hutchinson_estimator_diag_hessian, needs_obj_fn
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

_KERNEL_NDIM = 4  # the leaves spatial averaging applies to: 2-D convolution kernels


class ScaleByAdaHessianState(NamedTuple):
    r"""AdaHessian's state: the step count, :math:`m`, :math:`v`, the last averaged estimate
    :math:`D^{(s)}` (used again until the next refresh), the estimator's state, the hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    m: Updates
    v: Updates
    D: Updates
    hessian_fn_state: Any
    hyperparams: dict[str, Any]


def _check_spatial_axes(spatial_axes: Any) -> tuple[int, ...] | None:
    """The spatial axes of a 4-D kernel as sorted non-negative ints, or None (no averaging)."""
    if spatial_axes is None:
        return None
    ok = isinstance(spatial_axes, (tuple, list)) and all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) and -_KERNEL_NDIM <= int(a) < _KERNEL_NDIM
        for a in spatial_axes
    )
    axes = tuple(sorted({int(a) % _KERNEL_NDIM for a in spatial_axes})) if ok else ()
    if not ok or len(axes) != len(spatial_axes) or not axes:
        raise ValueError(
            f"spatial_axes must be None or a tuple of distinct axes of a 4-D kernel (ints in [-4, 4)), "
            f"got {spatial_axes!r}"
        )
    return axes


def _spatial_average(d: jax.Array, axes: tuple[int, ...] | None) -> jax.Array:
    """Eq. 10 on a kernel: :math:`|D|` averaged over each block (the spatial axes); |D| on other leaves."""
    d = jnp.abs(d)
    if axes is None or d.ndim != _KERNEL_NDIM:
        return d
    return jnp.broadcast_to(jnp.mean(d, axis=axes, keepdims=True), d.shape)


def scale_by_adahessian(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    hessian_power: float = 1.0,
    *,
    update_interval: int = 1,
    spatial_axes: tuple[int, ...] | None = (0, 1),
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaHessian's direction (:arxiv:`2006.00719`, Algorithm 1 and Eqs. 9-12).

    .. math::
        D_t = |z_t \odot (\nabla^2 f(\theta_t)\, z_t)|, \qquad
        D^{(s)}_t = \text{the mean of } D_t \text{ over each block}, \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \big(D^{(s)}_t\big)^2, \\
        u_t = \frac{m_t / (1-\beta_1^t)}{\big(v_t / (1-\beta_2^t)\big)^{k/2} + \epsilon}

    with :math:`m_0 = v_0 = 0`. The blocks are single coordinates, except on 4-D leaves
    (convolution kernels), where a block is all the entries that differ only along
    ``spatial_axes`` (the paper's spatial averaging, block size :math:`b` = the kernel's
    spatial size). :math:`D_t` is estimated on the steps :math:`t \bmod K = 1`
    (:math:`K` = ``update_interval``); on the others the last :math:`D^{(s)}` is used again.
    Needs the parameters and the loss: ``update(g, state, params, obj_fn=loss)``.

    As the authors' code, and unlike Eq. 10, the absolute value of the estimate is averaged
    (it changes only the averaged blocks). The delayed refresh follows the widely used PyTorch
    implementation with the option (``update_each``): :math:`v` keeps averaging the last
    estimate; the paper only says the Hessian is computed every few steps. The state keeps
    :math:`D^{(s)}` for it: three parameter-sized trees (:math:`m, v, D^{(s)}`) in all.

    Args:
        b1: :math:`\beta_1`, the decay of :math:`m`: a number or 0-d array in [0, 1).
        b2: :math:`\beta_2`, the decay of :math:`v`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the denominator: a number or 0-d array, >= 0.
        hessian_power: :math:`k`, the power of the Hessian's diagonal in the denominator:
            a number or 0-d array in [0, 1] (1: Newton-like; 0: momentum SGD; the authors
            suggest also trying 0.5).
        update_interval: :math:`K`, the steps between two estimates: an integer >= 1.
        spatial_axes: the axes of a 4-D leaf to average the estimate over (distinct ints in
            [-4, 4)); ``(0, 1)``, the default, is Flax's (H, W, in, out) kernel layout, ``(2, 3)``
            PyTorch's (out, in, H, W); ``None`` averages nothing. Leaves of other ranks are not averaged.
        hessian_diagonal_fn: the estimator of :math:`z \odot (Hz)` (a transform whose ``update``
            takes ``obj_fn=`` and returns the estimate); ``None``:
            :func:`~gradtx.transforms.curvature.hutchinson_estimator_diag_hessian` with seed 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adahessian import scale_by_adahessian
        >>> f = lambda w: jnp.sum(jnp.array([1.0, 4.0]) * w**2)  # Hessian diag(2, 8)
        >>> tx, w = scale_by_adahessian(eps=0.0), jnp.array([1.0, 1.0])
        >>> u, _ = tx.update(2 * jnp.array([1.0, 4.0]) * w, tx.init(w), w, obj_fn=f)
        >>> u.tolist()  # the Newton step g / diag(H)
        [1.0, 1.0]
    """
    axes = _check_spatial_axes(spatial_axes)
    estimator = hutchinson_estimator_diag_hessian() if hessian_diagonal_fn is None else hessian_diagonal_fn
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        hessian_power=check_range("hessian_power", hessian_power, 0.0, 1.0),
        update_interval=check_that(
            "update_interval", update_interval, lambda k: k >= 1 and float(k).is_integer(), "an integer >= 1"
        ),
        allow_schedules=False,
    )

    def init(params):
        check_real(
            "scale_by_adahessian", params, "it divides by an estimate of the Hessian's diagonal, a real quantity"
        )
        return ScaleByAdaHessianState(
            zero_count(),
            moments_like(params, mu_dtype),
            magnitudes_like(params),
            magnitudes_like(params),
            estimator.init(params),
            hp.init(),
        )

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        check_updates(state.m, updates)
        needs_params("adahessian", params, updates)
        needs_obj_fn("adahessian", obj_fn)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)

        def refresh(d_old, fn_state):  # Eqs. 9-10: D_t = |z (H z)|, averaged over the blocks
            d_new, fn_state = estimator.update(updates, fn_state, params, obj_fn=obj_fn, **extra_args)
            return jax.tree.map(lambda e, d: _spatial_average(e, axes).astype(d.dtype), d_new, d_old), fn_state

        def keep(d_old, fn_state):
            return d_old, fn_state

        phase = state.count % h["update_interval"].astype(state.count.dtype)  # 0: t mod K = 1
        known = concrete_value(phase)  # eagerly, a Python branch: no cond compiled at every call
        if known is None:
            d, fn_state = cond(phase == 0, refresh, keep, state.D, state.hessian_fn_state)
        else:
            d, fn_state = (refresh if known == 0 else keep)(state.D, state.hessian_fn_state)
        m = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.m)
        v = jax.tree.map(lambda e, v: update_moment(e, v, h["b2"], 2), d, state.v)

        def step(g, m, v):  # Eq. 12: m_hat / (v_hat^(k/2) + eps)
            dtype = compute_dtype(g, m, v)
            b1_, b2_, eps_, power = cast_scalars(dtype, h["b1"], h["b2"], h["eps"], h["hessian_power"])
            m_hat = bias_correction(m.astype(dtype), b1_, count)
            v_hat = bias_correction(v.astype(dtype), b2_, count)
            return (m_hat / (v_hat ** (power / 2) + eps_)).astype(g.dtype)

        out = jax.tree.map(step, updates, m, v)
        return out, ScaleByAdaHessianState(count, m, v, d, fn_state, state.hyperparams)

    return GradientTransformation(init, update)


def adahessian(
    learning_rate: ScalarOrSchedule = 0.15,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    weight_decay: ScalarOrSchedule = 0.0,
    hessian_power: float = 1.0,
    *,
    weight_decay_mask: Mask = None,
    update_interval: int = 1,
    spatial_axes: tuple[int, ...] | None = (0, 1),
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaHessian (Yao et al., 2020, :arxiv:`2006.00719`): Adam's step with the Hessian's diagonal.

    .. math::
        \theta_{t+1} = \theta_t - \eta_t \lambda \theta_t
            - \eta_t \frac{m_t / (1-\beta_1^t)}{\big(v_t / (1-\beta_2^t)\big)^{k/2} + \epsilon}

    with :math:`m_t, v_t` as in :func:`scale_by_adahessian` (:math:`v` averages the squared,
    spatially averaged Hutchinson estimate of the Hessian's diagonal) and decoupled weight decay
    :math:`\lambda`. Call ``update(grads, state, params, obj_fn=loss)``, ``loss(params)`` a scalar.
    The defaults are the authors' code's (the paper gives none): :math:`\eta = 0.15`,
    :math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-4}`, :math:`\lambda = 0`, :math:`k = 1`.

    Args:
        learning_rate: :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: :math:`\beta_1`, the decay of the gradient's average: in [0, 1).
        b2: :math:`\beta_2`, the decay of the squared Hessian diagonal's average: in [0, 1).
        eps: :math:`\epsilon`, added to the denominator, >= 0.
        weight_decay: :math:`\lambda`, decoupled weight decay: a number, 0-d array or schedule, >= 0.
        hessian_power: :math:`k`, the Hessian power, in [0, 1].
        weight_decay_mask: the leaves to decay: a tree of bools or a function of the parameters;
            ``None``: all.
        update_interval: the steps between two Hessian estimates, an integer >= 1.
        spatial_axes: the axes of 4-D kernels to average the estimate over; ``(0, 1)`` for Flax's
            (H, W, in, out), ``None`` for none (see :func:`scale_by_adahessian`).
        hessian_diagonal_fn: the estimator; ``None`` is Hutchinson's with Rademacher vectors, seed 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.adahessian import adahessian
        >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 100.0]) * w**2)
        >>> tx, w = adahessian(), jnp.ones(2)
        >>> step = jax.jit(lambda w, state: tx.update(jax.grad(loss)(w), state, w, obj_fn=loss))
        >>> state = tx.init(w)
        >>> for _ in range(200):
        ...     updates, state = step(w, state)
        ...     w = gradtx.apply_updates(w, updates)
        >>> bool(loss(w) < 1e-8), round(float(w[0] / w[1]), 1)  # Newton-like: the same pace in both
        (True, 1.0)
    """
    return chain(
        scale_by_adahessian(
            b1,
            b2,
            eps,
            hessian_power,
            update_interval=update_interval,
            spatial_axes=spatial_axes,
            hessian_diagonal_fn=hessian_diagonal_fn,
            mu_dtype=mu_dtype,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
