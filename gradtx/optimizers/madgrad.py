r"""MADGRAD (Defazio & Jelassi, 2021, :arxiv:`2101.11075`): a momentumized, adaptive, dual-averaged
gradient method.

MADGRAD sums the gradients, weighted by :math:`\lambda_k = \gamma_k\sqrt{k+1}`, divides the sum by the
cube root of the weighted sum of their squares and steps from the *initial* point :math:`x_0` (dual
averaging); momentum is an average of these dual-averaging iterates. The state keeps :math:`x_0`, so
the transform needs the parameters, and the learning rate lives inside the block.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, needs_params, unzip
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights


class MadgradState(NamedTuple):
    r"""MADGRAD's state: the step :math:`k` (``count``), :math:`\nu_k` (``grad_sum_sq``), :math:`s_k`
    and :math:`x_0`, and the hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    grad_sum_sq: Updates
    s: Updates
    x0: Updates
    hyperparams: dict[str, Any]


def scale_by_madgrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: float = 0.9,
    eps: float = 1e-6,
    *,
    add_eps_to_learning_rate: bool = False,
) -> GradientTransformation:
    r"""MADGRAD's step (Defazio & Jelassi, 2021, :arxiv:`2101.11075`, Algorithm 1), learning rate included.

    With :math:`k = 0, 1, \dots` the update and :math:`c = 1 - \text{momentum}`:

    .. math::
        \lambda_k = \gamma_k \sqrt{k + 1}, \quad
        s_{k+1} = s_k + \lambda_k g_k, \quad
        \nu_{k+1} = \nu_k + \lambda_k |g_k|^2, \\
        z_{k+1} = x_0 - \frac{s_{k+1}}{\nu_{k+1}^{1/3} + \epsilon}, \quad
        x_{k+1} = (1 - c)\, x_k + c\, z_{k+1}

    and the update is :math:`x_{k+1} - x_k`, to be *added* to the parameters (no learning rate
    follows). An element whose :math:`\nu` and :math:`\epsilon` are both 0 stays at :math:`x_0`.
    Needs the parameters. Complex parameters work (:math:`|g|^2` real, :math:`s` complex).

    Args:
        learning_rate: :math:`\gamma_k`, >= 0 (the authors' default 1e-2; Optax has none): a number,
            0-d array or schedule of the step :math:`k`.
        momentum: :math:`1 - c`, a number or 0-d array in [0, 1); 0 steps to :math:`z_{k+1}`.
        eps: :math:`\epsilon`, added to the cube root: a number or 0-d array, >= 0.
        add_eps_to_learning_rate: use :math:`\gamma_k + \epsilon` in :math:`\lambda_k`, as the
            authors' code and Optax do; the paper's Algorithm 1 (the default, False) uses :math:`\gamma_k`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.madgrad import scale_by_madgrad
        >>> tx = scale_by_madgrad(1.0, momentum=0.0, eps=0.0)
        >>> w = jnp.array([1.0, 1.0])
        >>> u, _ = tx.update(jnp.array([8.0, -1.0]), tx.init(w), w)
        >>> u.tolist()  # z_1 = x_0 - g / |g|^(2/3)
        [-2.0, 1.0]
    """
    rate = Hyperparams(learning_rate=check_nonnegative("learning_rate", learning_rate))
    fixed = Hyperparams(
        momentum=check_decay("momentum", momentum), eps=check_nonnegative("eps", eps), allow_schedules=False
    )

    def init(params):
        x0 = jax.tree.map(lambda p: jnp.asarray(p).copy(), params)
        return MadgradState(
            zero_count(), magnitudes_like(params), moments_like(params), x0, {**rate.init(), **fixed.init()}
        )

    def update(updates, state, params=None, **extra_args):
        needs_params("scale_by_madgrad", params, updates)
        check_updates(state.s, updates)
        h = rate.values(state.hyperparams)
        gamma = h["learning_rate"] + h["eps"] if add_eps_to_learning_rate else h["learning_rate"]
        weight = gamma * jnp.sqrt(state.count.astype(gamma.dtype) + 1)  # lambda_k

        def step(g, x, nu, s, x0):
            dtype = compute_dtype(g, x, s, x0)
            lam, c, eps_ = cast_scalars(dtype, weight, 1 - h["momentum"], h["eps"])
            g_ = g.astype(dtype)
            s_new = s.astype(dtype) + lam * g_
            nu_new = nu.astype(real_dtype(dtype)) + lam * abs_sq(g_)
            root = jnp.cbrt(nu_new) + eps_
            z = x0.astype(dtype) - s_new / jnp.where(root > 0, root, jnp.inf)  # s is 0 where the root is
            u = c * (z - x.astype(dtype))  # (1 - c) x_k + c z_{k+1} - x_k
            return u.astype(g.dtype), nu_new.astype(nu.dtype), s_new.astype(s.dtype)

        out, nu, s = unzip(jax.tree.map(step, updates, params, state.grad_sum_sq, state.s, state.x0), updates, 3)
        count = safe_increment(state.count)
        return out, MadgradState(count, nu, s, state.x0, rate.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def madgrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
    *,
    add_eps_to_learning_rate: bool = False,
) -> GradientTransformation:
    r"""MADGRAD (Defazio & Jelassi, 2021, :arxiv:`2101.11075`): dual averaging with a cube-root AdaGrad
    denominator and momentum.

    .. math::
        g_k \leftarrow g_k + \lambda_{wd}\, x_k, \qquad x_{k+1} = (1 - c)\, x_k + c \left(x_0 - \frac{s_{k+1}}{\nu_{k+1}^{1/3} + \epsilon}\right)

    with :math:`s, \nu` as in :func:`scale_by_madgrad`; the weight decay is an L2 term added to the
    gradient, as in the authors' code.

    Args:
        learning_rate: :math:`\gamma_k`, >= 0 (the authors' default 1e-2; Optax has none): a number,
            0-d array or schedule of the step.
        momentum: :math:`1 - c`, a number or 0-d array in [0, 1).
        weight_decay: :math:`\lambda_{wd}`, >= 0: a number, 0-d array or schedule.
        eps: :math:`\epsilon`, added to the cube root: a number or 0-d array, >= 0.
        add_eps_to_learning_rate: use :math:`\gamma_k + \epsilon` in :math:`\lambda_k`, as Optax
            and the authors' code do (see :func:`scale_by_madgrad`).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.madgrad import madgrad
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = madgrad(0.1), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps, add_eps_to_learning_rate=add_eps_to_learning_rate),
    )
