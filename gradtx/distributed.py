"""Many devices: optimizer-state sharding (ZeRO stage 1) and the shardings a jitted step needs.

Every gradtx transform runs unchanged under ``jax.jit`` with sharded arrays,
``pmap``, ``shard_map`` and across processes joined by ``jax.distributed``:
parameter-shaped state is created with its parameter's sharding, and an update
is elementwise except where a statistic spans the tree (global-norm clipping
and the like, which take an ``axis_name`` for ``shard_map`` and ``pmap``). This
module adds what the transforms cannot decide for you: laying the optimizer
state out across the data-parallel devices, so that each keeps only a slice of
it while the parameters stay replicated (ZeRO stage 1, Rajbhandari et al.,
2020), and the in/out shardings of a jitted training step that uses it.

Example (on one device the mesh has one position, and every layout is trivial):

    >>> import jax, jax.numpy as jnp, gradtx
    >>> from gradtx import distributed
    >>> mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    >>> params = {"w": jnp.zeros((8, 4)), "b": jnp.zeros(4)}
    >>> tx = gradtx.adam(1e-3)
    >>> state = distributed.zero1_init(tx, params, mesh)
    >>> state[0].mu["w"].sharding.spec
    P('data',)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradtx.core.aliases import AxisNames, Params, PyTree
from gradtx.core.base import GradientTransformation


def _axes(axis: AxisNames) -> tuple[str, ...]:
    return (axis,) if isinstance(axis, str) else tuple(axis)


def _axis_size(mesh: Mesh, axis: AxisNames) -> int:
    missing = [a for a in _axes(axis) if a not in mesh.shape]
    if missing:
        raise ValueError(f"the mesh has axes {tuple(mesh.shape)}, not {missing[0]!r}")
    return math.prod(mesh.shape[a] for a in _axes(axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device of ``mesh`` holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: AxisNames = "data") -> NamedSharding:
    """The leading (batch) dimension split across ``axis``; the rest whole."""
    _axis_size(mesh, axis)
    return NamedSharding(mesh, PartitionSpec(axis))


def _spec_on(leaf: Any, mesh: Mesh, ndim: int) -> list[Any]:
    """The leaf's own partition on ``mesh``, one entry per dimension; unsharded if it has none."""
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding) and dict(sharding.mesh.shape) == dict(mesh.shape):
        spec = list(sharding.spec)
        return spec + [None] * (ndim - len(spec))
    return [None] * ndim


def _used(entry: Any) -> tuple[str, ...]:
    return () if entry is None else _axes(entry)


def zero1_state_sharding(state_or_shapes: PyTree, mesh: Mesh, axis: AxisNames = "data") -> PyTree:
    """A tree of ``NamedSharding`` that splits optimizer state across the data-parallel ``axis``.

    Each array leaf (an array, or a ``jax.ShapeDtypeStruct`` from
    ``jax.eval_shape(tx.init, params)``) keeps the partition it already has on
    ``mesh`` (model-parallel state stays model-parallel) and is split across
    ``axis`` along its first dimension that is not already split and whose size
    is a multiple of the axis size. A leaf with no such dimension, a scalar
    (step counts, hyperparameters) and a PRNG key are replicated across
    ``axis``. ``axis`` may be a tuple of mesh axes, split together.

    Use it as the ``out_shardings`` of the jitted ``init`` and as the state's
    in and out shardings of the jitted step (:func:`zero1_init` and
    :func:`zero1_jit` do both). The parameters keep their own layout; the
    update of each slice of state is computed where the slice lives, and XLA
    brings the updates back to the parameters' layout.

    Example (an abstract mesh of 4 devices: layouts can be planned without them):
        >>> import jax, jax.numpy as jnp
        >>> from jax.sharding import AbstractMesh
        >>> from gradtx.distributed import zero1_state_sharding
        >>> mesh = AbstractMesh((4,), ("data",))
        >>> shapes = {"w": jax.ShapeDtypeStruct((3, 8), jnp.float32), "b": jnp.zeros(3),
        ...           "count": jnp.zeros((), jnp.int32)}
        >>> {k: s.spec for k, s in zero1_state_sharding(shapes, mesh).items()}
        {'b': P(), 'count': P(), 'w': P(None, 'data')}
    """
    n = _axis_size(mesh, axis)
    wanted = set(_axes(axis))
    entry = axis if isinstance(axis, str) else tuple(axis)

    def one(leaf):
        shape = tuple(jnp.shape(leaf))
        spec = _spec_on(leaf, mesh, len(shape))
        is_key = jnp.issubdtype(getattr(leaf, "dtype", jnp.float32), jax.dtypes.prng_key)
        already = any(wanted & set(_used(e)) for e in spec)
        if shape and not is_key and not already:
            for d, size in enumerate(shape):
                if spec[d] is None and size >= n and size % n == 0:
                    spec[d] = entry
                    break
        while spec and spec[-1] is None:
            spec.pop()
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(one, state_or_shapes)


