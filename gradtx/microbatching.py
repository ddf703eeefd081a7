"""Microbatching: a function of a large batch computed one slice at a time, to fit memory.

The batch is cut into ``batch_size // microbatch_size`` microbatches, the function runs on each in
a ``lax.fori_loop`` (only one microbatch's activations are live) and an accumulator combines the
results. :func:`microbatch` is the general transformation, :func:`micro_vmap` a ``jax.vmap`` one
microbatch at a time, :func:`micro_grad` per-example gradients, transformed (clipped, as in DP-SGD)
and summed. Microbatch ``j`` of ``n`` holds examples ``j, j + n, j + 2n, ...``
(:func:`reshape_batch_axis`), so a batch sharded over devices stays where it is.

Example:
    >>> import jax.numpy as jnp, gradtx
    >>> total = gradtx.microbatch(jnp.sum, argnums=0, microbatch_size=2)
    >>> total(jnp.arange(8.0))
    Array(28., dtype=float32)
"""

from __future__ import annotations

import dataclasses
import enum
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from gradtx.core.validation import concrete_value

__all__ = ["AccumulationType", "Accumulator", "Aux", "micro_grad", "micro_vmap", "microbatch", "reshape_batch_axis"]


class AccumulationType(enum.Enum):
    """How the results of the microbatches are combined.

    - ``MEAN``: their sum divided by ``num_microbatches``, padding microbatches counted too.
    - ``SUM``: their sum.
    - ``RUNNING_MEAN``: their mean over the microbatches actually run (``num_real_microbatches``),
      kept as a running average, which stays accurate however many there are.
    - ``CONCAT``: the results joined along their leading axis in the batch's order (a scalar
      result gives one entry per microbatch).

    :func:`micro_vmap` and :func:`micro_grad` first reduce each microbatch's per-example results
    the same way (``MEAN`` there is the mean over examples).

    Example:
        >>> from gradtx.microbatching import AccumulationType
        >>> [(kind.name, kind.value) for kind in AccumulationType]
        [('MEAN', 1), ('SUM', 2), ('RUNNING_MEAN', 3), ('CONCAT', 4)]
    """

    MEAN = 1
    SUM = 2
    RUNNING_MEAN = 3
    CONCAT = 4


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """A way of combining the microbatches' results, as four functions.

    For results ``r_0, r_1, ...`` the loop computes ``c = init(shapes)``, ``c = update(c, r_j, j)``
    for each microbatch ``j`` run, and returns ``finalize(c)``; ``shapes`` is the tree of
    ``jax.ShapeDtypeStruct`` of one result and ``j`` a traced integer. The carry must keep its
    structure, shapes and dtypes.

    Args:
        init: the first carry, from the shapes and dtypes of one microbatch's result.
        update: ``update(carry, result, index)``: the carry after microbatch ``index``.
        finalize: the answer, from the last carry.
        aggregate: the reduction of one microbatch's per-example results (their leading axis),
            applied by :func:`micro_vmap` before ``update``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.microbatching import Accumulator
        >>> largest = Accumulator(
        ...     init=lambda s: jnp.full(s.shape, -jnp.inf, s.dtype),
        ...     update=lambda c, r, j: jnp.maximum(c, r),
        ...     finalize=lambda c: c,
        ...     aggregate=lambda r: jnp.max(r, axis=0),
        ... )
        >>> gradtx.microbatch(jnp.max, 0, 2, largest)(jnp.array([3.0, 9.0, 1.0, 4.0]))
        Array(9., dtype=float32)
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if not callable(getattr(self, field.name)):
                raise TypeError(f"Accumulator.{field.name} must be a function, got {getattr(self, field.name)!r}")


class Aux(NamedTuple):
    """The per-example outputs of :func:`micro_grad`, each with a leading batch axis.

    Args:
        values: the value of ``fun`` on each example.
        metrics: ``metrics_fn`` of each example's gradient (None by default).
        aux: the auxiliary output of each example, when ``has_aux``.
    """

    values: Any
    metrics: Any
    aux: Any


def _zeros(s: Any, dtype: Any, lead: tuple[int, ...] = ()) -> Any:
    """Zeros shaped ``lead + s.shape`` that keep the sharding of ``s`` on a mesh of explicit axes."""
    sharding = getattr(s, "sharding", None)
    if not isinstance(sharding, NamedSharding) or AxisType.Explicit not in sharding.mesh.axis_types:
        return jnp.zeros((*lead, *s.shape), dtype)
    out = NamedSharding(sharding.mesh, P(*(None,) * len(lead), *sharding.spec))
    return jnp.zeros((*lead, *s.shape), dtype, out_sharding=out)


def _summing(kind: AccumulationType, count: int, dtype: Any) -> Accumulator:
    """SUM, MEAN (the sum over ``count``) or RUNNING_MEAN, carried in at least ``dtype``."""
    wide = (lambda d: d) if dtype is None else (lambda d: jnp.promote_types(d, dtype))

    def check(s: Any) -> None:
        if kind is not AccumulationType.SUM and not jnp.issubdtype(s.dtype, jnp.inexact):
            raise TypeError(f"the {kind.name} accumulator must be given floating-point results, got {s.dtype}")

    def init(shapes: Any) -> Any:
        jax.tree.map(check, shapes)  # the sums, and an empty array of each result's dtype to return in
        sums = jax.tree.map(lambda s: _zeros(s, wide(s.dtype)), shapes)
        return sums, jax.tree.map(lambda s: jnp.zeros(0, s.dtype), shapes)

    def update(carry: Any, result: Any, index: Any) -> Any:
        def step(c: Any, r: Any) -> Any:
            if kind is AccumulationType.RUNNING_MEAN:  # c_j = c_{j-1} + (r_j - c_{j-1}) / (j + 1)
                count_so_far = (index + 1).astype(jnp.promote_types(c.real.dtype, jnp.float32))
                return (c + (r - c) / count_so_far).astype(c.dtype)
            return (c + r).astype(c.dtype)

        return jax.tree.map(step, carry[0], result), carry[1]

    def finalize(carry: Any) -> Any:
        mean = kind is AccumulationType.MEAN
        return jax.tree.map(lambda t, like: (t / count if mean else t).astype(like.dtype), *carry)

    def aggregate(results: Any) -> Any:
        def reduce(x: Any) -> Any:
            check(x)
            if kind is AccumulationType.SUM:
                return jnp.sum(x.astype(wide(x.dtype)), axis=0).astype(jnp.sum(x[:0], axis=0).dtype)
            return jnp.mean(x.astype(wide(x.dtype)), axis=0).astype(x.dtype)

        return jax.tree.map(reduce, results)

    return Accumulator(init, update, finalize, aggregate)


def _concat(count: int) -> Accumulator:
    def update(carry: Any, result: Any, index: Any) -> Any:
        return jax.tree.map(lambda c, r: jax.lax.dynamic_update_index_in_dim(c, r, index, 0), carry, result)

    def merge(c: Any) -> Any:  # (count, k, ...) -> (k * count, ...): entry i of microbatch j goes to j + i * count
        return c if c.ndim == 1 else jnp.moveaxis(c, 0, 1).reshape(count * c.shape[1], *c.shape[2:])

    init = lambda shapes: jax.tree.map(lambda s: _zeros(s, s.dtype, (count,)), shapes)
    return Accumulator(init, update, lambda c: jax.tree.map(merge, c), lambda r: r)


def _plan(microbatch_size: Any, accumulator: Any, num_real_microbatches: Any, accumulator_dtype: Any) -> tuple:
    """The checks every public function makes when it is built; the options ``_run`` takes."""
    if microbatch_size is not None and (not _is_int(microbatch_size) or microbatch_size < 1):
        raise ValueError(f"microbatch_size must be a positive int or None, got {microbatch_size!r}")
    leaves = jax.tree.leaves(accumulator, is_leaf=lambda x: x is None)
    for leaf in leaves or [accumulator]:
        if not isinstance(leaf, (AccumulationType, Accumulator)):
            raise TypeError(
                "accumulator must be an AccumulationType or an Accumulator, or a tree of them that is a prefix of "
                f"fun's output, got {leaf!r}"
            )
    _count_run(num_real_microbatches, None)
    dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)
    return microbatch_size, accumulator, num_real_microbatches, dtype


def _count_run(value: Any, count: int | None) -> Any:
    """How many microbatches run: all, ``value`` known now (checked), or ``value`` traced (clipped)."""
    if value is None:
        return count
    number = None if isinstance(value, bool) else concrete_value(value)
    traced = number is None and isinstance(value, jax.Array) and value.ndim == 0
    if traced and jnp.issubdtype(value.dtype, jnp.integer):  # known only when the step runs
        return value if count is None else jnp.clip(value, 0, count).astype(jnp.int32)
    if not isinstance(number, int) or number < 0 or count is not None and number > count:
        within = "a non-negative int" if count is None else f"an int in [0, {count}] (the number of microbatches)"
        raise ValueError(f"num_real_microbatches must be {within}, got {value!r}")
    return number


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints(name: str, value: Any) -> tuple[int, ...]:
    values = (value,) if _is_int(value) else tuple(value) if isinstance(value, Sequence) else (value,)
    if not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or a sequence of ints, got {value!r}")
    return values


def _positions(name: str, argnums: tuple[int, ...], count: int) -> list[int]:
    for i in argnums:
        if not -count <= i < count:
            raise ValueError(f"{name} must name positional arguments of the call, got {i} with {count} given")
    return [i % count for i in argnums]


def _axis(leaf: Any, axis: int, where: str) -> int:
    if not hasattr(leaf, "shape") or not -leaf.ndim <= axis < leaf.ndim:
        got = f"shape {leaf.shape}" if hasattr(leaf, "shape") else repr(leaf)
        raise ValueError(f"{where} must have a batch axis {axis}, got {got}")
    return axis % leaf.ndim


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    """Split the batch axis of every leaf into ``(num_microbatches, microbatch_size)``, column-major.

    Entry ``[j, i]`` of the two new axes is example ``j + i * num_microbatches``: microbatch ``j``
    takes every ``num_microbatches``-th example from ``j`` on. The ``microbatch_size`` axis is the
    slow one of the original axis, so a batch sharded over devices stays sharded along it and the
    ``num_microbatches`` axis is replicated: taking out a microbatch moves no data between devices.

    Args:
        tree: a pytree of arrays, each with a batch axis.
        microbatch_size: the number of examples in a microbatch; it must divide the batch size.
        axis: the batch axis of every leaf; the new axes stand at ``axis`` and ``axis + 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import reshape_batch_axis
        >>> reshape_batch_axis(jnp.arange(6), microbatch_size=2)
        Array([[0, 3],
               [1, 4],
               [2, 5]], dtype=int32)
    """
    if not _is_int(microbatch_size) or microbatch_size < 1:
        raise ValueError(f"microbatch_size must be a positive int, got {microbatch_size!r}")

    def split(path: Any, x: Any) -> Any:
        where = f"tree{jax.tree_util.keystr(path)}"
        a = _axis(x, axis, where)
        size = x.shape[a]
        if size % microbatch_size:
            raise ValueError(f"microbatch_size must divide the batch size {size} of {where}, got {microbatch_size}")
        x = jnp.reshape(x, (*x.shape[:a], microbatch_size, size // microbatch_size, *x.shape[a + 1 :]))
        return jnp.swapaxes(x, a, a + 1)

    return jax.tree_util.tree_map_with_path(split, tree)


def _run(
    fun: Callable[..., Any], args: Any, kwargs: dict[str, Any], batched: list[Any], plan: tuple, per_example: bool
) -> Any:
    """Run ``fun`` on each microbatch of the arguments ``batched`` names (``(position or keyword,
    batch axis)``) and fold the results, reduced first over examples when ``per_example``."""
    microbatch_size, accumulator, num_real, dtype = plan
    get = lambda key: args[key] if isinstance(key, int) else kwargs[key]
    sizes = {}
    for key, axis in batched:
        for path, leaf in jax.tree_util.tree_leaves_with_path(get(key)):
            here = f"argument {key!r}{jax.tree_util.keystr(path)}"
            sizes[here] = jnp.shape(leaf)[_axis(leaf, axis, here)]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the batch arguments must hold arrays of one batch size, got {sizes or 'no arrays'}")
    (where, size), *_ = sizes.items()
    per_microbatch = size if microbatch_size is None else microbatch_size
    if size % per_microbatch:
        raise ValueError(f"microbatch_size must divide the batch size {size} of {where}, got {per_microbatch}")
    count = size // per_microbatch
    split = [reshape_batch_axis(get(key), per_microbatch, axis) for key, axis in batched]

    def results(j: Any) -> list[Any]:
        call_args, call_kwargs = list(args), dict(kwargs)
        for (key, axis), arg in zip(batched, split):
            piece = jax.tree.map(lambda x, a=axis: jax.lax.dynamic_index_in_dim(x, j, a, keepdims=False), arg)
            if isinstance(key, int):
                call_args[key] = piece
            else:
                call_kwargs[key] = piece
        out = fun(*call_args, **call_kwargs)
        try:
            parts = tree.flatten_up_to(out)
        except (ValueError, TypeError) as error:
            raise ValueError(f"accumulator must be a tree prefix of fun's output: {error}") from None
        return [a.aggregate(p) for a, p in zip(accumulators, parts)] if per_example else parts

    tree: Any = jax.tree.structure(accumulator)
    builtin = lambda a: _concat(count) if a is AccumulationType.CONCAT else _summing(a, count, dtype)
    accumulators = [a if isinstance(a, Accumulator) else builtin(a) for a in tree.flatten_up_to(accumulator)]
    carry = [a.init(s) for a, s in zip(accumulators, jax.eval_shape(results, 0))]
    body = lambda j, c: [a.update(cj, r, j) for a, cj, r in zip(accumulators, c, results(j))]
    carry = jax.lax.fori_loop(0, _count_run(num_real, count), body, carry)
    return tree.unflatten([a.finalize(c) for a, c in zip(accumulators, carry)])


def microbatch(
    fun: Callable[..., Any],
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
    accumulator_dtype: Any = None,
) -> Callable[..., Any]:
    """Run ``fun`` on one microbatch at a time and combine the results.

    The arguments that ``argnums`` and ``argnames`` name are pytrees of arrays with a batch axis;
    each call of ``fun`` sees ``microbatch_size`` examples of them, the batch axis where it was,
    and the other arguments whole. For a loss that is a mean over examples, ``MEAN`` gives the
    full batch's loss, and of ``jax.value_and_grad(loss)`` its gradient too.

    Args:
        fun: any function; its output is a pytree of arrays.
        argnums: the position(s) of the arguments with a batch axis.
        microbatch_size: the examples per microbatch; it must divide the batch size. None runs the
            whole batch as one microbatch.
        accumulator: an :class:`AccumulationType` or :class:`Accumulator`, or a tree of them that is
            a prefix of ``fun``'s output, each combining its subtree.
        argnames: the name(s) of the keyword arguments with a batch axis.
        in_axes: the batch axis of every batch argument, or one per entry of ``argnums`` then
            ``argnames``.
        num_real_microbatches: run only the first this many microbatches (an int, or an integer
            traced under ``jit``, so that one compilation serves every value); the rest are padding
            and count as zeros (``RUNNING_MEAN`` averages over the real ones only). A traced value
            runs a while loop, which reverse-mode differentiation does not go through.
        accumulator_dtype: a dtype that ``SUM``, ``MEAN`` and ``RUNNING_MEAN`` carry their sums in at
            least (float32 for bfloat16 results); the answer keeps the results' dtype.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.microbatching import AccumulationType
        >>> loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)
        >>> x, y, w = jnp.arange(16.0).reshape(8, 2), jnp.ones(8), jnp.ones(2)
        >>> micro = gradtx.microbatch(jax.value_and_grad(loss), (1, 2), 2, AccumulationType.MEAN)
        >>> (value, grad), (full_value, full_grad) = micro(w, x, y), jax.value_and_grad(loss)(w, x, y)
        >>> bool(jnp.allclose(value, full_value)), bool(jnp.allclose(grad, full_grad))
        (True, True)
    """
    positions = _ints("argnums", argnums)
    names = (argnames,) if isinstance(argnames, str) else tuple(argnames)
    if not positions and not names:
        raise ValueError("argnums and argnames must name at least one batch argument, got none")
    count = len(positions) + len(names)
    axes = _ints("in_axes", in_axes) * (count if _is_int(in_axes) else 1)
    if len(axes) != count:
        raise ValueError(f"in_axes must have one entry per batch argument ({count}), got {in_axes!r}")
    plan = _plan(microbatch_size, accumulator, num_real_microbatches, accumulator_dtype)

    def microbatched(*args: Any, **kwargs: Any) -> Any:
        missing = [n for n in names if n not in kwargs]
        if missing:
            raise ValueError(f"argnames must name keyword arguments of the call, got {missing} with {sorted(kwargs)}")
        keys = _positions("argnums", positions, len(args)) + list(names)
        return _run(fun, args, kwargs, list(zip(keys, axes)), plan, per_example=False)

    return microbatched


def micro_vmap(
    fun: Callable[..., Any],
    in_axes: int | None | Sequence[int | None] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[..., Callable[..., Any]] = jax.vmap,
    accumulator: Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
    accumulator_dtype: Any = None,
) -> Callable[..., Any]:
    """``jax.vmap(fun)`` computed one microbatch at a time, or reduced over the batch as it goes.

    With the default ``CONCAT`` the answer is ``jax.vmap(fun, in_axes)(...)``; with ``SUM``,
    ``MEAN`` or ``RUNNING_MEAN`` it is that reduced over the batch axis, without ever holding more
    than one microbatch's outputs. Keyword arguments are mapped over their axis 0, as by ``jax.vmap``.

    Args:
        fun: the function of one example.
        in_axes: the batch axis of every positional argument, or one per argument (None for an
            argument without one).
        out_axes: must be 0: outputs are stacked along their leading axis.
        microbatch_size: the examples per microbatch (None: the whole batch at once).
        vmap_fn: called as ``vmap_fn(fun, in_axes, 0)`` to map a microbatch (``jax.vmap`` with
            options bound, say).
        accumulator: an :class:`AccumulationType` or :class:`Accumulator`, or a tree of them that is
            a prefix of ``fun``'s output; each reduces its per-example outputs within a microbatch
            (``aggregate``), then across microbatches.
        num_real_microbatches: run only the first this many microbatches, as in :func:`microbatch`.
        accumulator_dtype: the dtype sums are carried in at least, as in :func:`microbatch`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import micro_vmap
        >>> micro_vmap(lambda x: x**2, microbatch_size=2)(jnp.arange(6))
        Array([ 0,  1,  4,  9, 16, 25], dtype=int32)
    """
    if not isinstance(out_axes, int) or out_axes != 0:
        raise ValueError(f"out_axes must be 0, got {out_axes!r}")
    ok = lambda a: a is None or _is_int(a)
    axes_given: tuple[Any, ...] | None = tuple(in_axes) if isinstance(in_axes, Sequence) else None
    if not (ok(in_axes) or axes_given is not None and all(map(ok, axes_given))):
        raise ValueError(f"in_axes must be an int, None, or a sequence of them (one per argument), got {in_axes!r}")
    plan = _plan(microbatch_size, accumulator, num_real_microbatches, accumulator_dtype)

    def mapped(*args: Any, **kwargs: Any) -> Any:
        axes = (in_axes,) * len(args) if axes_given is None else axes_given
        if len(axes) != len(args):
            raise ValueError(f"in_axes must have one entry per positional argument ({len(args)}), got {in_axes!r}")
        batched = [(i, a) for i, a in enumerate(axes) if a is not None] + [(name, 0) for name in kwargs]
        return _run(vmap_fn(fun, axes, 0), args, kwargs, batched, plan, per_example=True)

    return mapped


def micro_grad(
    fun: Callable[..., Any],
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = lambda grads: grads,
    metrics_fn: Callable[[Any], Any] = lambda grads: None,
    num_real_microbatches: int | jax.Array | None = None,
    accumulator_dtype: Any = None,
) -> Callable[..., tuple[Any, Aux]]:
    """Per-example gradients, each transformed, then summed or averaged over the batch.

    The function returned takes ``fun``'s arguments and returns ``(gradient, Aux(values, metrics,
    aux))``: the accumulated ``transform_fn`` of each example's gradient with respect to
    ``argnums``, and per example ``fun``'s value, ``metrics_fn`` of the untransformed gradient and
    ``fun``'s auxiliary output. With ``transform_fn`` a clip to a norm and ``SUM``, this is DP-SGD's
    sum of clipped gradients. Keyword arguments of the call are passed whole to every example.

    Args:
        fun: the loss, of a batch (with ``keep_batch_dim=False``, of one example).
        has_aux: whether ``fun`` returns ``(value, aux)``.
        argnums: the position(s) of the arguments to differentiate with respect to.
        batch_argnums: the position(s) of the arguments with a batch axis 0.
        keep_batch_dim: call ``fun`` with a batch of one example (True) or with the example alone.
        microbatch_size: the examples whose gradients are computed together (None: all at once).
        accumulator: how the transformed gradients combine (``SUM``, ``MEAN``, ...), as in
            :func:`micro_vmap`.
        transform_fn: applied to each example's gradient before accumulation.
        metrics_fn: applied to each example's gradient; returned per example, so keep it small.
        num_real_microbatches: run only the first this many microbatches, as in :func:`microbatch`.
        accumulator_dtype: the dtype sums are carried in at least, as in :func:`microbatch`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import micro_grad
        >>> loss = lambda w, x: jnp.mean(x @ w)
        >>> grad, aux = micro_grad(loss, metrics_fn=jnp.linalg.norm)(jnp.ones(2), jnp.array([[3.0, 4.0], [0.0, 1.0]]))
        >>> grad, aux.values, aux.metrics
        (Array([3., 5.], dtype=float32), Array([7., 1.], dtype=float32), Array([5., 1.], dtype=float32))
    """
    batch, wrt = _ints("batch_argnums", batch_argnums), _ints("argnums", argnums)
    if not batch or not wrt:
        raise ValueError(f"argnums and batch_argnums must each name an argument, got {argnums!r}, {batch_argnums!r}")
    plan = _plan(microbatch_size, (accumulator, AccumulationType.CONCAT), num_real_microbatches, accumulator_dtype)
    value_and_grad = jax.value_and_grad(fun, argnums=argnums, has_aux=has_aux)

    def grads_of(*args: Any, **kwargs: Any) -> tuple[Any, Aux]:
        _positions("argnums", wrt, len(args))
        at = _positions("batch_argnums", batch, len(args))

        def one_example(*example: Any) -> tuple[Any, Aux]:
            call = list(example)
            for i in at if keep_batch_dim else ():
                call[i] = jax.tree.map(lambda x: jnp.expand_dims(x, 0), call[i])
            out, grads = value_and_grad(*call, **kwargs)
            value, aux = out if has_aux else (out, None)
            return transform_fn(grads), Aux(value, metrics_fn(grads), aux)

        in_axes = [0 if i in at else None for i in range(len(args))]
        return _run(jax.vmap(one_example, in_axes), args, {}, [(i, 0) for i in at], plan, per_example=True)

    return grads_of
