r"""ADOPT (Taniguchi et al., 2024, :arxiv:`2411.02853`): Adam that converges for any
:math:`\beta_2`, by normalising the gradient with the *previous* second moment, which does not
depend on it, and averaging the normalised gradients (the order of Adam's two steps swapped).

The first update only initialises :math:`v_0 = g_0^2` and returns zeros; the practical variant
clips the normalised gradient at :math:`t^{1/4}`. The state is Adam's
(:class:`~gradtx.optimizers.adam.ScaleByAdamState`), as in Optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_positive
from gradtx.optimizers.adam import ScaleByAdamState
from gradtx.transforms.combine import chain
from gradtx.transforms.scaling import scale_by_learning_rate


def _fourth_root(count: jax.Array) -> jax.Array:
    """The paper's clipping threshold :math:`c_t = t^{1/4}`."""
    return jnp.asarray(count) ** 0.25


def _clip(x: jax.Array, c: jax.Array) -> jax.Array:
    """``x`` clipped to ``[-c, c]``; a complex ``x`` has its modulus clipped, its phase kept."""
    if not jnp.iscomplexobj(x):
        return jnp.clip(x, -c, c)
    size = jnp.abs(x)
    return jnp.where(size > c, x * (c / jnp.where(size > c, size, 1)), x)


def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _fourth_root,
) -> GradientTransformation:
    r"""ADOPT's direction (Taniguchi et al., 2024, :arxiv:`2411.02853`, Algorithm 2).

    .. math::
        v_0 = g_0^2, \quad u_0 = 0; \qquad
        \hat g_t = \mathrm{clip}\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\right), \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \hat g_t, \quad u_t = m_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    for :math:`t \ge 1`, with :math:`m_0 = 0` and :math:`c_t` = ``clip_value_fn(t)``. The update
    at step 0 (the first call) is zero. For complex gradients :math:`g^2` is :math:`|g|^2` and the
    clip bounds the modulus.

    Args:
        b1: the decay rate :math:`\beta_1` of the momentum: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1)
            (any value converges; the paper's 0.9999 is the default).
        eps: :math:`\epsilon`, the floor of :math:`\sqrt{v}`: a number or 0-d array, > 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        nesterov: return :math:`\beta_1 m_t + (1-\beta_1) \hat g_t` instead of :math:`m_t` (Optax's
            option; the paper has none).
        use_clipping: clip the normalised gradient (the paper's practical variant, Section 5);
            ``False`` is the Algorithm 1 of the paper.
        clip_value_fn: :math:`c_t` as a function of the step :math:`t \ge 1`; by default
            :math:`t^{1/4}`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.adopt import scale_by_adopt
        >>> tx = scale_by_adopt(b1=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u0, state = tx.update(jnp.array([2.0]), state)  # only v_0 = 4
        >>> u1, state = tx.update(jnp.array([1.0]), state)  # (1 - b1) * 1 / sqrt(4)
        >>> u0.tolist(), u1.tolist()
        ([0.0], [0.25])
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_positive("eps", eps),
        allow_schedules=False,
    )
    if not callable(clip_value_fn):
        raise TypeError(f"clip_value_fn must be a function of the step count, got {clip_value_fn!r}")

    def init(params):
        return ScaleByAdamState(zero_count(), moments_like(params, mu_dtype), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        first = state.count == 0  # step 0 only initialises v_0 = g_0^2
        c = clip_value_fn(state.count) if use_clipping else None

        def step(g, m, v):
            dtype = compute_dtype(g, m, v)
            b1_, eps_ = cast_scalars(dtype, h["b1"], h["eps"])
            g_hat = g.astype(dtype) / jnp.maximum(jnp.sqrt(v.astype(real_dtype(dtype))), eps_)
            if c is not None:
                (c_,) = cast_scalars(dtype, c)
                g_hat = _clip(g_hat, c_)
            m_new = b1_ * m.astype(dtype) + (1 - b1_) * g_hat
            u = b1_ * m_new + (1 - b1_) * g_hat if nesterov else m_new
            u = jnp.where(first, jnp.zeros_like(u), u)
            m_new = jnp.where(first, m.astype(dtype), m_new)
            return u.astype(g.dtype), m_new.astype(m.dtype)

        def second_moment(g, v):
            v0 = abs_sq(g.astype(compute_dtype(g, v))).astype(v.dtype)
            return jnp.where(first, v0, update_moment(g, v, h["b2"], 2))

        out, mu = unzip(jax.tree.map(step, updates, state.mu, state.nu), updates)
        nu = jax.tree.map(second_moment, updates, state.nu)
        return out, ScaleByAdamState(safe_increment(state.count), mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def adopt(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _fourth_root,
) -> GradientTransformation:
    r"""ADOPT (Taniguchi et al., 2024, :arxiv:`2411.02853`): :math:`\theta_t = \theta_{t-1} - \eta\, m_t`.

    See :func:`scale_by_adopt`; the first update leaves the parameters where they are.

    Args:
        learning_rate: the step size :math:`\eta` (1e-3, the paper's; Optax has no default): a
            number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the momentum: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, the floor of :math:`\sqrt{v}`: a number or 0-d array, > 0.
        mu_dtype: the dtype of the momentum; ``None`` keeps each parameter's.
        nesterov: the look-ahead direction :math:`\beta_1 m_t + (1-\beta_1) \hat g_t` (Optax's option).
        use_clipping: clip the normalised gradient at :math:`c_t` (the paper's practical variant).
        clip_value_fn: :math:`c_t` as a function of the step :math:`t \ge 1`; by default :math:`t^{1/4}`.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.adopt import adopt
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = adopt(0.1, b2=0.999), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 1) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_adopt(
            b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping, clip_value_fn=clip_value_fn
        ),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
