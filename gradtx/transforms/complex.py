r"""Complex parameters as pairs of real ones: a wrapper that lets any transform treat
:math:`z = x + iy` as the two real arrays :math:`x` and :math:`y`.

Most gradtx transforms accept complex leaves directly (Adam's :math:`|g|^2` is already the squared
modulus); this wrapper is for those that do not, or for asking a transform to treat the real and
imaginary parts as separate parameters (elementwise statistics of each, rather than of the modulus).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.base import GradientTransformation


class SplitRealAndImaginaryArrays(NamedTuple):
    """A complex leaf as its two real parts, in the tree the inner transform sees."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    """The inner transform's state, over the tree with every complex leaf split in two."""

    inner_state: Any


def _split(tree: Any) -> Any:
    def split(x):
        x = jnp.asarray(x)
        return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else x

    return None if tree is None else jax.tree.map(split, tree)


def _merge(inner: Any, like: Any) -> Any:
    def merge(x, pair):
        if not jnp.iscomplexobj(x):
            return pair
        return jax.lax.complex(pair.real, pair.imaginary).astype(jnp.result_type(x))

    return jax.tree.map(merge, like, inner)


def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformation:
    r"""Run ``inner`` on real numbers only: every complex leaf :math:`z = x + iy` is given to it as
    the pair of real leaves :math:`(x, y)`, and its output :math:`(u_x, u_y)` becomes :math:`u_x + i u_y`.

    Real leaves pass through as they are. The parameters, when given, are split the same way; the
    extra keyword arguments are passed to ``inner`` unchanged. The inner transform's hyperparameters
    are read and set by name through this wrapper.

    Args:
        inner: the transformation to run on the real tree.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import scale_by_adam
        >>> from gradtx.transforms.complex import split_real_and_imaginary
        >>> tx = split_real_and_imaginary(scale_by_adam())
        >>> z = jnp.array([3.0 - 0.5j])
        >>> u, _ = tx.update(z, tx.init(z))
        >>> complex(u[0].round(4))  # sign of each part, where Adam on |z| gives z / |z|
        (1-1j)
    """
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"split_real_and_imaginary needs a GradientTransformation, got {inner!r}")

    def init(params):
        return SplitRealAndImaginaryState(inner.init(_split(params)))

    def update(updates, state, params=None, **extra_args):
        out, inner_state = inner.update(_split(updates), state.inner_state, _split(params), **extra_args)
        return _merge(out, updates), SplitRealAndImaginaryState(inner_state)

    return GradientTransformation(init, update)


__all__ = ["SplitRealAndImaginaryArrays", "SplitRealAndImaginaryState", "split_real_and_imaginary"]
