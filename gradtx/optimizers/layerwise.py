"""Layer-wise scaling: steps sized by each parameter block's own norm (LARS, LAMB, Fromage).

A *block* is one leaf of the parameter tree (one layer's kernel, one bias).
These transforms compare the norm of a block's update with the norm of the
block itself, so that every layer moves by a similar *relative* amount
whatever the scale of its gradient. Norms are taken in at least float32 and
scaled by the largest magnitude first, so gradients near 1e-30 or 1e30 in
float32 neither underflow to 0/0 nor overflow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import needs_params
from gradtx.core.numerics import safe_increment, zero_count
from gradtx.core.validation import check_nonnegative
from gradtx.optimizers.adam import scale_by_adam
from gradtx.transforms.block_scaling import scale_by_trust_ratio
from gradtx.transforms.combine import chain
from gradtx.transforms.masking import masked
from gradtx.transforms.momentum import trace
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import ScaleByScheduleState, scale_by_learning_rate

# ------------------------------------------------------- scaling by the block's size


# --------------------------------------------------------------------- optimizers


def _masked(tx: GradientTransformation, mask: Mask) -> GradientTransformation:
    """``mask`` as Optax takes it: ``True``/``None`` for every leaf, ``False`` for none, else a tree or function."""
    if mask is True or mask is None:
        return tx
    if mask is False:
        return masked(tx, lambda params: jax.tree.map(lambda _: False, params))
    return masked(tx, mask)


def lars(
    learning_rate: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Mask = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017, Algorithm 1).

    .. math::
        d = g + \beta \theta, \qquad
        \lambda = \eta \frac{\lVert \theta \rVert}{\lVert d \rVert}, \qquad
        v_t = m\, v_{t-1} + \gamma \lambda d, \qquad \theta \leftarrow \theta - v_t

    per layer, with :math:`\eta` = ``trust_coefficient``, :math:`\beta` =
    ``weight_decay`` (a number or schedule; ``weight_decay_mask`` selects the
    leaves), :math:`m` = ``momentum`` and :math:`\gamma` = ``learning_rate``.
    ``trust_ratio_mask`` selects the leaves that get the trust ratio (e.g. not
    biases or norm scales). The paper's local rate divides by
    :math:`\lVert g\rVert + \beta\lVert\theta\rVert`; like Optax, gradtx takes the
    trust ratio of the decayed gradient :math:`d`, which equals it when
    :math:`g` and :math:`\theta` are aligned. The paper tunes :math:`\gamma`
    per batch size; the default 1.0 moves each layer by about
    ``trust_coefficient`` of its norm per step (Optax has no default).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.lars(1.0)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([10.0, 0.0]), tx.init(params), params)
        >>> [round(x, 6) for x in u.tolist()]  # -0.001 * 5 in the gradient's direction
        [-0.005, 0.0]
    """
    return chain(
        _masked(add_decayed_weights(weight_decay), weight_decay_mask),
        _masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""LAMB: Adam's direction with a layer-wise trust ratio (You et al., 2019, Algorithm 2).

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
        \theta_{t+1} = \theta_t - \eta \frac{\lVert \theta_t \rVert}{\lVert r_t + \lambda \theta_t \rVert}
        (r_t + \lambda \theta_t)

    per layer, with Adam's bias-corrected moments (:func:`gradtx.scale_by_adam`)
    and :math:`\phi` the identity. ``eps=1e-6`` is the paper's;
    ``weight_decay`` (number or schedule) and ``mask`` as in :func:`gradtx.adamw`.
    The paper fixes no learning rate; the default is Adam's 1e-3 (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.lamb(0.1)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
        >>> [round(x, 4) for x in u.tolist()]  # Adam's first step (1, 1), rescaled to norm 0.1 * 5
        [-0.3536, -0.3536]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def _fromage_step(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""From a trust-ratio-scaled ``u``: :math:`(\theta - \eta u)/\sqrt{1+\eta^2} - \theta`."""
    check_nonnegative("learning_rate", learning_rate)
    hp = Hyperparams(learning_rate=learning_rate)

    def init(params):
        return ScaleByScheduleState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params("fromage", params, updates)
        eta = hp.values(state.hyperparams)["learning_rate"]
        root = jnp.sqrt(1 + eta**2)
        shrink = eta**2 / (root + 1)  # sqrt(1 + eta^2) - 1 without cancellation

        def step(u, p):
            dtype = jnp.promote_types(u.dtype, p.dtype)
            e, r, s = (x.astype(dtype) for x in (eta, root, shrink))
            return ((-e * u.astype(dtype) - s * p.astype(dtype)) / r).astype(u.dtype)

        count = safe_increment(state.count)
        out = jax.tree.map(step, updates, params)
        return out, ScaleByScheduleState(count, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def fromage(learning_rate: ScalarOrSchedule = 1e-2, min_norm: float = 1e-6) -> GradientTransformation:
    r"""Fromage: frobenius matched gradient descent (Bernstein, Vahdat, Yue & Liu, 2020, Algorithm 1).

    .. math::
        \theta_l \leftarrow \frac{1}{\sqrt{1+\eta^2}}
        \left(\theta_l - \eta \frac{\lVert \theta_l \rVert_F}{\lVert g_l \rVert_F} g_l\right)

    per layer :math:`l`, with both norms floored at ``min_norm``. The default
    learning rate 0.01 is the paper's recommendation (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.fromage(0.75)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> [round(x, 4) for x in gradtx.apply_updates(params, u).tolist()]  # (w - 0.75 * 5 * e_2) / 1.25
        [2.4, 0.2]
    """
    return chain(scale_by_trust_ratio(min_norm=min_norm), _fromage_step(learning_rate))
