r"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur, 2021, :arxiv:`2010.01412`):
descend with the gradient taken at the worst point of a small ball around the parameters.

The inner maximisation is a few steps of an *adversarial* optimizer that ascends the loss (one
normalised gradient step of radius :math:`\rho` in the paper, ``chain(normalize(), sgd(rho))``);
the outer optimizer then steps from the original parameters with the gradient found there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Updates
from gradtx.core.base import GradientTransformation, apply_updates
from gradtx.core.control import cond
from gradtx.core.kit import copied, needs_params

# ---------------------------------------------------------------------- normalize


class NormalizeState(NamedTuple):
    """``normalize`` keeps no state."""


def normalize() -> GradientTransformation:
    r"""Scale the updates to unit global norm: :math:`u = g / \lVert g \rVert_2`.

    The norm is taken over all leaves together (complex entries by their modulus); a zero
    gradient stays zero (Optax's gives NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.sam import normalize
        >>> tx = normalize()
        >>> u, _ = tx.update({"a": jnp.array([3.0]), "b": jnp.array(4.0)}, tx.init(None))
        >>> [round(float(x), 4) for x in (u["a"][0], u["b"])]
        [0.6, 0.8]
    """

    def init(params):
        return NormalizeState()

    def update(updates, state, params=None, **extra_args):
        norm = _tree.norm(updates)
        positive = norm > 0
        safe = jnp.where(positive, norm, 1)

        def unit(u):
            dtype = jnp.promote_types(u.dtype, norm.dtype)
            return jnp.where(positive, u.astype(dtype) / safe.astype(dtype), 0).astype(u.dtype)

        return jax.tree.map(unit, updates), state

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------------- SAM


class SAMState(NamedTuple):
    """SAM's state: the steps since the last outer step, both optimizers' states, and the
    parameters of the last outer step (``cache``; ``None`` in opaque mode)."""

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Any


def _negated(updates: Updates) -> Updates:
    return jax.tree.map(jnp.negative, updates)


