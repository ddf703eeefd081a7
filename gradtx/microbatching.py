"""Microbatching: a function over a large batch computed as the mean (or sum) over slices of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def microbatch(
    fun: Callable[..., Any],
    num_microbatches: int,
    *,
    batch_argnums: int | Sequence[int] = 1,
    reduce: str = "mean",
    accumulator_dtype: Any = None,
) -> Callable[..., Any]:
    """Evaluate ``fun`` on ``num_microbatches`` slices of the batch, one at a time, and combine.

    The arguments at ``batch_argnums`` are pytrees of arrays whose leading axis is
    the batch; each is cut into equal slices, ``fun`` runs on each slice inside a
    ``lax.scan`` (so only one slice's activations live at a time), and the outputs
    (any pytree, e.g. ``(loss, grads)`` from ``jax.value_and_grad``) are summed, or
    averaged with ``reduce="mean"``. For a loss that is a mean over examples, the
    mean over equal microbatches equals the full-batch value and gradient.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w, batch: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
        >>> batch = {"x": jnp.arange(16.0).reshape(8, 2), "y": jnp.ones(8)}
        >>> grad_fn = gradtx.microbatch(jax.value_and_grad(loss), num_microbatches=4)
        >>> (value, grad), (full_value, full_grad) = grad_fn(jnp.ones(2), batch), jax.value_and_grad(loss)(jnp.ones(2), batch)
        >>> bool(jnp.allclose(value, full_value)), bool(jnp.allclose(grad, full_grad))
        (True, True)
    """
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ValueError(f"num_microbatches must be a positive integer, got {num_microbatches!r}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    argnums = (batch_argnums,) if isinstance(batch_argnums, int) else tuple(batch_argnums)

    def split(x, where):
        size = jnp.shape(x)[0] if jnp.ndim(x) else None
        if size is None or size % num_microbatches:
            raise ValueError(
                f"the batch argument {where} has leading size {size}, which {num_microbatches} microbatches do not divide"
            )
        return jnp.reshape(x, (num_microbatches, size // num_microbatches) + jnp.shape(x)[1:])

    def wrapped(*args, **kwargs):
        for i in argnums:
            if i >= len(args):
                raise ValueError(f"batch_argnums names argument {i}, but only {len(args)} were given")
        sliced = {i: jax.tree.map(lambda x, i=i: split(x, f"#{i}"), args[i]) for i in argnums}

        def call(index):
            call_args = list(args)
            for i in argnums:
                call_args[i] = jax.tree.map(lambda x: x[index], sliced[i])
            return fun(*call_args, **kwargs)

        first = jax.eval_shape(call, 0)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, accumulator_dtype or s.dtype), first)

        def body(total, index):
            out = call(index)
            return jax.tree.map(lambda t, o: (t + o).astype(t.dtype), total, out), None

        total, _ = jax.lax.scan(body, zeros, jnp.arange(num_microbatches))
        if reduce == "mean":
            total = jax.tree.map(lambda t: t / num_microbatches, total)
        return jax.tree.map(lambda t, s: t.astype(s.dtype), total, first)

    return wrapped
