"""Clipping: bounding each update, or the norm of all updates together."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.numerics import norm_dtype, stable_norm
from gradtx.core.validation import check_nonnegative, check_positive


class ClipState(NamedTuple):
    """A clipping transform's state: its threshold, readable by name."""

    hyperparams: dict[str, Any]


ClipByGlobalNormState = ClipState
AdaptiveGradClipState = ClipState


def clip(max_delta: float) -> GradientTransformation:
    r"""Clip every element to :math:`[-\delta, \delta]`.

    A complex element keeps its phase and has its modulus clipped to :math:`\delta`:
    :math:`u \min(1, \delta / |u|)`, which is the same clipping for a real one.

    Args:
        max_delta: :math:`\delta`, the largest magnitude an element keeps. A positive number
            or 0-d array (not a schedule).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.clip(1.0)
        >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(jnp.zeros(3)))[0].tolist()
        [-1.0, 0.5, 1.0]
    """
    hp = Hyperparams(max_delta=check_positive("max_delta", max_delta), allow_schedules=False)

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        delta = hp.values(state.hyperparams)["max_delta"]

        def clip_leaf(u):
            if not jnp.iscomplexobj(u):
                return jnp.clip(u, -delta.astype(u.dtype), delta.astype(u.dtype))
            size = jnp.abs(u)
            limit = delta.astype(size.dtype)
            return jnp.where(size > limit, u * (limit / jnp.where(size > limit, size, 1)), u).astype(u.dtype)

        return jax.tree.map(clip_leaf, updates), state

    return GradientTransformation(init, update)


def global_norm(updates: Any) -> jax.Array:
    """Deprecated in Optax for :func:`gradtx.tree.norm`: the l2 norm of all the updates together.

    Args:
        updates: a pytree of arrays.

    Example:
        >>> import warnings
        >>> import jax.numpy as jnp, gradtx
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     float(gradtx.global_norm({"a": jnp.array([3.0, 4.0])}))
        5.0
    """
    warnings.warn("global_norm is deprecated: use gradtx.tree.norm", DeprecationWarning, stacklevel=2)
    return _tree.norm(updates)


def clip_by_global_norm(max_norm: float, *, axis_name: Any = None) -> GradientTransformation:
    r"""Rescale all updates together so that their joint l2 norm is at most ``max_norm``.

    .. math::
        u \leftarrow u \cdot \frac{c}{\max(\lVert u \rVert_2, c)}

    which leaves ``u`` unchanged when its norm is within ``c`` (Pascanu et al., 2013,
    :arxiv:`1211.5063`).

    Args:
        max_norm: :math:`c`, the largest joint l2 norm of the updates. A positive number or
            0-d array (not a schedule).
        axis_name: under ``shard_map`` or ``pmap`` with the updates split across a mapped
            axis, that axis: the norm is then that of the whole tree, summed over the devices
            (see :func:`gradtx.core.tree.norm`). ``None`` under ``jit`` with sharded arrays
            and when every device holds the whole (averaged) gradient.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.clip_by_global_norm(1.0)
        >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"].tolist()
        [0.800000011920929]
    """
    hp = Hyperparams(max_norm=check_positive("max_norm", max_norm), allow_schedules=False)

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        c = hp.values(state.hyperparams)["max_norm"]
        norm = _tree.norm(updates, axis_name=axis_name)
        factor = c.astype(norm.dtype) / jnp.maximum(norm, c.astype(norm.dtype))
        return jax.tree.map(lambda u: (u * factor.astype(u.dtype)).astype(u.dtype), updates), state

    return GradientTransformation(init, update)


# ------------------------------------------- block, adaptive and per-example clipping


def _shrink(norm: jax.Array, limit: jax.Array) -> jax.Array:
    """The factor ``min(1, limit / norm)``, 1 where ``norm`` is 0 (no 0/0)."""
    return jnp.where(norm > limit, limit / jnp.where(norm > 0, norm, 1), 1)


