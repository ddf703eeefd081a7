r"""COCOB-Backprop (Orabona & Tommasi, 2017, :arxiv:`1705.07795`): training without a learning rate
by coin betting.

Every coordinate is a gambler that bets a fraction of its wealth (its starting stake :math:`L_t`
plus its winnings) on the sign of the negative gradient; the fraction is the gradients' sum
over their scale, so the step adapts to the gradients without a step size to tune.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, needs_params, unzip
from gradtx.core.numerics import compute_dtype
from gradtx.core.validation import check_nonnegative, check_positive
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

_WHY_REAL = "it bets on the sign of every coordinate and clips the reward at 0"


class COCOBState(NamedTuple):
    r"""COCOB-Backprop's state, per coordinate: :math:`w_1` (``init_particles``), :math:`\theta_t`
    (``cumulative_gradients``, the sum of negative gradients), :math:`L_t` (``scale``, the largest
    magnitude seen), :math:`G_t` (``subgradients``, the sum of magnitudes), :math:`\mathrm{Reward}_t`
    (``reward``), and the hyperparameters."""

    init_particles: Updates
    cumulative_gradients: Updates
    scale: Updates
    subgradients: Updates
    reward: Updates
    hyperparams: dict[str, Any]


def _safe_div(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and 0 where the denominator is 0."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> GradientTransformation:
    r"""COCOB-Backprop (Orabona & Tommasi, 2017, :arxiv:`1705.07795`, Algorithm 2): a step found by coin betting.

    Per coordinate, with :math:`\tilde g_t = -g_t` the negative gradient at :math:`w_t`:

    .. math::
        L_t = \max(L_{t-1}, |\tilde g_t|), \quad G_t = G_{t-1} + |\tilde g_t|, \quad
        \theta_t = \theta_{t-1} + \tilde g_t,

        \mathrm{Reward}_t = \max(\mathrm{Reward}_{t-1} + (w_t - w_1)\, \tilde g_t,\; 0), \quad
        w_{t+1} = w_1 + \frac{\theta_t}{L_t \max(G_t + L_t,\, \alpha L_t)} (L_t + \mathrm{Reward}_t)

    and the update is the step :math:`w_{t+1} - w_t`, to be *added* to the parameters (no
    learning rate, no sign flip). The paper starts from :math:`L_0 = 0`, which makes the bet
    0/0 on a coordinate that has seen only zero gradients; here, as in Optax,
    :math:`L_0 = \epsilon` (and :math:`L_t \ge \epsilon`). Needs the parameters; real ones only.

    Args:
        alpha: :math:`\alpha > 0`, which caps the first bets at :math:`1/\alpha` of the wealth
            (the paper's default 100); a number or 0-d array.
        eps: :math:`\epsilon \ge 0`, the smallest scale :math:`L_t`; a number or 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.coin_betting import scale_by_cocob
        >>> tx, w = scale_by_cocob(), jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([0.5, -3.0]), tx.init(w), w)
        >>> [round(x, 6) for x in u.tolist()]  # the first bet: -sign(g) / alpha
        [-0.01, 0.01]
    """
    hp = Hyperparams(alpha=check_positive("alpha", alpha), eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        _tree.check_real("scale_by_cocob", params, _WHY_REAL)
        w1 = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
        h = hp.values(hp.init())
        scale = jax.tree.map(lambda m: (m + h["eps"].astype(m.dtype)).astype(m.dtype), magnitudes_like(params))
        return COCOBState(w1, moments_like(params), scale, magnitudes_like(params), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params("scale_by_cocob", params, updates)
        check_updates(state.init_particles, updates)
        _tree.check_real("scale_by_cocob", updates, _WHY_REAL)
        h = hp.values(state.hyperparams)

        def step(g, w, w1, theta, big_l, big_g, reward):
            dtype = compute_dtype(g, w, w1, theta, big_l, big_g, reward)
            alpha_, eps_ = cast_scalars(dtype, h["alpha"], h["eps"])
            neg = -g.astype(dtype)  # the paper bets on the negative gradient
            w, w1 = w.astype(dtype), w1.astype(dtype)
            new_l = jnp.maximum(jnp.maximum(big_l.astype(dtype), jnp.abs(neg)), eps_)
            new_g = big_g.astype(dtype) + jnp.abs(neg)
            new_reward = jnp.maximum(reward.astype(dtype) + (w - w1) * neg, 0)
            new_theta = theta.astype(dtype) + neg
            # theta / (L max(G + L, alpha L)) (L + Reward), divided through by L so as not to overflow
            bet = new_theta / jnp.maximum(new_g + new_l, alpha_ * new_l) * (1 + _safe_div(new_reward, new_l))
            bet = jnp.where(new_l > 0, bet, 0)  # eps = 0 and no gradient yet: no bet
            return (
                (w1 + bet - w).astype(g.dtype),
                new_theta.astype(theta.dtype),
                new_l.astype(big_l.dtype),
                new_g.astype(big_g.dtype),
                new_reward.astype(reward.dtype),
            )

        tuples = jax.tree.map(
            step,
            updates,
            params,
            state.init_particles,
            state.cumulative_gradients,
            state.scale,
            state.subgradients,
            state.reward,
        )
        out, theta, big_l, big_g, reward = unzip(tuples, updates, 5)
        return out, COCOBState(state.init_particles, theta, big_l, big_g, reward, state.hyperparams)

    return GradientTransformation(init, update)


def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: float = 100.0,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    scale_gradients: bool = False,
) -> GradientTransformation:
    r"""COCOB-Backprop (Orabona & Tommasi, 2017, :arxiv:`1705.07795`): parameter-free training by coin betting.

    .. math::
        w_{t+1} = w_t + c\, (w^{\mathrm{COCOB}}_{t+1} - w_t)

    with :math:`w^{\mathrm{COCOB}}_{t+1}` the bettor's point of :func:`scale_by_cocob`, fed the
    gradient plus :math:`\lambda w_t`. With :math:`c = 1` (the default) this is the paper's
    algorithm, which has no learning rate. Optax multiplies the *gradients* by :math:`c`
    instead, where a constant :math:`c` has no effect (the bet is invariant to the gradients'
    scale); ``scale_gradients=True`` does that.

    Args:
        learning_rate: :math:`c \ge 0`, the fraction of the bettor's step taken; a number, 0-d array
            or schedule.
        alpha: :math:`\alpha > 0` of :func:`scale_by_cocob` (the paper's 100).
        eps: :math:`\epsilon \ge 0`, the smallest gradient scale :math:`L_t` (see :func:`scale_by_cocob`).
        weight_decay: :math:`\lambda \ge 0`, whose :math:`\lambda w_t` is added to the gradient; a
            number, 0-d array or schedule.
        mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.
        scale_gradients: multiply the gradients by :math:`c` before the bettor sees them, as Optax
            does, instead of multiplying the step.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.coin_betting import cocob
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = cocob(), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    decay = add_decayed_weights(weight_decay, mask)
    rate = scale_by_learning_rate(learning_rate, flip_sign=False, allow_none=False)
    if scale_gradients:
        return chain(decay, rate, scale_by_cocob(alpha, eps))
    return chain(decay, scale_by_cocob(alpha, eps), rate)
