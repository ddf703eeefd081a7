"""Second moments in sublinear memory: Adafactor's factored estimate and SM3's covers.

An ``n x m`` matrix of squared gradients is summarized by ``n + m`` numbers:
Adafactor keeps moving averages of its row and column means and rebuilds the
rank-1 estimate :math:`R C / \\bar R`; SM3 keeps, per row and per column, the
largest accumulated value and takes the minimum over the sets containing a
coordinate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation, negate
from gradtx.core.hyperparams import Hyperparams, float_dtype, renamed
from gradtx.core.kit import cast_scalars, check_updates, unzip
from gradtx.core.numerics import abs_sq, compute_dtype, magnitude_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_range
from gradtx.transforms.block_scaling import scale_by_param_block_rms
from gradtx.transforms.clipping import clip_by_block_rms
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import ema
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate


def _divide_by_root(g: jax.Array, v_hat: jax.Array) -> jax.Array:
    """``g / sqrt(v_hat)``, and 0 where ``v_hat`` is 0 or not finite (zero rows with no
    epsilon, or squared float32 gradients that overflowed): never NaN."""
    ok = jnp.isfinite(v_hat) & (v_hat > 0)
    return jnp.where(ok, g * jax.lax.rsqrt(jnp.where(ok, v_hat, 1)), 0)


# ---------------------------------------------------------------- Adafactor


class FactoredState(NamedTuple):
    """Adafactor's second moment: row and column statistics of factored leaves, ``v`` of the others.

    For a factored leaf, ``v_row`` holds the moving average of :math:`g^2 + \\epsilon_1`
    averaged over its largest axis and ``v_col`` over its second largest
    (the paper's :math:`R_t/m` and :math:`C_t/n`); ``v`` is a placeholder of shape
    ``(1,)``. For the others ``v`` is the full moving average and the row and
    column statistics are the placeholders.
    """

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    v_row: Updates
    v_col: Updates
    v: Updates
    hyperparams: dict[str, Any]


def _decay_rate_pow(step: jax.Array, exponent: float = 0.8) -> jax.Array:
    """Adafactor's :math:`\\hat\\beta_{2} = 1 - t^{-exponent}` for update ``step`` (counting from 0, so ``t = step + 1``)."""
    t = jnp.asarray(step).astype(float_dtype()) + 1
    return 1 - t ** (-jnp.asarray(exponent).astype(t.dtype))


def _factored_axes(shape: tuple[int, ...], min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The largest axis and the second largest (ties to the later axis), if both are large enough."""
    if len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    largest, second = order[-1], order[-2]
    return None if shape[second] < min_dim_size_to_factor else (largest, second)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float = 1e-30,
    decay_rate_fn: Callable[[jax.Array, Any], jax.Array] = _decay_rate_pow,
) -> GradientTransformation:
    r"""Adafactor's factored second moment (Shazeer & Stern, 2018, :arxiv:`1804.04235`, Algorithms 4 and 5).

    For a leaf whose two largest axes both have at least
    ``min_dim_size_to_factor`` entries, with :math:`G_t = g_t^2 + \epsilon_1`:

    .. math::
        R_t = \hat\beta_{2t} R_{t-1} + (1-\hat\beta_{2t})\, \mathrm{mean}_{cols}(G_t), \quad
        C_t = \hat\beta_{2t} C_{t-1} + (1-\hat\beta_{2t})\, \mathrm{mean}_{rows}(G_t), \\
        \hat V_t = \frac{R_t C_t}{\mathrm{mean}(R_t)}, \qquad u_t = g_t / \sqrt{\hat V_t}

    (the columns being the largest axis, the rows the second largest, the others
    batch axes). Other leaves keep the full
    :math:`\hat V_t = \hat\beta_{2t}\hat V_{t-1} + (1-\hat\beta_{2t}) G_t`.
    Where :math:`g^2` overflows (float32 gradients above ~1.8e19) the statistics
    become ``inf`` and the update of that leaf is 0, not NaN.

    Args:
        factored: whether to factor the leaves that qualify; ``False`` keeps the full second moment of every leaf.
        decay_rate: the exponent of the default decay :math:`\hat\beta_{2t} = 1 - t^{-\text{decay\_rate}}`
            (the paper's 0.8); a number or 0-d array.
        step_offset: the update at which the decay starts, a number or 0-d array: ``decay_rate_fn`` sees
            :math:`i = \max(\text{count} - \text{step\_offset}, 0)`, so earlier updates use :math:`\hat\beta_2 = 0`
            (Optax gives NaN there).
        min_dim_size_to_factor: the size that both of a leaf's two largest axes must reach for it to be factored.
        epsilon: the paper's :math:`\epsilon_1`, added to :math:`g_t^2`; a number or 0-d array.
        decay_rate_fn: ``decay_rate_fn(i, decay_rate)`` gives :math:`\hat\beta_{2t}`; by default the paper's
            :math:`1 - t^{-0.8}` with :math:`t = i + 1`, so that :math:`\hat\beta_{21} = 0`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
        >>> state = tx.init(jnp.zeros((2, 3)))
        >>> u, state = tx.update(jnp.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]), state)
        >>> [round(x, 4) for x in u[0].tolist()], state.v_row.shape, state.v_col.shape
        ([1.0, 1.0, 1.0], (2,), (3,))
    """
    check_range("min_dim_size_to_factor", min_dim_size_to_factor, 1)
    hp = Hyperparams(
        decay_rate=check_nonnegative("decay_rate", decay_rate),
        step_offset=check_nonnegative("step_offset", step_offset),
        epsilon=check_nonnegative("epsilon", epsilon),
        allow_schedules=False,
    )

    def axes(p):
        return _factored_axes(jnp.shape(p), min_dim_size_to_factor) if factored else None

    def init(params):
        def placeholders(p, which):
            p = jnp.asarray(p)
            ax, dtype = axes(p), magnitude_dtype(p)  # real, float32 for float16
            if not ax:  # the full second moment, laid out like its parameter
                return _tree.zeros_like(p, dtype) if which == "v" else jnp.zeros((1,), dtype)
            if which == "v":
                return jnp.zeros((1,), dtype)
            # a row or column statistic: zeros reduced from the parameter keep its other axes' layout
            return jnp.sum(_tree.zeros_like(p, dtype), axis=ax[0] if which == "v_row" else ax[1])

        trees = [jax.tree.map(functools.partial(placeholders, which=w), params) for w in ("v_row", "v_col", "v")]
        return FactoredState(zero_count(), *trees, hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.v, updates, shapes=False)  # v is a (1,) placeholder for factored leaves
        h = hp.values(state.hyperparams)
        since = jnp.maximum(state.count.astype(h["step_offset"].dtype) - h["step_offset"], 0)
        beta = jnp.asarray(decay_rate_fn(since, h["decay_rate"]))

        def step(g, r, c, v):
            ax = axes(g)
            dtype = compute_dtype(g, r, c, v)
            b, eps = cast_scalars(dtype, beta, h["epsilon"])
            g_ = g.astype(dtype)
            sq = abs_sq(g_) + eps
            if not ax:
                new_v = b * v + (1 - b) * sq
                return _divide_by_root(g_, new_v).astype(g.dtype), r, c, new_v.astype(v.dtype)
            cols, rows = ax
            new_r = b * r + (1 - b) * jnp.mean(sq, axis=cols)
            new_c = b * c + (1 - b) * jnp.mean(sq, axis=rows)
            row_stats = jnp.expand_dims(new_r, cols)
            v_hat = row_stats / jnp.mean(row_stats, axis=rows, keepdims=True) * jnp.expand_dims(new_c, rows)
            return _divide_by_root(g_, v_hat).astype(g.dtype), new_r.astype(r.dtype), new_c.astype(c.dtype), v

        out, v_row, v_col, v = unzip(jax.tree.map(step, updates, state.v_row, state.v_col, state.v), updates, 4)
        return out, FactoredState(safe_increment(state.count), v_row, v_col, v, state.hyperparams)

    return GradientTransformation(init, update)


def _relative_step_size(count: jax.Array) -> jax.Array:
    """Adafactor's :math:`\\rho_t = \\min(10^{-2}, 1/\\sqrt{t})`, with ``t = count + 1``."""
    return jnp.minimum(1e-2, jax.lax.rsqrt(jnp.asarray(count).astype(float_dtype()) + 1))


def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Mask = None,
) -> GradientTransformation:
    r"""Adafactor (Shazeer & Stern, 2018, :arxiv:`1804.04235`): factored second moments, update clipping, relative steps.

    .. math::
        U_t = g_t / \sqrt{\hat V_t}, \quad
        \hat U_t = U_t / \max(1, \mathrm{RMS}(U_t)/d), \quad
        \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\, \rho_t, \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\, \alpha_t \hat U_t \;\;(m_t = \alpha_t \hat U_t \text{ without momentum}),
        \qquad \theta_t = \theta_{t-1} - m_t - \lambda_t \theta_{t-1}

    with :math:`\hat V_t` from :func:`scale_by_factored_rms`. The blocks are
    :func:`gradtx.clip_by_block_rms` and :func:`gradtx.scale_by_param_block_rms`
    (whose ``min_scale`` is :math:`\epsilon_2 = 10^{-3}`).

    Args:
        learning_rate: the relative step size :math:`\rho_t`; a number, 0-d array or schedule. ``None`` (default) is
            the paper's :math:`\min(10^{-2}, 1/\sqrt t)`; Optax's ``None`` applies none (:math:`\rho_t = 1`).
        min_dim_size_to_factor: the size both of a leaf's two largest axes must reach for it to be factored.
        decay_rate: the exponent in :math:`\hat\beta_{2t} = 1 - t^{-\text{decay\_rate}}`, a number or 0-d array
            (see :func:`scale_by_factored_rms`).
        decay_offset: the update at which that decay starts, a number or 0-d array (``step_offset`` of
            :func:`scale_by_factored_rms`).
        multiply_by_parameter_scale: whether to scale the step by :math:`\max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))`;
            ``False`` gives :math:`\alpha_t = \rho_t`.
        clipping_threshold: the update clipping threshold :math:`d`, a positive number or 0-d array;
            ``None``: no clipping.
        momentum: the first moment's decay :math:`\beta_1` in [0, 1), a number or 0-d array; ``None``: no momentum.
        dtype_momentum: the dtype in which :math:`m_t` is kept.
        weight_decay_rate: :math:`\lambda_t`, a rate per step that the learning rate does not scale (as in Optax;
            the paper has none); a number, 0-d array or schedule, ``None``: no decay.
        eps: the paper's :math:`\epsilon_1`, a number or 0-d array (``epsilon`` of :func:`scale_by_factored_rms`).
        factored: whether to factor the leaves that qualify; ``False`` keeps every full second moment.
        weight_decay_mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.full((2, 2), 3.0)
        >>> tx = gradtx.adafactor()
        >>> updates, state = tx.update(jnp.array([[1.0, -1.0], [2.0, 0.5]]), tx.init(params), params)
        >>> [round(x, 4) for x in updates[0].tolist()]  # -1e-2 * RMS(params) * sign(g)
        [-0.03, 0.03]
        >>> sorted(gradtx.hyperparams(state))
        ['clipping_threshold', 'decay_offset', 'decay_rate', 'eps', 'learning_rate', 'min_scale']
    """
    blocks = [
        renamed(
            scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
            epsilon="eps",
            step_offset="decay_offset",
        )
    ]
    if clipping_threshold is not None:
        blocks.append(renamed(clip_by_block_rms(clipping_threshold), threshold="clipping_threshold"))
    blocks.append(
        scale_by_learning_rate(_relative_step_size if learning_rate is None else learning_rate, flip_sign=False)
    )
    if multiply_by_parameter_scale:
        blocks.append(scale_by_param_block_rms(1e-3))
    if momentum is not None:
        blocks.append(renamed(ema(momentum, debias=False, accumulator_dtype=dtype_momentum), decay="momentum"))
    if weight_decay_rate is not None:
        blocks.append(
            renamed(add_decayed_weights(weight_decay_rate, weight_decay_mask), weight_decay="weight_decay_rate")
        )
    return chain(*blocks, negate())


