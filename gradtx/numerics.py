"""Small numerical pieces shared by the transforms: step counters and bias correction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

COUNT_DTYPE = jnp.int32


def zero_count() -> jax.Array:
    """A fresh step counter: an int32 zero."""
    return jnp.zeros((), COUNT_DTYPE)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest value of its dtype instead of wrapping.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.numerics import safe_increment
        >>> int(safe_increment(jnp.asarray(2**31 - 1, jnp.int32)))
        2147483647
    """
    limit = jnp.iinfo(count.dtype).max
    return jnp.where(count < limit, count + 1, limit).astype(count.dtype)


def bias_correction(moment: jax.Array, decay: jax.Array, count: jax.Array) -> jax.Array:
    """Adam's bias correction: ``moment / (1 - decay**count)``.

    An exponential moving average started at zero underestimates its target by
    the factor ``1 - decay**count`` (Kingma & Ba, 2015, section 3).
    """
    return moment / (1 - decay ** count.astype(decay.dtype))


def compute_dtype(*arrays: jax.Array):
    """The dtype arithmetic on these arrays takes place in: their promotion, and at least float32.

    Low-precision moments are stored in their own dtype but updated in float32:
    in bfloat16, ``b2 = 0.999`` rounds to 1 and Adam's bias correction becomes 0/0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.numerics import compute_dtype
        >>> compute_dtype(jnp.ones(1, jnp.bfloat16)), compute_dtype(jnp.ones(1, jnp.float32), jnp.ones(1, jnp.bfloat16))
        (dtype('float32'), dtype('float32'))
    """
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def norm_dtype(x: jax.Array):
    """The dtype a norm of ``x`` is accumulated in: its real dtype, at least float32."""
    return jnp.promote_types(jnp.asarray(x).real.dtype, jnp.float32)


def safe_norm(x: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
    r"""The l2 norm of ``x`` over ``axis``, scaled by :math:`\max|x|` so that it neither overflows nor vanishes.

    ``sqrt(sum(x**2))`` is ``inf`` for float32 entries near 1e30 and 0 near 1e-30;
    dividing by the largest magnitude first keeps every square in [0, 1].

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.numerics import safe_norm
        >>> round(float(safe_norm(jnp.array([3e30, 4e30]))) / 1e30, 5)
        5.0
    """
    x = jnp.abs(jnp.asarray(x)).astype(norm_dtype(x))
    top = jnp.max(x, axis=axis, keepdims=True, initial=0)
    unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
    norm = unit * jnp.sqrt(jnp.sum(jnp.square(x / unit), axis=axis, keepdims=True))
    if keepdims:
        return norm
    return norm.reshape(()) if axis is None else jnp.squeeze(norm, axis)


def safe_rms(x: jax.Array) -> jax.Array:
    """The root mean square of all entries of ``x``, computed as :func:`safe_norm` / sqrt(size)."""
    return safe_norm(x) / jnp.sqrt(jnp.asarray(max(jnp.size(x), 1), norm_dtype(x)))
