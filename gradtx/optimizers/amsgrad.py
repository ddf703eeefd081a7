r"""AMSGrad (Reddi, Kale & Kumar, 2018, :arxiv:`1904.09237`): Adam whose second moment, and so
whose per-parameter step size, never decreases, which repairs Adam's convergence proof.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import bias_correction, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.optimizers.adam import adam_hyperparams
from gradtx.transforms.combine import chain
from gradtx.transforms.scaling import scale_by_learning_rate


class ScaleByAmsgradState(NamedTuple):
    """AMSGrad's state: Adam's, plus the running maximum of the corrected second moment."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    nu_max: Updates
    hyperparams: dict[str, Any]


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""AMSGrad (Reddi, Kale & Kumar, 2018, :arxiv:`1904.09237`): Adam with a non-increasing step size.

    .. math::
        \hat v^{max}_t = \max(\hat v^{max}_{t-1}, \hat v_t), \qquad
        u_t = \hat m_t / (\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon)

    with :math:`\hat m_t, \hat v_t` Adam's bias-corrected moments (the maximum is
    taken of the corrected :math:`\hat v_t`, as Optax does; torch.optim takes it
    before correcting).

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's (complex stays complex).
        bias_correction_mu: divide :math:`m_t` by :math:`1-\beta_1^t` (True); False uses :math:`m_t`.
        bias_correction_nu: divide :math:`v_t` by :math:`1-\beta_2^t` before the maximum (True);
            False takes the maximum of the raw :math:`v_t`, as the paper's Algorithm 2 does.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_amsgrad()
        >>> u, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]
        [1.0]
    """
    hp = adam_hyperparams(b1, b2, eps, eps_root)

    def init(params):
        return ScaleByAmsgradState(
            zero_count(), moments_like(params, mu_dtype), magnitudes_like(params), magnitudes_like(params), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.nu)

        def step(g, m, v, v_max):
            dtype = compute_dtype(g, m, v, v_max)
            b1_, b2_, eps_, eps_root_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"], h["eps_root"])
            real = real_dtype(dtype)  # the second moments are real for complex gradients too
            v_hat = bias_correction(v.astype(real), b2_, count) if bias_correction_nu else v.astype(real)
            m_hat = bias_correction(m.astype(dtype), b1_, count) if bias_correction_mu else m.astype(dtype)
            new_max = jnp.maximum(v_max.astype(real), v_hat)
            u = m_hat / (jnp.sqrt(new_max + eps_root_) + eps_)
            return u.astype(g.dtype), new_max.astype(v_max.dtype)

        out, nu_max = unzip(jax.tree.map(step, updates, mu, nu, state.nu_max), updates)
        return out, ScaleByAmsgradState(count, mu, nu, nu_max, state.hyperparams)

    return GradientTransformation(init, update)


def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""AMSGrad (Reddi et al., 2018, :arxiv:`1904.09237`): Adam whose denominator never decreases.

    See :func:`gradtx.scale_by_amsgrad`.

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        bias_correction_mu: bias-correct the first moment (see :func:`scale_by_amsgrad`).
        bias_correction_nu: bias-correct the second moment before the maximum.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.amsgrad(0.01)
        >>> updates, _ = tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]
        [-0.01]
    """
    return chain(
        scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
