"""The named optimizers: each one a chain of the blocks that its paper describes.

Names, arguments and defaults follow Optax, so moving code over is a change of
import. Where Optax has no default learning rate, the paper's (or, where the
paper has none, torch.optim's) is used, and the docstring says so.
"""

from __future__ import annotations

from typing import Any, Callable

from gradtx.core.base import GradientTransformation, Params, ScalarOrSchedule
from gradtx.transforms.combine import chain
from gradtx.optimizers.adam import (
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
    trace,
)
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

Mask = Any | Callable[[Params], Any] | None


def sgd(
    learning_rate: ScalarOrSchedule = 1e-3, momentum: float | None = None,
    nesterov: bool = False, accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    .. math::
        b_t = g_t + \mu b_{t-1}, \qquad \theta_t = \theta_{t-1} - \eta\, b_t
        \;\;(\text{Nesterov: } \theta_t = \theta_{t-1} - \eta (g_t + \mu b_t))

    The default learning rate 1e-3 is torch.optim's (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.sgd(0.1, momentum=0.9)
        >>> params = jnp.array([1.0])
        >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params))
        >>> gradtx.apply_updates(params, updates).tolist()
        [0.800000011920929]
    """
    momentum_block = [] if momentum is None else [trace(momentum, nesterov, accumulator_dtype)]
    return chain(*momentum_block, scale_by_learning_rate(learning_rate))


def adam(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    eps_root: float = 0.0, mu_dtype: Any = None, *, nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015): :math:`\theta_t = \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)`.

    See :func:`gradtx.scale_by_adam` for the moments. Defaults are the paper's:
    ``learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = gradtx.adam(0.1), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(200):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    eps_root: float = 0.0, mu_dtype: Any = None, weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None, *, nesterov: bool = False,
) -> GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \hat m_t / (\sqrt{\hat v_t} + \epsilon) + \lambda \theta_{t-1} \right)

    ``weight_decay`` defaults to Optax's 1e-4 (torch.optim uses 1e-2); ``mask``
    selects the decayed leaves (e.g. not biases).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> tx = gradtx.adamw(1e-3, weight_decay=0.1, mask={"w": True, "b": False})
        >>> updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        >>> [round(x, 6) for x in updates["w"].tolist()], bool((updates["b"] == 0).all())
        ([-0.0001, -0.0001], True)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    eps_root: float = 0.0, mu_dtype: Any = None,
) -> GradientTransformation:
    r"""NAdam (Dozat, 2016): Adam with a Nesterov look-ahead first moment.

    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`;
    otherwise as :func:`adam`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.nadam(1e-3)
        >>> updates, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
        >>> updates.shape
        (1,)
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=True)


def nadamw(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    eps_root: float = 0.0, mu_dtype: Any = None, weight_decay: ScalarOrSchedule = 1e-4, mask: Mask = None,
) -> GradientTransformation:
    r"""NAdam with AdamW's decoupled weight decay: :func:`adamw` with ``nesterov=True``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.ones(1)
        >>> updates, _ = gradtx.nadamw(1e-3).update(jnp.ones(1), gradtx.nadamw(1e-3).init(params), params)
        >>> updates.dtype
        dtype('float32')
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=True)


def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    eps_root: float = 0.0, mu_dtype: Any = None,
) -> GradientTransformation:
    r"""AMSGrad (Reddi et al., 2018): Adam whose denominator never decreases.

    See :func:`gradtx.scale_by_amsgrad`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.amsgrad(0.01)
        >>> updates, _ = tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]
        [-0.01]
    """
    return chain(scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype), scale_by_learning_rate(learning_rate))


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
) -> GradientTransformation:
    r"""AdaMax (Kingma & Ba, 2015, Algorithm 2): Adam with the infinity norm.

    The default learning rate 2e-3 is the paper's for AdaMax (and torch.optim's).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adamax()
        >>> updates, _ = tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]
        [-0.002]
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamaxw(
    learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4, mask: Mask = None,
) -> GradientTransformation:
    r"""AdaMax with decoupled weight decay, as AdamW adds it to Adam.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.array([1.0])
        >>> tx = gradtx.adamaxw(weight_decay=0.5)
        >>> updates, _ = tx.update(jnp.zeros(1), tx.init(params), params)
        >>> [round(x, 6) for x in updates.tolist()]
        [-0.001]
    """
    return chain(
        scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)
    )


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2, decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
    eps_in_sqrt: bool = True, centered: bool = False, momentum: float | None = None,
    nesterov: bool = False, bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp (Tieleman & Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{v_t + \epsilon}

    Momentum, when given, is applied to the already scaled step, as in Optax.
    The default learning rate 1e-2 is torch.optim's (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.rmsprop(0.01, decay=0.9, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]  # -0.01 / sqrt(0.1)
        [-0.0316]
    """
    scaling = (scale_by_stddev if centered else scale_by_rms)(
        decay, eps, initial_scale, eps_in_sqrt, bias_correction
    )
    momentum_block = [] if momentum is None else [trace(momentum, nesterov)]
    return chain(scaling, scale_by_learning_rate(learning_rate), *momentum_block)


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2, initial_accumulator_value: float = 0.1, eps: float = 1e-7,
) -> GradientTransformation:
    r"""AdaGrad (Duchi, Hazan & Singer, 2011): per-coordinate steps shrinking with the summed squares.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, g_t / \sqrt{s_t + \epsilon}

    The default learning rate 1e-2 is torch.optim's (Optax has none);
    ``initial_accumulator_value`` and ``eps`` are Optax's.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0)
        >>> updates, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
        >>> updates.tolist()
        [-0.5]
    """
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))
