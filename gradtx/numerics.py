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
