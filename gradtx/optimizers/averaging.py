r"""Averaged SGD: SGD with a decaying step whose iterates are averaged (Polyak & Juditsky, 1992,
:doi:`10.1137/0330046`).

The average :math:`\bar\theta` (``ax``) converges at the optimal rate for
stochastic problems even when the iterates themselves keep jittering; it is
kept in the state, where ``gradtx.tree.get(state, "ax")`` reads it. The
schedule and defaults are torch.optim's ``ASGD`` (after Bottou, 2012,
"Stochastic Gradient Descent Tricks", :doi:`10.1007/978-3-642-35289-8_25`, section 5.3).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import copied
from gradtx.core.numerics import safe_increment, zero_count
from gradtx.core.validation import check_nonnegative
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights


class ScaleByAsgdState(NamedTuple):
    r"""ASGD's state: the step count and the averaged parameters :math:`\bar\theta` (``ax``)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    ax: Params
    hyperparams: dict[str, Any]


def scale_by_asgd(
    learning_rate: ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
) -> GradientTransformation:
    r"""ASGD's step and average, with torch.optim's schedule; returns the update to add to :math:`\theta`.

    At update :math:`t = 1, 2, \dots`:

    .. math::
        \eta_{t-1} = \frac{\gamma}{(1 + \lambda \gamma (t-1))^{\alpha}}, \quad
        \mu_{t-1} = \frac{1}{\max(1,\ t - 1 - t_0)}, \quad
        \theta_t = \theta_{t-1} - \eta_{t-1} (g_t + \lambda \theta_{t-1}), \\
        \bar\theta_t = \bar\theta_{t-1} + \mu_{t-1} (\theta_t - \bar\theta_{t-1})
        \ \ (\bar\theta_t = \theta_t \text{ while } \mu_{t-1} = 1)

    so the average starts once :math:`t > t_0 + 2` steps have passed. ``ax`` is
    :math:`\theta_0` before the first update. Needs ``params``.

    Args:
        learning_rate: the initial step size :math:`\gamma`: a number, 0-d array or schedule of the
            step, >= 0.
        lambd: :math:`\lambda`, the rate of the step's decay and the L2 coefficient: a number, 0-d array or
            schedule of the step, >= 0.
        alpha: the exponent :math:`\alpha` of the step's decay: a number, 0-d array or schedule of
            the step, >= 0.
        t0: :math:`t_0`; averaging starts after :math:`t_0 + 2` updates: a number, 0-d array or schedule
            of the step, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_asgd(learning_rate=0.5, lambd=0.0, t0=0.0)
        >>> params = jnp.array([4.0])
        >>> state = tx.init(params)
        >>> for grad in [2.0, 2.0, 2.0]:
        ...     updates, state = tx.update(jnp.array([grad]), state, params)
        ...     params = params + updates
        >>> params.tolist(), state.ax.tolist()  # iterates 3, 2, 1; the average of the last two
        ([1.0], [1.5])
    """
    hp = Hyperparams(
        learning_rate=check_nonnegative("learning_rate", learning_rate),
        lambd=check_nonnegative("lambd", lambd),
        alpha=check_nonnegative("alpha", alpha),
        t0=check_nonnegative("t0", t0),
    )

    def init(params):
        return ScaleByAsgdState(zero_count(), copied(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("scale_by_asgd needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(state.ax, updates, "the tree this state was built for", "the updates")
        _tree.check_same_structure(state.ax, params, "the tree this state was built for", "the parameters")
        h = hp.values(state.hyperparams)
        steps_before = state.count.astype(h["learning_rate"].dtype)  # t - 1
        eta = h["learning_rate"] / (1 + h["lambd"] * h["learning_rate"] * steps_before) ** h["alpha"]
        mu = 1 / jnp.maximum(1.0, steps_before - h["t0"])

        def step(g, p, a):
            dtype = jnp.result_type(g, p, eta)
            u = -eta.astype(dtype) * (g.astype(dtype) + h["lambd"].astype(dtype) * p.astype(dtype))
            u = u.astype(g.dtype)
            new_p = jnp.asarray(p + u).astype(p.dtype)  # as apply_updates computes it
            average = a + mu.astype(dtype) * (new_p.astype(dtype) - a)
            return u, jnp.where(mu == 1, new_p, average).astype(a.dtype)

        pairs = jax.tree.map(step, updates, params, state.ax)
        treedef = jax.tree.structure(updates)
        flat = treedef.flatten_up_to(pairs)
        out = jax.tree.unflatten(treedef, [u for u, _ in flat])
        ax = jax.tree.unflatten(treedef, [a for _, a in flat])
        count = safe_increment(state.count)
        return out, ScaleByAsgdState(count, ax, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def asgd(
    learning_rate: ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    r"""Averaged SGD (Polyak & Juditsky, 1992, :doi:`10.1137/0330046`) as torch.optim's ``ASGD``, with its defaults.

    A chain of :func:`gradtx.add_decayed_weights` and :func:`scale_by_asgd`:
    :math:`\theta_t = \theta_{t-1} - \eta_{t-1}(g_t + (\lambda_{wd} + \lambda)\theta_{t-1})`,
    with the averaged parameters in the state as ``ax``. The parameters
    themselves are the plain SGD iterates; evaluate with ``ax``.

    Args:
        learning_rate: the initial step size :math:`\gamma` (see :func:`scale_by_asgd`): a number, 0-d array
            or schedule of the step, >= 0.
        lambd: :math:`\lambda`, the rate of the step's decay and an L2 coefficient: a number, 0-d array or
            schedule of the step, >= 0.
        alpha: the exponent :math:`\alpha` of the step's decay: a number, 0-d array or schedule of
            the step, >= 0.
        t0: :math:`t_0`; averaging starts after :math:`t_0 + 2` updates: a number, 0-d array or schedule
            of the step, >= 0.
        weight_decay: :math:`\lambda_{wd}`, an L2 penalty added to the gradient: a number, 0-d array or
            schedule of the step, >= 0.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = gradtx.asgd(learning_rate=0.1, t0=50.0), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(100):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 3) for x in w.tolist()], [round(x, 3) for x in gradtx.tree.get(state, "ax").tolist()]
        ([3.0, 3.0], [3.0, 3.0])
    """
    return chain(add_decayed_weights(weight_decay), scale_by_asgd(learning_rate, lambd, alpha, t0))
