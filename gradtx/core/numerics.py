"""Small numerical pieces shared by the transforms: step counters and bias correction."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

COUNT_DTYPE = jnp.int32


def zero_count() -> jax.Array:
    """A fresh step counter: an int32 zero."""
    return jnp.zeros((), COUNT_DTYPE)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest value of its dtype instead of wrapping (a float
    count is simply incremented).

    Args:
        count: an integer (or float) array.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import safe_increment
        >>> int(safe_increment(jnp.asarray(2**31 - 1, jnp.int32)))
        2147483647
    """
    count = jnp.asarray(count)
    if not jnp.issubdtype(count.dtype, jnp.integer):
        return count + 1
    limit = jnp.iinfo(count.dtype).max
    return jnp.where(count < limit, count + 1, limit).astype(count.dtype)


safe_int32_increment = safe_increment  # Optax's older name


def bias_correction(moment: jax.Array, decay: jax.Array, count: jax.Array) -> jax.Array:
    """Adam's bias correction: ``moment / (1 - decay**count)``.

    An exponential moving average started at zero underestimates its target by
    the factor ``1 - decay**count`` (Kingma & Ba, 2015, section 3).
    """
    return moment / (1 - decay ** count.astype(decay.dtype))


def scalar_loss(value, who: str) -> jax.Array:
    """The loss given as the extra argument ``value``, as an array; a ``ValueError`` naming ``who`` unless it is 0-d.

    A vector of per-example losses would otherwise broadcast against the
    updates, or grow the state, without an error.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import scalar_loss
        >>> scalar_loss(jnp.ones(4), "scale_by_polyak")
        Traceback (most recent call last):
        ...
        ValueError: scale_by_polyak needs the loss as one number (value=), got an array of shape (4,); average per-example losses first: value=jnp.mean(losses)
    """
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise ValueError(
            f"{who} needs the loss as one number (value=), got an array of shape {value.shape}; "
            "average per-example losses first: value=jnp.mean(losses)"
        )
    return value


def compute_dtype(*arrays: jax.Array):
    """The dtype arithmetic on these arrays takes place in: their promotion, and at least float32.

    Low-precision moments are stored in their own dtype but updated in float32:
    in bfloat16, ``b2 = 0.999`` rounds to 1 and Adam's bias correction becomes 0/0.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import compute_dtype
        >>> compute_dtype(jnp.ones(1, jnp.bfloat16)), compute_dtype(jnp.ones(1, jnp.float32), jnp.ones(1, jnp.bfloat16))
        (dtype('float32'), dtype('float32'))
    """
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def norm_dtype(x: jax.Array):
    """The dtype a norm of ``x`` is accumulated in: its real dtype, at least float32."""
    return jnp.promote_types(jnp.asarray(x).real.dtype, jnp.float32)


