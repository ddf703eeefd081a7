"""The checks every loss makes of its inputs before it computes anything, in one message format:
the loss, the argument and what was wrong with it (``"softmax_cross_entropy: labels has shape
(3, 4), logits has shape (3, 5); they must be equal"``). Losses never broadcast one argument
against another silently: shapes that must agree are compared here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_float(who: str, name: str, x: Any) -> jnp.ndarray:
    """``x`` as an array of a real floating dtype (integers and booleans become float32; a
    float16 or bfloat16 array keeps its dtype)."""
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        raise TypeError(f"{who}: {name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def as_integer(who: str, name: str, x: Any) -> jnp.ndarray:
    """``x`` as an array of an integer dtype; floats and booleans are refused."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == bool:
        raise TypeError(f"{who}: {name} must hold integer class indices, got dtype {x.dtype}")
    return x


def same_shape(who: str, name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Refuse ``a`` and ``b`` of different shapes, naming both."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{who}: {name_a} has shape {np.shape(a)}, {name_b} has shape {np.shape(b)}; they must be equal"
        )


def mask(who: str, where: Any, shape: tuple[int, ...], against: str) -> jnp.ndarray | None:
    """``where`` as a boolean array of ``shape`` (the shape of the argument named ``against``),
    or None when no mask is given."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != bool:
        raise TypeError(f"{who}: where must be a boolean mask, got dtype {where.dtype}")
    if where.shape != tuple(shape):
        raise ValueError(
            f"{who}: where has shape {where.shape}, {against} has shape {tuple(shape)}; they must be equal"
        )
    return where


def axis_of(who: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints, or None for all) as a sorted tuple of non-negative axes."""
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"{who}: axis {a!r} is out of range for an input of {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{who}: axis {axis!r} names an axis twice")
    return tuple(sorted(out))


def labels_in_range(who: str, labels: Any, classes: int, used: Any = None) -> None:
    """Refuse an integer label outside ``[0, classes)`` (among the ``used`` ones, when a mask of
    the real labels is given) when the values are known now; traced labels pass, and the losses
    give NaN for an out-of-range one."""
    if isinstance(labels, jax.core.Tracer) or isinstance(used, jax.core.Tracer):
        return
    values = np.asarray(labels)
    bad = (values < 0) | (values >= classes)
    if used is not None:
        bad &= np.asarray(used, bool)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{who}: labels{list(index)} is {int(values[index])}, outside the {classes} classes [0, {classes})"
        )
