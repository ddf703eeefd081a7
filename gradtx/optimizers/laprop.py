r"""LaProp (Ziyin, Wang & Ueda, 2020, :arxiv:`2002.04839`): Adam with its two steps taken in the
other order. The gradient is divided by the root of its second moment first, and the momentum
averages these normalised gradients, so that the momentum and the adaptivity no longer share a
decay rate's constraint (Adam diverges when :math:`\beta_1 > \sqrt{\beta_2}`; LaProp does not).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.optimizers.adam import bias_reciprocals
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate


class ScaleByLapropState(NamedTuple):
    """LaProp's state: the step count ``t``, the momentum of the normalised gradients ``mu``
    (:math:`m`) and the second moment ``nu`` (:math:`n`)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def scale_by_laprop(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-15,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""LaProp's direction (Ziyin, Wang & Ueda, 2020, :arxiv:`2002.04839`, Algorithm 1).

    .. math::
        n_t = \beta_2 n_{t-1} + (1-\beta_2) g_t^2, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \frac{g_t}{\sqrt{n_t / (1-\beta_2^t)} + \epsilon}, \quad
        u_t = \frac{m_t}{1-\beta_1^t}

    with :math:`m_0 = n_0 = 0`. For complex gradients :math:`g^2` is :math:`|g|^2`.

    Args:
        b1: :math:`\beta_1`, the momentum's decay: a number or 0-d array in [0, 1) (0.9).
        b2: :math:`\beta_2`, the second moment's decay: a number or 0-d array in [0, 1) (0.999).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0 (1e-15, the
            authors' code's; it only keeps :math:`0/0` away, the scale of :math:`g` does not
            matter to it).
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        nu_dtype: the dtype of :math:`n`; ``None`` is each parameter's real dtype (float32 for float16).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.laprop import scale_by_laprop
        >>> tx = scale_by_laprop(b1=0.5, b2=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([-3.0]), state)  # the first step is sign(g)
        >>> u2, state = tx.update(jnp.array([1.0]), state)  # n_hat = (2.25 + 0.5) / 0.75
        >>> round(float(u[0]), 6), round(float(u2[0]), 4)  # (0.5 (-0.5) + 0.5 / sqrt(11/3)) / 0.75
        (-1.0, 0.0148)
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByLapropState(
            zero_count(), moments_like(params, mu_dtype), magnitudes_like(params, dtype=nu_dtype), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        nu = jax.tree.map(lambda g, n: update_moment(g, n, h["b2"], 2), updates, state.nu)

        def step(g, m, n):
            dtype = compute_dtype(g, m, n)
            b1_, b2_, eps_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"])
            c1, _, c2 = bias_reciprocals(b1_, b2_, count)
            normalised = g.astype(dtype) / (jnp.sqrt(n.astype(real_dtype(dtype)) * c2) + eps_)
            m_new = b1_ * m.astype(dtype) + (1 - b1_) * normalised
            return (m_new * c1).astype(g.dtype), m_new.astype(m.dtype)

        out, mu = unzip(jax.tree.map(step, updates, state.mu, nu), updates)
        return out, ScaleByLapropState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def laprop(
    learning_rate: ScalarOrSchedule = 4e-4,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-15,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""LaProp (Ziyin, Wang & Ueda, 2020, :arxiv:`2002.04839`) with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \frac{m_t}{1-\beta_1^t} + \lambda \theta_{t-1} \right)

    with :math:`m_t` as in :func:`scale_by_laprop`. The defaults are the authors' code's
    (learning rate 4e-4, :math:`\epsilon` = 1e-15, no weight decay).

    Args:
        learning_rate: :math:`\eta`: a number, 0-d array or schedule of the step, >= 0 (4e-4).
        b1: :math:`\beta_1`, the momentum's decay: a number or 0-d array in [0, 1) (0.9).
        b2: :math:`\beta_2`, the second moment's decay: a number or 0-d array in [0, 1) (0.999).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0 (1e-15).
        mu_dtype: the dtype of the momentum; ``None`` keeps each parameter's.
        weight_decay: :math:`\lambda`, scaled by :math:`\eta` as in AdamW: a number, 0-d array or
            schedule of the step, >= 0 (0). The authors' code subtracts :math:`\lambda \theta_t`
            unscaled, after the step.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.laprop import laprop
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = laprop(0.1), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(200):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_laprop(b1, b2, eps, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