def _cast_like(tree: Updates, like: Updates) -> Updates:
    return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    r"""Sharpness-aware minimization (Foret et al., 2021, :arxiv:`2010.01412`, Algorithm 1).

    .. math::
        w^{adv}_0 = w_t, \quad w^{adv}_{i+1} = w^{adv}_i - A(\nabla L(w^{adv}_i)), \qquad
        w_{t+1} = w_t + O(\nabla L(w^{adv}_{k-1}))

    for :math:`i < k - 1`, with :math:`k` = ``sync_period``, :math:`A` the updates of
    ``adv_optimizer`` (subtracted: the adversary ascends where it would descend) and :math:`O` those
    of ``optimizer``. The paper's step is :math:`k = 2`, ``adv_optimizer = chain(normalize(),
    sgd(rho))``: :math:`w^{adv} = w + \rho\, g / \lVert g \rVert`, and ``optimizer = sgd(eta)``.

    In the default mode the training loop computes every gradient: updates
    :math:`1, \dots, k-1` of a cycle move the parameters to :math:`w^{adv}_i`, and update
    :math:`k` returns :math:`w_{t+1} - w^{adv}_{k-1}` (the parameters of the last outer step are
    in ``state.cache``). With ``opaque_mode=True`` every update is an outer step and runs the
    :math:`k - 1` adversarial steps itself, calling ``grad_fn(params, i)`` for the gradient at
    :math:`w^{adv}_{i+1}` (``i = 0, ..., k-2``): ``update(grads, state, params, grad_fn=grad_fn)``.

    Args:
        optimizer: the outer optimizer :math:`O`, stepped once per cycle from :math:`w_t`.
        adv_optimizer: the adversarial optimizer :math:`A`, stepped :math:`k - 1` times per cycle.
        sync_period: :math:`k`, the updates per cycle: an integer >= 1 (1: ``optimizer`` alone).
        reset_state: start ``adv_optimizer`` afresh (its ``init``) after every outer step.
        opaque_mode: run the adversarial steps inside ``update`` with ``grad_fn``.
        batch_axis_name: in opaque mode, a mapped axis (``pmap``, ``shard_map``, ``vmap``) over
            which the outer gradient is averaged; the adversarial steps use each device's own
            gradients (the paper's m-sharpness). ``None``: no averaging.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.sam import normalize, sam
        >>> loss = lambda w: jnp.sum(w**2)
        >>> tx = sam(gradtx.sgd(0.1), gradtx.chain(normalize(), gradtx.sgd(0.5)))
        >>> w = jnp.array([3.0, 4.0])
        >>> state = tx.init(w)
        >>> for _ in range(2):  # an adversarial step to w + 0.5 g / |g|, then the outer step
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 4) for x in w.tolist()]  # w - 0.1 * 2 * (w + 0.5 * w / |w|)
        [2.34, 3.12]
    """
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise ValueError(f"sync_period must be an integer >= 1, got {sync_period!r}")
    for name, value in (("reset_state", reset_state), ("opaque_mode", opaque_mode)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if batch_axis_name is not None and not opaque_mode:
        raise ValueError(
            "batch_axis_name is used in opaque mode only (in the default mode the training loop averages "
            "the gradients it computes); pass opaque_mode=True or batch_axis_name=None"
        )

    def init(params):
        cache = None if opaque_mode else copied(params)
        return SAMState(jnp.zeros((), jnp.int32), optimizer.init(params), adv_optimizer.init(params), cache)

    def outer_step(grads, state, w, extra_args):
        """Line 6 of Algorithm 1: the outer optimizer steps from w with the adversarial gradient."""
        updates, opt_state = optimizer.update(grads, state.opt_state, w, **extra_args)
        w_next = apply_updates(w, updates)
        adv_state = adv_optimizer.init(w_next) if reset_state else state.adv_state
        return updates, w_next, opt_state, adv_state

    def update(updates, state, params=None, **extra_args):
        needs_params("sam", params, updates)
        if opaque_mode:
            return opaque_update(updates, state, params, **extra_args)
        zero = jnp.zeros((), state.steps_since_sync.dtype)

        def outer(state):
            _, w_next, opt_state, adv_state = outer_step(updates, state, state.cache, extra_args)
            step = jax.tree.map(lambda a, b: a - b.astype(a.dtype), w_next, params)
            return _cast_like(step, updates), SAMState(zero, opt_state, adv_state, w_next)

        def adversarial(state):  # line 4: w_adv = w + rho g / |g| (one step of the ascent)
            step, adv_state = adv_optimizer.update(updates, state.adv_state, params, **extra_args)
            count = state.steps_since_sync + 1
            return _cast_like(_negated(step), updates), SAMState(count, state.opt_state, adv_state, state.cache)

        if sync_period == 1:
            return outer(state)
        return cond(state.steps_since_sync >= sync_period - 1, outer, adversarial, state)

    def opaque_update(updates, state, params, grad_fn=None, **extra_args):
        if grad_fn is None:
            raise ValueError(
                "sam(opaque_mode=True) needs the gradient function: call update(grads, state, params, "
                "grad_fn=grad_fn), grad_fn(params, i) the gradient of the loss at params"
            )
        grads, w_adv, adv_state = updates, params, state.adv_state
        for i in range(sync_period - 1):
            step, adv_state = adv_optimizer.update(grads, adv_state, w_adv, **extra_args)
            w_adv = apply_updates(w_adv, _negated(step))
            grads = grad_fn(w_adv, i)
        if batch_axis_name is not None:
            grads = jax.lax.pmean(grads, batch_axis_name)
        out, _, opt_state, adv_state = outer_step(grads, state._replace(adv_state=adv_state), params, extra_args)
        return out, SAMState(state.steps_since_sync, opt_state, adv_state, None)

    return GradientTransformation(init, update)
