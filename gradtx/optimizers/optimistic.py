"""Optimism: stepping along the current direction plus its change since the last step.

Optimistic gradient descent (Daskalakis, Ilyas, Syrgkanis & Zeng, 2018, :arxiv:`1711.00141`)
extrapolates with the previous gradient, :math:`2 g_t - g_{t-1}`, which makes
simultaneous gradient descent converge on bilinear games and GANs where plain
descent cycles. Mokhtari, Ozdaglar & Pattathil (2020, :arxiv:`1901.08511`) weigh the two terms
separately, :math:`\\alpha g_t + \\beta (g_t - g_{t-1})`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation, negate
from gradtx.core.hyperparams import Hyperparams, renamed
from gradtx.core.kit import cast_scalars, check_updates, moments_like, unzip
from gradtx.core.numerics import compute_dtype, safe_increment, zero_count
from gradtx.core.validation import check_nonnegative
from gradtx.optimizers.adam import scale_by_adam
from gradtx.transforms.combine import chain
from gradtx.transforms.scaling import scale_by_learning_rate


class ScaleByOptimisticGradientState(NamedTuple):
    """The step count and the previous direction :math:`g_{t-1}` (``prev_grad``; the first update
    takes it equal to :math:`g_1`, there being no change yet)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    prev_grad: Updates
    hyperparams: dict[str, Any]


def scale_by_optimistic_gradient(alpha: ScalarOrSchedule = 1.0, beta: ScalarOrSchedule = 1.0) -> GradientTransformation:
    r"""The optimistic direction (Daskalakis et al., 2018, :arxiv:`1711.00141`; Mokhtari et al., 2020, :arxiv:`1901.08511`).

    .. math::
        u_t = \alpha\, g_t + \beta\, (g_t - g_{t-1}), \qquad g_0 = g_1

    ``alpha = beta = 1`` gives optimistic mirror descent's :math:`2 g_t - g_{t-1}`. On the first
    update there is no earlier direction, and the change is taken as zero (Optax does the same), so
    the first step is :math:`\alpha g_1`, not a doubled one.

    Args:
        alpha: the weight :math:`\alpha \ge 0` of the current direction; a number, 0-d array or schedule.
        beta: the weight :math:`\beta \ge 0` of its change since the last step; a number, 0-d array or schedule.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_optimistic_gradient()
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([1.0]), state)
        >>> u, state = tx.update(jnp.array([3.0]), state)
        >>> u.tolist()  # 2 * 3 - 1
        [5.0]
    """
    hp = Hyperparams(alpha=check_nonnegative("alpha", alpha), beta=check_nonnegative("beta", beta))

    def init(params):
        return ScaleByOptimisticGradientState(zero_count(), moments_like(params, None), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.prev_grad, updates)
        h = hp.values(state.hyperparams)

        def step(g, g_prev):
            dtype = compute_dtype(g, g_prev)
            a, b = cast_scalars(dtype, h["alpha"], h["beta"])
            g_ = g.astype(dtype)
            prev = jnp.where(state.count == 0, g_, g_prev.astype(dtype))
            return (a * g_ + b * (g_ - prev)).astype(g.dtype), g.astype(g_prev.dtype)

        out, prev_grad = unzip(jax.tree.map(step, updates, state.prev_grad), updates)
        count = safe_increment(state.count)
        return out, ScaleByOptimisticGradientState(count, prev_grad, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule = 1e-3,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> GradientTransformation:
    r"""Optimistic gradient descent (Daskalakis et al., 2018, :arxiv:`1711.00141`; Mokhtari et al., 2020, :arxiv:`1901.08511`).

    .. math::
        \theta_{t+1} = \theta_t - \eta \left(\alpha g_t + \beta (g_t - g_{t-1})\right)

    With the defaults, :math:`\theta_{t+1} = \theta_t - 2\eta g_t + \eta g_{t-1}`.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. The default 1e-3 is :func:`gradtx.sgd`'s
            (Optax has none; the papers fix none).
        alpha: :math:`\alpha`, as in :func:`scale_by_optimistic_gradient`.
        beta: :math:`\beta`, as in :func:`scale_by_optimistic_gradient`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.optimistic_gradient_descent(0.1)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([1.0]), state)
        >>> u, state = tx.update(jnp.array([2.0]), state)
        >>> [round(x, 4) for x in u.tolist()]  # -0.1 * (2 * 2 - 1)
        [-0.3]
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate, allow_none=False))


def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule = 1e-3,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam (Daskalakis et al., 2018, :arxiv:`1711.00141`, Algorithm 1): optimism applied to Adam's direction.

    .. math::
        d_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
        \theta_{t+1} = \theta_t - \eta \left(\alpha d_t + \beta (d_t - d_{t-1})\right)

    with Adam's moments (:func:`gradtx.scale_by_adam`); ``alpha = beta = 1`` and
    ``nesterov=False`` is the paper's
    :math:`\theta_{t+1} = \theta_t - 2\eta d_t + \eta d_{t-1}`.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. The default 1e-3 is the paper's code's
            (Optax has none).
        alpha: :math:`\alpha \ge 0`; a number, 0-d array or schedule.
        beta: :math:`\beta \ge 0`; a number, 0-d array or schedule.
        b1: the first moment's decay :math:`\beta_1` in [0, 1), a number or 0-d array.
        b2: the second moment's decay :math:`\beta_2` in [0, 1), a number or 0-d array.
        eps: :math:`\epsilon`, a number or 0-d array.
        eps_root: :math:`\epsilon_{root}`, added to :math:`\hat v_t` inside the square root (as in
            :func:`gradtx.scale_by_adam`); a number or 0-d array.
        mu_dtype: the dtype of Adam's first moment; ``None``: that of each parameter.
        nesterov: whether :math:`\hat m_t` is NAdam's look-ahead first moment (``True``, Optax's default).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.optimistic_adam_v2(0.01, nesterov=False)
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # -0.01 * sign(g): Adam's first step is sign(g)
        [-0.01, 0.01]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


def optimistic_adam(
    learning_rate: ScalarOrSchedule,
    optimism: ScalarOrSchedule | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam with Optax's parametrisation (Daskalakis et al., 2018, :arxiv:`1711.00141`):
    the step along Adam's direction plus ``optimism`` times its change since the last step.

    .. math::
        d_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
        \theta_{t+1} = \theta_t - \eta\, d_t - \omega\, (d_t - d_{t-1})

    ``optimism = learning_rate`` (the default) is the paper's
    :math:`\theta_{t+1} = \theta_t - 2\eta d_t + \eta d_{t-1}`; :func:`optimistic_adam_v2` writes the
    same step as :math:`\eta (\alpha d_t + \beta (d_t - d_{t-1}))`. The state keeps ``learning_rate``
    and ``optimism``.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule.
        optimism: :math:`\omega \ge 0`, the weight of the change; None for ``learning_rate``.
        b1: the first moment's decay :math:`\beta_1` in [0, 1).
        b2: the second moment's decay :math:`\beta_2` in [0, 1).
        eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
        eps_root: :math:`\epsilon_{root}`, added to :math:`\hat v_t` inside the square root.
        mu_dtype: the dtype of Adam's first moment; ``None``: that of each parameter.
        nesterov: whether :math:`\hat m_t` is NAdam's look-ahead first moment (Optax's default).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.optimistic_adam(0.01, nesterov=False)
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # -0.01 * sign(g) on the first step
        [-0.01, 0.01]
    """
    weights = renamed(
        scale_by_optimistic_gradient(learning_rate, learning_rate if optimism is None else optimism),
        alpha="learning_rate",
        beta="optimism",
    )
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov), weights, negate())
