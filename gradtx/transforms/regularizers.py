"""Regularizers that act on the updates: decoupled weight decay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, ScalarOrSchedule
from gradtx.core.base import EmptyState, GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.numerics import safe_increment, zero_count
from gradtx.core.tree import check_real
from gradtx.core.validation import check_nonnegative
from gradtx.transforms.masking import masked


class AddDecayedWeightsState(NamedTuple):
    """``add_decayed_weights``: the step count (for a schedule) and the decay rate."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    r"""Add :math:`\lambda\,\theta` to the updates: weight decay, decoupled from the gradient.

    Placed before the learning rate in a chain, it gives AdamW's
    :math:`\theta \leftarrow \theta - \eta(u + \lambda\theta)` (Loshchilov & Hutter, 2019,
    :arxiv:`1711.05101`). Needs the parameters.

    Args:
        weight_decay: :math:`\lambda`, at least 0: a number, a 0-d array or a schedule of
            the step (update :math:`t`, from 0, uses ``weight_decay(t)``).
        mask: the leaves to decay: a tree of Python bools shaped like the parameters, or a
            function of the parameters returning one (see :func:`masked`); ``None`` decays
            every leaf.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.add_decayed_weights(0.1)
        >>> params = jnp.array([10.0])
        >>> tx.update(jnp.zeros(1), tx.init(params), params)[0].tolist()
        [1.0]
    """
    check_nonnegative("weight_decay", weight_decay)
    hp = Hyperparams(weight_decay=weight_decay)

    def init(params):
        return AddDecayedWeightsState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(params, updates, "the parameters", "the updates")
        wd = hp.values(state.hyperparams)["weight_decay"]
        decayed = jax.tree.map(lambda u, p: (u + wd.astype(u.dtype) * p).astype(u.dtype), updates, params)
        count = safe_increment(state.count)
        return decayed, AddDecayedWeightsState(count, hp.advance(state.hyperparams, count))

    tx = GradientTransformation(init, update)
    return tx if mask is None else masked(tx, mask)


# ------------------------------ centralization, gradient noise, non-negativity, NaN guards

import jax.numpy as jnp  # noqa: E402 - this section's own imports
import numpy as np  # noqa: E402


def centralize(*, fan_out_axis: int = -1) -> GradientTransformation:
    r"""Gradient centralization (Yong, Huang, Hua & Zhang, 2020, :arxiv:`2004.01461`).

    For every leaf with two or more dimensions, subtract the mean over each
    output's fan-in, i.e. over every axis but the last (the ``(..., fan_in,
    fan_out)`` layout of JAX and Flax kernels):

    .. math::
        \Phi(G)_{:, j} = G_{:, j} - \tfrac{1}{M} \textstyle\sum_{i} G_{i, j}

    Vectors (biases, scales) and scalars pass unchanged. ``fan_out_axis=0`` is for kernels laid
    out ``(fan_out, fan_in, ...)``, as torch's are; it is what Optax's ``centralize`` computes on
    every leaf (the paper's PyTorch rule, applied to Flax's layout it centres each input instead).

    Args:
        fan_out_axis: the axis that indexes the output units; the mean is over all the others.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.centralize()
        >>> g = {"w": jnp.array([[1.0, 2.0], [3.0, 6.0]]), "b": jnp.array([1.0, 2.0])}
        >>> u, _ = tx.update(g, tx.init(g))
        >>> u["w"].tolist(), u["b"].tolist()
        ([[-1.0, -2.0], [1.0, 2.0]], [1.0, 2.0])
    """

    def init(params):
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        def center(g):
            if jnp.ndim(g) < 2:
                return g
            out = fan_out_axis % jnp.ndim(g)
            axes = tuple(a for a in range(jnp.ndim(g)) if a != out)
            mean = jnp.mean(g, axis=axes, keepdims=True, dtype=jnp.promote_types(g.dtype, jnp.float32))
            return (g - mean).astype(g.dtype)

        return jax.tree.map(center, updates), state

    return GradientTransformation(init, update)


class AddNoiseState(NamedTuple):
    """``add_noise``: the step count :math:`t`, the PRNG key and :math:`\\eta, \\gamma`."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    rng_key: jax.Array
    hyperparams: dict[str, Any]


def _key_store(key: Any, seed: int | None, who: str):
    """The key as raw data for the state, and the functions from that data to a key and back."""
    if seed is not None:
        if key is not None:
            raise ValueError(f"{who}: give key or seed, not both")
        key = seed
    if key is None:
        raise ValueError(f"{who} needs a PRNG key, e.g. key=jax.random.key(0)")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(key)
        return jax.random.key_data(key), lambda data: jax.random.wrap_key_data(data, impl=impl), jax.random.key_data
    return key, lambda data: data, lambda data: data