def clip_by_block_rms(threshold: float) -> GradientTransformation:
    r"""Clip each leaf (block) to a root mean square of at most ``threshold``.

    .. math::
        u \leftarrow u \cdot \frac{c}{\max(\mathrm{rms}(u), c)}, \qquad
        \mathrm{rms}(u) = \lVert u \rVert_2 / \sqrt{\mathrm{size}(u)}

    The update clipping of Adafactor (Shazeer & Stern, 2018, :arxiv:`1804.04235`, section 6),
    per leaf.

    Args:
        threshold: :math:`c`, the largest root mean square a leaf keeps (Adafactor's
            :math:`d`). A positive number or 0-d array (not a schedule).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.clip_by_block_rms(1.0)
        >>> u, _ = tx.update({"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.5])}, tx.init(None))
        >>> [round(x, 4) for x in u["a"].tolist()], u["b"].tolist()
        ([0.8485, 1.1314], [0.5])
    """
    hp = Hyperparams(threshold=check_positive("threshold", threshold), allow_schedules=False)

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        c = hp.values(state.hyperparams)["threshold"]

        def clip_leaf(u, rms):
            factor = _shrink(rms, c.astype(norm_dtype(u)))
            return (u * factor).astype(u.dtype)

        return jax.tree.map(clip_leaf, updates, _tree.block_norms(updates, rms=True)), state

    return GradientTransformation(init, update)


def _unit_axes(shape: tuple[int, ...], axis: Any) -> tuple[int, ...]:
    """The axes a unit's norm reduces over, by the rules of the NFNets reference code."""
    ndim = len(shape)
    if ndim <= 1:  # scalars and vectors (biases, scales): one unit
        return tuple(range(ndim))
    if axis is not None:
        return (axis,) if isinstance(axis, int) else tuple(axis)
    if sum(d != 1 for d in shape) <= 1:  # a vector with axes of size 1
        return tuple(range(ndim))
    if ndim in (2, 3):  # (fan_in, fan_out) kernels and multi-head (fan_in, heads, fan_out): units are columns
        return (0,)
    if ndim == 4:  # convolutions, (height, width, fan_in, fan_out)
        return (0, 1, 2)
    return tuple(range(ndim - 1))


def unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    r"""The norm of each unit of ``x``, broadcast back to ``x``'s shape, as adaptive gradient
    clipping measures it (Brock et al., 2021, :arxiv:`2102.06171`).

    A scalar or vector is one unit; a matrix's units are its columns (the weights into one output),
    and so are a 3-d multi-head kernel's; a 4-d convolution kernel ``(h, w, in, out)`` has one unit
    per output channel; beyond 4-d, every axis but the last is reduced.

    Args:
        x: an array.
        axis: the axes to reduce instead of those rules, when ``x`` has two or more dimensions.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> gradtx.transforms.unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]])).tolist()
        [[5.0, 1.0], [5.0, 1.0]]
    """
    x = jnp.asarray(x)
    norms = stable_norm(x, _unit_axes(x.shape, axis), keepdims=True)
    return jnp.broadcast_to(norms, x.shape)


def unitwise_clip(g_norm: jax.Array, max_norm: jax.Array, grad: jax.Array, div_eps: float = 1e-6) -> jax.Array:
    r"""Scale ``grad`` down where its unit norm ``g_norm`` exceeds ``max_norm``:
    :math:`g \cdot \min(1, m / \max(\lVert g \rVert, \epsilon))`.

    Args:
        g_norm: the unit norms of ``grad`` (from :func:`unitwise_norm`), shaped like ``grad``.
        max_norm: the largest norm allowed, shaped like ``grad`` (or a scalar).
        grad: the gradient.
        div_eps: :math:`\epsilon`, a floor on the norm divided by.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> g = jnp.array([3.0, 4.0])
        >>> print(gradtx.transforms.unitwise_clip(gradtx.transforms.unitwise_norm(g), 1.0, g))
        [0.6 0.8]
    """
    factor = jnp.minimum(1.0, max_norm / jnp.maximum(g_norm, div_eps))
    return (grad * factor).astype(jnp.asarray(grad).dtype)


