r"""Differentially private SGD (Abadi et al., 2016, :arxiv:`1607.00133`): every example's gradient
is clipped to a bounded norm, and Gaussian noise scaled to that bound hides any one example.

The updates these transforms take are *per-example* gradients, with the batch along the first axis
of every leaf (``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)``); they return one
aggregate without that axis, shaped like the parameters.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree
from gradtx.core.aliases import ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars
from gradtx.core.numerics import compute_dtype, real_dtype
from gradtx.core.validation import check_decay, check_nonnegative, check_positive
from gradtx.transforms.clipping import per_example_global_norm_clip
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import trace
from gradtx.transforms.scaling import scale_by_learning_rate


class DifferentiallyPrivateAggregateState(NamedTuple):
    """The PRNG key of the next update's noise (as raw key data) and the hyperparameters
    ``l2_norm_clip`` and ``noise_multiplier``."""

    rng_key: jax.Array
    hyperparams: dict[str, Any]


def _key_store(who: str, key: Any, seed: Any):
    """The key as raw data for the state, and the function from that data back to a key."""
    if seed is not None and key is not None:
        raise ValueError(f"{who}: give key or seed, not both")
    key = seed if key is None else key
    if key is None:
        raise ValueError(f"{who} needs a PRNG key: pass key=jax.random.key(0) (or an int seed)")
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    if not isinstance(key, jax.Array):
        key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(key)
        return jax.random.key_data(key), lambda data: jax.random.wrap_key_data(data, impl=impl)
    if key.dtype != jnp.uint32:
        raise TypeError(f"{who}: key must be a jax.random.key, a raw uint32 PRNGKey or an int, got {key.dtype}")
    return key, lambda data: jax.random.wrap_key_data(data)


def _batch_size(who: str, grads: Any) -> int:
    """The common length of the first axis of every leaf; a ``ValueError`` naming the leaves otherwise."""
    found = [(p, jnp.shape(x)) for p, x in _tree.leaves_with_path(grads)]
    sizes = {shape[0] if shape else None for _, shape in found}
    if len(sizes) > 1 or None in sizes or 0 in sizes:
        listed = ", ".join(f"'{_tree.path_str(p)}': {s}" for p, s in found)
        raise ValueError(
            f"{who} takes per-example gradients: every leaf needs the same leading batch axis, "
            f"of at least one example; got shapes {listed}"
        )
    return sizes.pop() if sizes else 0  # type: ignore[return-value]


def _gaussian(key: jax.Array, x: jax.Array) -> jax.Array:
    """Standard normal noise shaped like ``x``, in its compute dtype; a complex ``x`` gets it on
    the real and the imaginary part alike (isotropic in :math:`\\mathbb{R}^{2n}`)."""
    dtype = compute_dtype(x)
    if not jnp.iscomplexobj(x):
        return jax.random.normal(key, jnp.shape(x), dtype)
    re, im = jax.random.split(key)
    real = real_dtype(dtype)
    return jax.lax.complex(jax.random.normal(re, jnp.shape(x), real), jax.random.normal(im, jnp.shape(x), real))


def differentially_private_aggregate(
    l2_norm_clip: float, noise_multiplier: float, key: Any = None, *, seed: int | None = None
) -> GradientTransformation:
    r"""The private aggregate of per-example gradients (Abadi et al., 2016, :arxiv:`1607.00133`, Algorithm 1).

    .. math::
        \bar g_i = g_i \big/ \max\!\left(1, \frac{\lVert g_i \rVert_2}{C}\right), \qquad
        \tilde g = \frac{1}{B} \left( \sum_{i=1}^{B} \bar g_i + \mathcal N(0, \sigma^2 C^2 I) \right)

    with :math:`\lVert g_i \rVert_2` the norm of example :math:`i`'s gradient over all leaves
    together, and :math:`B` the batch: the first axis of every leaf, the same in all. The noise of
    a complex leaf has :math:`\sigma C` on its real and imaginary parts. The state keeps the PRNG
    key and splits it at every update. The parameters, if given, are not used.

    Args:
        l2_norm_clip: :math:`C`, the largest norm an example keeps: a number or 0-d array, > 0.
        noise_multiplier: :math:`\sigma`, the noise's standard deviation in units of :math:`C`:
            a number or 0-d array, >= 0 (0 gives the clipped mean).
        key: the PRNG key: a ``jax.random.key``, a raw uint32 key or an int. Optax falls back to
            ``0`` with a warning when neither it nor ``seed`` is given; gradtx raises, since a
            fixed default key is no privacy.
        seed: an int seed, the same as ``key=seed``; give one of the two.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.privacy import differentially_private_aggregate
        >>> tx = differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
        >>> grads = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}  # two examples: norms 5 and 0.5
        >>> u, state = tx.update(grads, tx.init({"w": jnp.zeros(2)}))
        >>> [round(x, 4) for x in u["w"].tolist()]  # ((0.6, 0.8) + (0.3, 0.4)) / 2
        [0.45, 0.6]
    """
    who = "differentially_private_aggregate"
    hp = Hyperparams(
        l2_norm_clip=check_positive("l2_norm_clip", l2_norm_clip),
        noise_multiplier=check_nonnegative("noise_multiplier", noise_multiplier),
        allow_schedules=False,
    )
    key_data, as_key = _key_store(who, key, seed)

    def init(params):
        return DifferentiallyPrivateAggregateState(key_data, hp.init())

    def update(updates, state, params=None, **extra_args):
        if not jax.tree.leaves(updates):
            return updates, state
        batch = _batch_size(who, updates)
        h = hp.values(state.hyperparams)
        next_key, noise_key = jax.random.split(as_key(state.rng_key))
        total, _ = per_example_global_norm_clip(updates, h["l2_norm_clip"])
        keys = _tree.split_key_like(noise_key, total)

        def privatize(s, k):
            dtype = compute_dtype(s)
            c, sigma = cast_scalars(dtype, h["l2_norm_clip"], h["noise_multiplier"])
            return ((s.astype(dtype) + sigma * c * _gaussian(k, s)) / batch).astype(s.dtype)

        noisy = jax.tree.map(privatize, total, keys)
        return noisy, DifferentiallyPrivateAggregateState(jax.random.key_data(next_key), state.hyperparams)

    return GradientTransformation(init, update)


def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: float,
    noise_multiplier: float,
    seed: Any,
    momentum: float | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""DP-SGD (Abadi et al., 2016, :arxiv:`1607.00133`): SGD on the private aggregate of
    per-example gradients, :math:`\theta_t = \theta_{t-1} - \eta\, \tilde g_t` (with heavy-ball or
    Nesterov momentum on :math:`\tilde g_t` when asked).

    See :func:`differentially_private_aggregate`. ``update`` takes the per-example gradients (a
    leading batch axis on every leaf); the parameters, when given, are shaped without it. The state
    is ``(aggregate state, *SGD states)``.

    Args:
        learning_rate: :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        l2_norm_clip: :math:`C`, the largest norm an example keeps: a number or 0-d array, > 0.
        noise_multiplier: :math:`\sigma`, the noise's standard deviation in units of :math:`C`, >= 0.
        seed: the noise's PRNG seed: an int (or a ``jax.random.key``).
        momentum: the momentum coefficient, in [0, 1); ``None`` for none.
        nesterov: Nesterov's momentum; ignored without ``momentum``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.privacy import dpsgd
        >>> tx = dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.1, seed=0)
        >>> params = jnp.zeros(3)
        >>> per_example = jnp.ones((8, 3))  # eight examples, of norm sqrt(3) each
        >>> updates, state = tx.update(per_example, tx.init(params), params)
        >>> updates.shape
        (3,)
    """
    aggregate = differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed)
    momentum_block = [] if momentum is None else [trace(check_decay("momentum", momentum), nesterov)]
    sgd = chain(*momentum_block, scale_by_learning_rate(learning_rate, allow_none=False))

    def init(params):
        return (aggregate.init(params), *sgd.init(params))

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != 2 + len(momentum_block):
            raise ValueError("dpsgd: this state was not made by this optimizer's init")
        updates, aggregate_state = aggregate.update(updates, state[0], params, **extra_args)
        updates, sgd_state = sgd.update(updates, tuple(state[1:]), params, **extra_args)
        return updates, (aggregate_state, *sgd_state)

    return GradientTransformation(init, update)


__all__ = ["DifferentiallyPrivateAggregateState", "differentially_private_aggregate", "dpsgd"]