def add_noise(eta: float, gamma: float, key: Any = None, *, seed: int | None = None) -> GradientTransformation:
    r"""Add annealed Gaussian noise to the gradient (Neelakantan et al., 2015, :arxiv:`1511.06807`).

    .. math::
        u_t = g_t + \xi_t, \qquad \xi_t \sim \mathcal N\!\left(0, \frac{\eta}{(1 + t)^\gamma}\right)

    with :math:`t = 0, 1, \dots` the number of updates before this one. The
    state keeps the PRNG key. Each update splits it in two: the first half is
    the next state's key, the second is split into one key per leaf (in
    flattening order), and leaf :math:`i`'s noise is
    ``jax.random.normal(keys[i], shape, dtype)``.

    Args:
        eta: :math:`\eta`, the noise variance at :math:`t = 0`; at least 0: a number, a 0-d
            array or a schedule of the step.
        gamma: :math:`\gamma`, the exponent of its decay; at least 0: a number, a 0-d array
            or a schedule of the step.
        key: the PRNG key: a ``jax.random.key``, a raw ``PRNGKey`` or an int seed.
        seed: an int seed, an alias of ``key``; give one of the two, not both.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> tx = gradtx.add_noise(eta=0.01, gamma=0.55, key=jax.random.key(0))
        >>> u, state = tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)))
        >>> u.shape, int(state.count), bool(jnp.all(jnp.abs(u) < 0.5))
        ((3,), 1, True)
    """
    hp = Hyperparams(eta=check_nonnegative("eta", eta), gamma=check_nonnegative("gamma", gamma))
    key_data, as_key, as_data = _key_store(key, seed, "add_noise")

    def init(params):
        return AddNoiseState(zero_count(), key_data, hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is not None:
            _tree.check_same_structure(params, updates, "the parameters", "the updates")
        h = hp.values(state.hyperparams)
        next_key, noise_key = jax.random.split(as_key(state.rng_key))
        noise = _tree.random_like(noise_key, updates)
        t = state.count.astype(h["eta"].dtype)
        std = jnp.sqrt(h["eta"] / (1 + t) ** h["gamma"])
        noisy = jax.tree.map(lambda g, n: (g + std.astype(g.dtype) * n).astype(g.dtype), updates, noise)
        count = safe_increment(state.count)
        return noisy, AddNoiseState(count, as_data(next_key), hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


NonNegativeParamsState = EmptyState  # Optax's name for this state


def keep_params_nonnegative() -> GradientTransformation:
    r"""Stop every parameter at zero from above: :math:`u \leftarrow \max(u, -\theta)`.

    A parameter that would become negative is set to exactly 0 (a projection
    onto the non-negative orthant). Needs the parameters. Complex parameters,
    which are neither positive nor negative, raise a ``TypeError`` naming the leaf.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.keep_params_nonnegative()
        >>> params = jnp.array([1.0, 1.0])
        >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(params), params)[0].tolist()
        [-1.0, 0.5]
    """

    why = "complex numbers are neither negative nor non-negative"

    def init(params):
        check_real("keep_params_nonnegative", params, why)
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("keep_params_nonnegative needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(params, updates, "the parameters", "the updates")
        check_real("keep_params_nonnegative", params, why)
        return jax.tree.map(lambda u, p: jnp.where(p + u < 0, -p, u).astype(u.dtype), updates, params), state

    return GradientTransformation(init, update)


class ZeroNansState(NamedTuple):
    """``zero_nans``: for every leaf, whether the last update held a NaN."""

    found_nan: Any


def zero_nans() -> GradientTransformation:
    r"""Replace NaN in the updates by 0, and record per leaf whether there was one.

    .. math::
        u \leftarrow \begin{cases} 0 & u \text{ is NaN} \\ u & \text{otherwise} \end{cases}

    ``state.found_nan`` is a tree of booleans shaped like the parameters'
    tree (one 0-d flag per leaf) for the most recent update. Infinities pass.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.zero_nans()
        >>> params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
        >>> u, state = tx.update({"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(1)}, tx.init(params))
        >>> u["a"].tolist(), bool(state.found_nan["a"]), bool(state.found_nan["b"])
        ([1.0, 0.0], True, False)
    """

    def init(params):
        return ZeroNansState(jax.tree.map(lambda _: jnp.zeros((), bool), params))

    def update(updates, state, params=None, **extra_args):
        _tree.check_same_structure(state.found_nan, updates, "the tree this state was built for", "the updates")
        found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        cleaned = jax.tree.map(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
        return cleaned, ZeroNansState(found)

    return GradientTransformation(init, update)