def _state_layout(tx: GradientTransformation, params: Params) -> PyTree:
    """The state's shapes, each with the sharding ``jax.jit(tx.init)`` would give it (nothing is computed)."""
    shapes = jax.eval_shape(tx.init, params)
    if all(getattr(getattr(p, "sharding", None), "is_fully_replicated", True) for p in jax.tree.leaves(params)):
        return shapes  # replicated parameters: the state has no layout of its own to keep
    shardings = jax.jit(tx.init).lower(params).compile().output_shardings
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def zero1_init(tx: GradientTransformation, params: Params, mesh: Mesh, axis: AxisNames = "data") -> PyTree:
    """``tx.init(params)`` with its state laid out by :func:`zero1_state_sharding`.

    The state is created directly in its slices: no device ever holds the
    whole of it. Parameter-shaped leaves start from their parameter's layout
    (what ``jax.jit(tx.init)`` gives) and are further split across ``axis``.
    Read the layout back with ``jax.tree.map(lambda x: x.sharding, state)``.
    """
    shardings = zero1_state_sharding(_state_layout(tx, params), mesh, axis)
    return jax.jit(tx.init, out_shardings=shardings)(params)


def zero1_jit(
    step: Callable[..., Any],
    state_shardings: PyTree,
    mesh: Mesh,
    *,
    axis: AxisNames = "data",
    params_sharding: PyTree = None,
    donate: bool = True,
) -> Callable[..., Any]:
    """``jax.jit(step)`` with the layouts of data-parallel training with ZeRO-1 state.

    ``step(params, state, batch) -> (params, state, aux)``: the parameters come
    in and go out replicated (or in ``params_sharding``: one sharding or a tree
    of them), the state in ``state_shardings`` (from :func:`zero1_state_sharding`
    or ``jax.tree.map(lambda x: x.sharding, zero1_init(...))``), every leaf of
    the batch split along its leading dimension across ``axis``, and ``aux``
    (a loss, metrics: any tree) comes back replicated. With ``donate`` the
    parameters and state passed in are donated, so that their buffers are
    reused for the new ones.

    Put the batch on the mesh first: ``jax.device_put(batch, batch_sharding(mesh))``
    in one process, ``jax.make_array_from_process_local_data`` across several.
    """
    p_sharding = replicated(mesh) if params_sharding is None else params_sharding
    return jax.jit(
        step,
        in_shardings=(p_sharding, state_shardings, batch_sharding(mesh, axis)),
        out_shardings=(p_sharding, state_shardings, replicated(mesh)),
        donate_argnums=(0, 1) if donate else (),
    )


def pmean_loss(loss_fn: Callable[[Params], jax.Array], axis_name: Any) -> Callable[[Params], jax.Array]:
    """``loss_fn`` averaged over the devices of ``axis_name``, with the averaged gradient.

    For the ``value_fn`` of a line search (``lbfgs``, ``scale_by_zoom_linesearch``,
    ...) under ``pmap`` or ``shard_map`` with data parallelism: each device
    evaluates ``loss_fn(params)`` on its part of the batch, and the search must
    see the loss of the whole batch *and its gradient*. ``lax.pmean(loss_fn(p))``
    gives the right value but, differentiated, each device's own gradient, so
    the devices would take different decisions (and, waiting for each other in
    a collective, hang). Under ``jit`` with a sharded batch, pass the plain loss.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.distributed import pmean_loss
        >>> batch = jnp.array([[1.0], [3.0]])  # one example per device
        >>> def grad_on_each(b):
        ...     return jax.grad(pmean_loss(lambda w: jnp.sum((w - b) ** 2), "i"))(jnp.zeros(1))
        >>> jax.vmap(grad_on_each, axis_name="i")(batch).tolist()  # the average of -2b on both
        [[-4.0], [-4.0]]
    """

    @jax.custom_vjp
    def averaged(params):
        return jax.lax.pmean(loss_fn(params), axis_name)

    def forward(params):
        value, pullback = jax.vjp(loss_fn, params)
        return jax.lax.pmean(value, axis_name), pullback

    def backward(pullback, cotangent):
        (grads,) = pullback(cotangent)
        return (jax.lax.pmean(grads, axis_name),)

    averaged.defvjp(forward, backward)
    return averaged


def bytes_per_device(tree: PyTree, device: Any = None) -> int:
    """The bytes of ``tree``'s arrays stored on ``device`` (default: this process's first device).

    The sum of ``shard.data.nbytes`` over the addressable shards on that
    device: a replicated leaf counts in full, a leaf split ``n`` ways a
    ``1/n`` share.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.distributed import bytes_per_device
        >>> bytes_per_device({"w": jnp.zeros((4, 8), jnp.float32), "count": jnp.zeros((), jnp.int32)})
        132
    """
    device = jax.local_devices()[0] if device is None else device
    total = 0
    for leaf in jax.tree.leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            if shard.device == device:
                total += shard.data.nbytes
    return total


__all__ = [
    "replicated",
    "batch_sharding",
    "zero1_state_sharding",
    "zero1_init",
    "zero1_jit",
    "pmean_loss",
    "bytes_per_device",
]
