"""The named optimizers: each one a chain of the blocks that its paper describes.

Names, arguments and defaults follow Optax, so moving code over is a change of
import. Where Optax has no default learning rate, the paper's (or, where the
paper has none, torch.optim's) is used, and the docstring says so.
"""

from __future__ import annotations

from typing import Any

from gradtx.core.aliases import ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import trace
from gradtx.transforms.regularizers import add_noise
from gradtx.transforms.scaling import scale_by_learning_rate


def sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    .. math::
        b_t = g_t + \mu b_{t-1}, \qquad \theta_t = \theta_{t-1} - \eta\, b_t
        \;\;(\text{Nesterov: } \theta_t = \theta_{t-1} - \eta (g_t + \mu b_t))

    Args:
        learning_rate: the step size :math:`\eta`, by default torch.optim's 1e-3 (Optax has none):
            a number, 0-d array or schedule of the step, >= 0.
        momentum: the momentum coefficient :math:`\mu`: a number or 0-d array in [0, 1); ``None``
            (the default) for plain SGD.
        nesterov: take Nesterov's step; ignored without ``momentum``.
        accumulator_dtype: the dtype of :math:`b`; ``None`` keeps each parameter's.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.sgd(0.1, momentum=0.9)
        >>> params = jnp.array([1.0])
        >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params))
        >>> gradtx.apply_updates(params, updates).tolist()
        [0.800000011920929]
    """
    momentum_block = [] if momentum is None else [trace(momentum, nesterov, accumulator_dtype)]
    return chain(*momentum_block, scale_by_learning_rate(learning_rate, allow_none=False))


def noisy_sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: Any = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""SGD on gradients with annealed Gaussian noise (Neelakantan et al., 2015, :arxiv:`1511.06807`).

    .. math::
        \theta_{t+1} = \theta_t - \alpha \left(g_t + \xi_t\right), \qquad
        \xi_t \sim \mathcal N\!\left(0, \eta / (1 + t)^\gamma\right)

    Args:
        learning_rate: the step size :math:`\alpha`, by default :func:`gradtx.sgd`'s 1e-3 (Optax
            has none; the paper fixes none): a number, 0-d array or schedule of the step, >= 0.
        eta: the noise scale :math:`\eta`, the paper's (and Optax's) 0.01: a number, 0-d array or schedule of
            the step, >= 0.
        gamma: the annealing exponent :math:`\gamma`, the paper's (and Optax's) 0.55: a number, 0-d array or
            schedule of the step, >= 0.
        key: the PRNG key the state keeps: a ``jax.random.key``, a raw ``PRNGKey`` or an int
            seed. It (or ``seed``) is required: see :func:`gradtx.add_noise`.
        seed: an alias of ``key``; give one of them, not both.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.noisy_sgd(0.1, eta=0.0, key=0)  # no noise: plain SGD
        >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
        [-0.10000000149011612, -0.10000000149011612]
    """
    return chain(add_noise(eta, gamma, key, seed=seed), scale_by_learning_rate(learning_rate, allow_none=False))