def stable_norm(x: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
    r"""The l2 norm of ``x`` over ``axis``, scaled by :math:`\max|x|` so that it neither overflows nor vanishes.

    ``sqrt(sum(x**2))`` is ``inf`` for float32 entries near 1e30 and 0 near 1e-30;
    dividing by the largest magnitude first keeps every square in [0, 1].

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import stable_norm
        >>> round(float(stable_norm(jnp.array([3e30, 4e30]))) / 1e30, 5)
        5.0
    """
    x = jnp.asarray(x)
    dtype = norm_dtype(x)
    top = jnp.max(jnp.abs(x).astype(dtype), axis=axis, keepdims=True, initial=0)
    unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
    # |x / unit| rather than |x| / unit: the two reductions then share no intermediate
    # array, and XLA streams x through each instead of writing |x| out and reading it twice
    scaled = jnp.abs(x.astype(jnp.promote_types(x.dtype, dtype)) / unit)
    norm = unit * jnp.sqrt(jnp.sum(jnp.square(scaled), axis=axis, keepdims=True))
    if keepdims:
        return norm
    return norm.reshape(()) if axis is None else jnp.squeeze(norm, axis)


def stable_rms(x: jax.Array) -> jax.Array:
    """The root mean square of all entries of ``x``, computed as :func:`stable_norm` / sqrt(size)."""
    return stable_norm(x) / jnp.sqrt(jnp.asarray(max(jnp.size(x), 1), norm_dtype(x)))


# ------------------------------------------------------------- complex and low-precision state


def real_dtype(dtype):
    """The real dtype of the same precision: float32 for complex64, float64 for complex128; others unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import real_dtype
        >>> real_dtype(jnp.complex64), real_dtype(jnp.bfloat16)
        (dtype('float32'), dtype(bfloat16))
    """
    dtype = jnp.dtype(dtype)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def abs_sq(x: jax.Array) -> jax.Array:
    r"""The squared magnitude :math:`|x|^2` of every element, as a real array.

    For a complex ``x`` this is :math:`\mathrm{Re}(x)^2 + \mathrm{Im}(x)^2`, where
    ``x**2`` would be complex; for a real ``x`` it is ``x * x``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import abs_sq
        >>> abs_sq(jnp.array([3 + 4j, -2j])).tolist()
        [25.0, 4.0]
    """
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        return jnp.square(x.real) + jnp.square(x.imag)
    return jnp.square(x)


def moment_dtype(x: jax.Array, dtype=None):
    """The dtype of a state leaf that averages or accumulates ``x`` itself (a momentum, a first moment).

    ``dtype`` (an optimizer's ``mu_dtype`` or ``accumulator_dtype``) when given,
    else ``x``'s own; a real ``dtype`` asked for a complex ``x`` gives the complex
    dtype of that precision (complex64 for float32 and below, complex128 for
    float64), so that no imaginary part is dropped.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import moment_dtype
        >>> moment_dtype(jnp.ones(1, jnp.complex64), jnp.bfloat16), moment_dtype(jnp.ones(1), jnp.bfloat16)
        (dtype('complex64'), dtype(bfloat16))
    """
    x_dtype = jnp.result_type(x)
    if dtype is None:
        return x_dtype
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(x_dtype, jnp.complexfloating) and not jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.result_type(dtype, jnp.complex64)
    return dtype


def magnitude_dtype(x: jax.Array, dtype=None):
    """The dtype of a state leaf that holds magnitudes of ``x`` (second moments, sums of squares, step sizes).

    Always real: ``dtype`` when given (its real counterpart if complex), else the
    real dtype of ``x``, except that float16 becomes float32. float16's smallest
    positive number, 6e-8, is the square of 2.4e-4: Adam's :math:`(1-\\beta_2) g^2`
    would be stored as 0 for every gradient below 8e-3, and the step
    :math:`m / \\sqrt{v}` would blow up. bfloat16 has float32's range and stays.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import magnitude_dtype
        >>> [str(magnitude_dtype(jnp.ones(1, d))) for d in (jnp.complex64, jnp.float16, jnp.bfloat16)]
        ['float32', 'float32', 'bfloat16']
    """
    if dtype is not None:
        return real_dtype(dtype)
    real = real_dtype(jnp.result_type(x))
    return jnp.dtype(jnp.float32) if real == jnp.float16 else real


# ----------------------------------------------------------------- Optax's safe norms


def safe_norm(x: jax.Array, min_norm: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> jax.Array:
    r"""The norm of ``x``, but at least ``min_norm``, with a gradient that is finite everywhere:
    :math:`\max(\lVert x \rVert, m)`, whose gradient is 0 where the norm is below :math:`m`
    (the plain norm's gradient is NaN at 0).

    Args:
        x: an array.
        min_norm: :math:`m`, the floor.
        ord: the norm's order, as for ``jnp.linalg.norm``; None is the 2-norm (Frobenius for a
            matrix).
        axis: the axis or axes to reduce, as for ``jnp.linalg.norm``; None for all.
        keepdims: keep the reduced axes with size 1.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.core.numerics import safe_norm
        >>> float(safe_norm(jnp.array([3.0, 4.0]), 1.0)), jax.grad(lambda x: safe_norm(x, 1.0))(jnp.zeros(2)).tolist()
        (5.0, [0.0, 0.0])
    """
    x = jnp.asarray(x)
    norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
    above = norm > min_norm
    safe_x = jnp.where(above, x, jnp.ones_like(x))  # a point where the norm is differentiable
    result = jnp.where(above, jnp.linalg.norm(safe_x, ord=ord, axis=axis, keepdims=True), min_norm).astype(norm.dtype)
    if keepdims:
        return result
    if axis is None:
        return result.reshape(())
    return jnp.squeeze(result, axis)


def safe_root_mean_squares(x: jax.Array, min_rms: Any) -> jax.Array:
    r"""The root mean square of all entries of ``x``, but at least ``min_rms``, with a finite
    gradient: :math:`\max(\sqrt{\operatorname{mean}(x^2)}, m)`.

    Args:
        x: an array.
        min_rms: :math:`m`, the floor.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.numerics import safe_root_mean_squares
        >>> round(float(safe_root_mean_squares(jnp.array([3.0, 4.0]), 1.0)), 4)
        3.5355
    """
    x = jnp.asarray(x)
    squares = jnp.mean(jnp.square(jnp.abs(x)))
    above = squares > jnp.square(min_rms)
    return jnp.where(above, jnp.sqrt(jnp.where(above, squares, 1.0)), min_rms).astype(squares.dtype)