# ----------------------------------------------------------------------- SM3


class ScaleBySM3State(NamedTuple):
    """SM3's state: per leaf, a tuple ``mu`` of accumulators, one per axis, and the momentum ``m``."""

    mu: Updates
    m: Updates
    hyperparams: dict[str, Any]

    @property
    def nu(self) -> Updates:
        """Optax's name for the momentum ``m``."""
        return self.m


def _sm3_accumulators(p) -> tuple[jax.Array, ...]:
    """One accumulator per axis of ``p``, each reduced from zeros shaped like ``p`` so that
    it keeps the layout of its axis (the update produces them in that layout)."""
    zeros = _tree.zeros_like(jnp.asarray(p), magnitude_dtype(p))
    if not zeros.ndim:
        return (zeros,)
    return tuple(jnp.sum(zeros, axis=tuple(j for j in range(zeros.ndim) if j != i)) for i in range(zeros.ndim))


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> GradientTransformation:
    r"""SM3's direction (Anil et al., 2019, "Memory-Efficient Adaptive Optimization", :arxiv:`1901.11150`, SM3-II).

    The cover of a leaf is its slices along each axis (rows and columns of a
    matrix): one accumulator :math:`\mu` per slice, :math:`\sum_i n_i` numbers in all.

    .. math::
        \nu_t(j) = \min_{r \ni j} \mu_{t-1}(r) + g_t(j)^2, \quad
        \mu_t(r) = \max_{j \in r} \nu_t(j), \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t / \sqrt{\nu_t + \epsilon}, \qquad u_t = m_t

    :math:`\nu_t` bounds AdaGrad's sum of squares from above. A vector's cover
    is its elements (exact AdaGrad); a scalar has one accumulator.

    Args:
        b1: the momentum's decay :math:`\beta_1` in [0, 1), a number or 0-d array.
        b2: 1 (default) for the paper's sums; below 1 (Optax's option) moving averages,
            :math:`\nu_t = \beta_2 \min \mu_{t-1} + (1-\beta_2) g_t^2`; a number in [0, 1] or 0-d array.
        eps: :math:`\epsilon`, added to :math:`\nu_t` under the square root; a number or 0-d array.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_sm3(b1=0.0, eps=0.0)
        >>> state = tx.init(jnp.zeros((2, 2)))
        >>> _, state = tx.update(jnp.array([[3.0, 0.0], [0.0, 0.0]]), state)
        >>> u, state = tx.update(jnp.array([[4.0, 1.0], [0.0, 1.0]]), state)
        >>> [[round(x, 4) for x in row] for row in u.tolist()]  # nu(0, 1) = min(9, 0) + 1
        [[0.8, 1.0], [0.0, 1.0]]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_range("b2", b2, 0.0, 1.0),
        eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleBySM3State(jax.tree.map(_sm3_accumulators, params), _tree.zeros_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.m, updates)
        h = hp.values(state.hyperparams)

        def step(g, mu, m):
            dtype = compute_dtype(g, m, *mu)
            b1_, b2_, eps_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"])
            g_ = g.astype(dtype)
            ndim = g.ndim
            along = [jnp.reshape(a, [-1 if d == i else 1 for d in range(ndim)]) for i, a in enumerate(mu)]
            bound = functools.reduce(jnp.minimum, along).astype(real_dtype(dtype))
            nu = b2_ * bound + jnp.where(b2_ == 1, 1, 1 - b2_) * abs_sq(g_)
            new_mu = (  # nu >= 0, so the initial 0 changes nothing but lets a 0-size axis reduce
                tuple(jnp.max(nu, axis=tuple(d for d in range(ndim) if d != i), initial=0) for i in range(ndim))
                if ndim
                else (nu,)
            )
            new_m = b1_ * m + (1 - b1_) * _divide_by_root(g_, nu + eps_)
            return (
                new_m.astype(g.dtype),
                tuple(a.astype(old.dtype) for a, old in zip(new_mu, mu)),
                new_m.astype(m.dtype),
            )

        out, mu, m = unzip(jax.tree.map(step, updates, state.mu, state.m), updates, 3)
        return out, ScaleBySM3State(mu, m, state.hyperparams)

    return GradientTransformation(init, update)


def sm3(learning_rate: ScalarOrSchedule = 1e-2, momentum: float = 0.9) -> GradientTransformation:
    r"""SM3 (Anil et al., 2019, :arxiv:`1901.11150`): :math:`\theta_t = \theta_{t-1} - \eta\, m_t` (see :func:`scale_by_sm3`).

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. SM3 approximates AdaGrad, and the
            default 1e-2 is AdaGrad's in torch.optim (Optax has none; the paper tunes it per task).
        momentum: the momentum's decay :math:`\beta_1` in [0, 1), a number or 0-d array (``b1`` of
            :func:`scale_by_sm3`, kept in the state as ``momentum``).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.sm3(0.1, momentum=0.5)
        >>> updates, state = tx.update(jnp.array([[2.0, -1.0]]), tx.init(jnp.zeros((1, 2))))
        >>> [round(x, 4) for x in updates[0].tolist()], gradtx.hyperparams(state)["momentum"]
        ([-0.05, 0.05], 0.5)
    """
    return chain(
        renamed(scale_by_sm3(momentum), b1="momentum"), scale_by_learning_rate(learning_rate, allow_none=False)
    )
