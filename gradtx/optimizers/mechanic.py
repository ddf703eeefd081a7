r"""Mechanic (Cutkosky, Defazio & Mehta, 2023, :arxiv:`2306.00144`): a learning-rate tuner that
wraps any optimizer and learns, online, the factor by which to scale its updates.

The base optimizer's updates :math:`u_t` add up to a displacement :math:`\Delta_{t+1} = \Delta_t +
u_t`; Mechanic plays :math:`x_{t+1} = x_{ref} + S_{t+1} \Delta_{t+1}`, with a scale :math:`S =
\sum_i s_i` tuned by :math:`n` coin-betting learners, one per decay rate :math:`\beta_i = 1 -
10^{-i}`. Each learner bets on the derivative of the loss along the displacement,
:math:`h_t = \langle \Delta_t, g_t \rangle` (plus a weight-decay term), an inner product over all
leaves together.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import OptState, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import cast_scalars, check_updates, copied, moments_like, needs_params, real_vdot, unzip
from gradtx.core.numerics import compute_dtype, safe_increment, zero_count
from gradtx.core.validation import check_nonnegative, check_positive


class MechanicState(NamedTuple):
    r"""Mechanic: the base optimizer's state, the step count, the learners' :math:`r` (reward),
    :math:`m` (running maximum of :math:`|h|`), :math:`v` (second moment of :math:`h`) and :math:`s`
    (scales: the next update uses :math:`S = \sum_i s_i`, also read as ``scale``), each a vector
    over the betas; :math:`x_{ref}` (``x0``), the base optimizer's displacement :math:`\Delta`
    (``delta``) and the hyperparameters."""

    base_optimizer_state: OptState
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Updates
    delta: Updates
    hyperparams: dict[str, Any]

    @property
    def scale(self) -> jax.Array:
        r"""The factor :math:`S = \sum_i s_i` of the next update."""
        return jnp.sum(self.s)


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: float = 0.01,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    r"""Mechanic (Cutkosky, Defazio & Mehta, 2023, :arxiv:`2306.00144`, Algorithm 1): tunes the scale
    of ``base_optimizer``'s updates.

    With :math:`u_t` the base update, :math:`S_t = \sum_i s_{t,i}` and every operation on the
    :math:`n` learners elementwise:

    .. math::
        h_t = \left\langle \Delta_t,\; g_t + \lambda S_t \lVert g_t \rVert \frac{x_t}{\lVert x_t \rVert} \right\rangle, \quad
        m_t = \max(\beta m_{t-1}, |h_t|), \quad
        v_t = \beta^2 v_{t-1} + h_t^2, \\
        r_t = \max(0, \beta r_{t-1} - s_t h_t), \quad
        s_{t+1} = \frac{s_{init}\, m_t / n + r_t}{\sqrt{v_t} + \epsilon}, \quad
        \Delta_{t+1} = \Delta_t + u_t, \quad
        x_{t+1} = x_{ref} + S_{t+1} \Delta_{t+1}

    from :math:`s_1 = 0` and :math:`\Delta_1 = 0`: the first update is zero (:math:`h_1 = 0`),
    the second moves by about :math:`s_{init}` times the base updates. The update returned is
    :math:`x_{t+1} - x_t = S_{t+1} u_t + (S_{t+1} - S_t) \Delta_t`, which assumes the updates are
    applied as returned. Needs the parameters; extra arguments are passed on to the base optimizer,
    which also receives the parameters :math:`x_t`. The state keeps :math:`x_{ref}` and
    :math:`\Delta` in the parameters' dtypes. Optax's ``mechanize`` already moves at the first update
    (by :math:`s_{init} u_1`) and its later steps differ from these too (by ~1% per step while
    :math:`S_t` is near :math:`100 \epsilon`), so the two do not agree number for number.

    Args:
        base_optimizer: the optimizer whose updates are scaled, with its own learning rate (a
            :class:`~gradtx.GradientTransformation`).
        weight_decay: :math:`\lambda`, the weight-decay term of :math:`h_t`: a number or 0-d array, >= 0.
        eps: :math:`\epsilon`, added to :math:`\sqrt{v_t}`: a number or 0-d array, > 0.
        s_init: :math:`s_{init}`, the scale the tuner starts from (its initial wealth): a number
            or 0-d array, > 0.
        num_betas: :math:`n`, the number of learners, with :math:`\beta_i = 1 - 10^{-i}`: an int >= 1.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.mechanic import mechanize
        >>> loss = lambda w: jnp.sum((w - 10.0) ** 2)
        >>> tx, w = mechanize(gradtx.adam(1e-2)), jnp.zeros(2)
        >>> state, update = tx.init(w), jax.jit(tx.update)
        >>> for _ in range(200):
        ...     updates, state = update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> bool(float(state.scale) > 10.0), bool(jnp.all(jnp.abs(w - 10.0) < 0.5))
        (True, True)
    """
    if not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise TypeError(f"base_optimizer must be a GradientTransformation, got {base_optimizer!r}")
    if not isinstance(num_betas, int) or isinstance(num_betas, bool) or num_betas < 1:
        raise ValueError(f"num_betas must be an int >= 1, got {num_betas!r}")
    hp = Hyperparams(
        weight_decay=check_nonnegative("weight_decay", weight_decay),
        eps=check_positive("eps", eps),
        s_init=check_positive("s_init", s_init),
        allow_schedules=False,
    )

    def init(params):
        m, v, r, s = (jnp.zeros((num_betas,), float_dtype()) for _ in range(4))
        return MechanicState(
            base_optimizer.init(params), zero_count(), m, v, r, s, copied(params), moments_like(params), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.delta, updates)
        needs_params("mechanize", params, updates)
        h_ = hp.values(state.hyperparams)
        dtype = float_dtype()
        wd, eps, s_init = (h_[k].astype(dtype) for k in ("weight_decay", "eps", "s_init"))
        u, base_state = base_optimizer.update(updates, state.base_optimizer_state, params, **extra_args)
        check_updates(state.delta, u)
        beta = 1 - 10.0 ** -jnp.arange(1, num_betas + 1, dtype=dtype)

        s, total = state.s, jnp.sum(state.s)
        x_norm = _tree.norm(params).astype(dtype)
        decay = wd * total * _tree.norm(updates).astype(dtype) / jnp.where(x_norm > 0, x_norm, 1)
        h = real_vdot(state.delta, updates, dtype) + decay * real_vdot(state.delta, params, dtype)
        m = jnp.maximum(beta * state.m, jnp.abs(h))
        v = beta**2 * state.v + h**2
        r = jnp.maximum(0, beta * state.r - s * h)
        s_new = (s_init * m / num_betas + r) / (jnp.sqrt(v) + eps)
        total_new = jnp.sum(s_new)

        def step(u, delta):  # x_{t+1} - x_t = S_{t+1} u_t + (S_{t+1} - S_t) Delta_t, and Delta_{t+1}
            c = compute_dtype(u, delta)
            new, change = cast_scalars(c, total_new, total_new - total)
            u_, delta_ = u.astype(c), delta.astype(c)
            return (new * u_ + change * delta_).astype(u.dtype), (delta_ + u_).astype(delta.dtype)

        out, delta = unzip(jax.tree.map(step, u, state.delta), updates)
        count = safe_increment(state.count)
        return out, MechanicState(base_state, count, r, m, v, s_new, state.x0, delta, state.hyperparams)

    return GradientTransformation(init, update)