def adaptive_grad_clip(
    clipping: float,
    eps: float = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> GradientTransformation:
    r"""Unit-wise adaptive gradient clipping of NFNets (Brock, De, Smith & Simonyan, 2021, :arxiv:`2102.06171`).

    For every unit :math:`i` (the weights into one output),

    .. math::
        G_i \leftarrow G_i \cdot \min\left(1, \frac{\lambda \max(\lVert W_i \rVert, \epsilon)}{\lVert G_i \rVert}\right)

    Units follow the NFNets reference code (see :func:`gradtx.transforms.unitwise_norm`): a
    scalar or vector is one unit, a matrix's or 3-d kernel's units are its columns (the weights
    into one output, Flax's ``(fan_in, fan_out)`` layout), a 4-d convolution kernel has one
    per output channel. Needs the parameters.

    Args:
        clipping: :math:`\lambda`, the largest ratio of a unit's gradient norm to its weight
            norm. A positive number or 0-d array (not a schedule).
        eps: :math:`\epsilon`, the floor on the weight norm, so that units at 0 can still
            move. A number or 0-d array, at least 0 (not a schedule).
        axis: the axes a unit's norm reduces over (an int or a tuple), for every leaf with
            two or more dimensions; ``None`` follows the rules above.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adaptive_grad_clip(0.1)
        >>> w = jnp.array([[3.0, 1.0], [4.0, 0.0]])   # units: columns, norms 5 and 1
        >>> g = jnp.array([[6.0, 0.05], [8.0, 0.0]])  # column norms 10 and 0.05
        >>> u, _ = tx.update(g, tx.init(w), w)
        >>> [[round(x, 4) for x in row] for row in u.tolist()]
        [[0.3, 0.05], [0.4, 0.0]]
    """
    hp = Hyperparams(
        clipping=check_positive("clipping", clipping), eps=check_nonnegative("eps", eps), allow_schedules=False
    )

    def init(params):
        return ClipState(hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("adaptive_grad_clip needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(params, updates, "the parameters", "the updates")
        h = hp.values(state.hyperparams)

        def clip_leaf(g, w):
            axes = _unit_axes(jnp.shape(g), axis)
            dtype = jnp.promote_types(norm_dtype(g), norm_dtype(w))
            lam, eps_ = h["clipping"].astype(dtype), h["eps"].astype(dtype)
            limit = lam * jnp.maximum(stable_norm(w, axes, keepdims=True).astype(dtype), eps_)
            return (g * _shrink(stable_norm(g, axes, keepdims=True).astype(dtype), limit)).astype(g.dtype)

        return jax.tree.map(clip_leaf, updates, params), state

    return GradientTransformation(init, update)


def _batch_size(grads: Any, who: str) -> int:
    leaves = _tree.leaves_with_path(grads)
    if not leaves:
        raise ValueError(f"{who} needs at least one leaf of per-example gradients")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for _, x in leaves}
    if len(sizes) != 1 or None in sizes:
        found = ", ".join(f"'{_tree.path_str(p)}': {jnp.shape(x)}" for p, x in leaves)
        raise ValueError(f"{who}: every leaf needs the same leading batch dimension, got shapes {found}")
    return sizes.pop()  # type: ignore[return-value]


def _per_example_norm(x: jax.Array) -> jax.Array:
    return stable_norm(x, tuple(range(1, jnp.ndim(x))))


def _clipped_sum(x: jax.Array, factor: jax.Array) -> jax.Array:
    factor = factor.reshape(factor.shape + (1,) * (jnp.ndim(x) - 1))
    return jnp.sum(x * factor.astype(jnp.promote_types(x.dtype, factor.dtype)), axis=0).astype(x.dtype)


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float) -> tuple[Any, jax.Array]:
    r"""Clip every example's gradient to a global l2 norm of at most ``C``, then sum over the batch.

    Example :math:`i`'s gradient :math:`g_i` (all leaves together) is scaled
    by :math:`\min(1, C / \lVert g_i \rVert)` (DP-SGD, Abadi et al., 2016, :arxiv:`1607.00133`).

    Args:
        grads: a tree whose every leaf holds per-example gradients along its first axis,
            of the same length in every leaf.
        l2_norm_clip: :math:`C`, the largest l2 norm an example's gradient keeps. A positive
            number or 0-d array.

    Returns:
        The tree of summed clipped gradients (without the batch axis), and the number of
        examples whose norm exceeded :math:`C` (an int32 0-d array).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> grads = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}  # two examples, norms 5 and 0.5
        >>> total, n = gradtx.per_example_global_norm_clip(grads, 1.0)
        >>> [round(x, 4) for x in total["w"].tolist()], int(n)
        ([0.9, 1.2], 1)
    """
    check_positive("l2_norm_clip", l2_norm_clip)
    _batch_size(grads, "per_example_global_norm_clip")
    leaves = jax.tree.leaves(grads)
    dtype = jnp.result_type(*[norm_dtype(x) for x in leaves])
    per_leaf = jnp.stack([_per_example_norm(x).astype(dtype) for x in leaves])  # (leaves, batch)
    top = jnp.max(per_leaf, axis=0)
    safe = jnp.where(top > 0, top, 1)
    norms = safe * jnp.sqrt(jnp.sum(jnp.square(per_leaf / safe), axis=0))
    c = jnp.asarray(l2_norm_clip, dtype)
    factor = _shrink(norms, c)
    total = jax.tree.map(lambda x: _clipped_sum(x, factor), grads)
    return total, jnp.sum(norms > c).astype(jnp.int32)


def per_example_layer_norm_clip(grads: Any, global_l2_norm_clip: float, uniform: bool = True) -> tuple[Any, Any]:
    r"""Clip every example's gradient leaf by leaf, then sum over the batch.

    Leaf :math:`l` of example :math:`i` is scaled by
    :math:`\min(1, C_l / \lVert g_{i,l} \rVert)`, with per-leaf thresholds whose
    squares add up to :math:`C^2` (per-layer clipping, McMahan et al., 2018,
    :arxiv:`1710.06963`).

    Args:
        grads: a tree whose every leaf holds per-example gradients along its first axis,
            of the same length in every leaf.
        global_l2_norm_clip: :math:`C`. A positive number or 0-d array.
        uniform: ``True`` gives every one of the :math:`L` leaves :math:`C_l = C / \sqrt{L}`;
            ``False`` gives a leaf holding :math:`d_l` of the :math:`d` parameters (per
            example) :math:`C_l = C \sqrt{d_l / d}`.

    Returns:
        The tree of summed clipped gradients (without the batch axis), and a tree of the
        number of examples clipped in each leaf (int32 0-d arrays).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> grads = {"a": jnp.array([[3.0, 4.0]]), "b": jnp.array([[0.1]])}  # one example
        >>> total, n = gradtx.per_example_layer_norm_clip(grads, 2.0 ** 0.5)  # C_l = 1
        >>> [round(x, 4) for x in total["a"].tolist()], int(n["a"]), int(n["b"])
        ([0.6, 0.8], 1, 0)
    """
    check_positive("global_l2_norm_clip", global_l2_norm_clip)
    _batch_size(grads, "per_example_layer_norm_clip")
    leaves = jax.tree.leaves(grads)
    per_example_size = lambda x: int(jnp.size(x)) // max(jnp.shape(x)[0], 1)  # noqa: E731
    total_size = max(sum(per_example_size(x) for x in leaves), 1)

    def threshold(x):
        share = 1.0 / len(leaves) if uniform else per_example_size(x) / total_size
        return global_l2_norm_clip * share**0.5

    def clip_leaf(x):
        norms = _per_example_norm(x)
        c = jnp.asarray(threshold(x), norms.dtype)
        return _clipped_sum(x, _shrink(norms, c)), jnp.sum(norms > c).astype(jnp.int32)

    pairs = jax.tree.map(clip_leaf, grads)
    treedef = jax.tree.structure(grads)
    flat = treedef.flatten_up_to(pairs)  # type: ignore[attr-defined]
    return (
        jax.tree.unflatten(treedef, [p[0] for p in flat]),
        jax.tree.unflatten(treedef, [p[1] for p in flat]),
    )
