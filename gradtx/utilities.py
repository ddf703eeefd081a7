"""Two small helpers that Optax keeps at its top level: a gradient scaler for the backward pass
(``scale_gradient``) and the diagonal Gaussian of evolution strategies (``multi_normal``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def scale_gradient(inputs: Any, scale: Any) -> Any:
    r"""The identity on ``inputs`` whose gradient is multiplied by ``scale``: :math:`f(x) = x`,
    :math:`\partial L / \partial x \leftarrow s\, \partial L / \partial x` (0 stops the gradient,
    -1 reverses it, as a gradient-reversal layer does).

    Args:
        inputs: a pytree of arrays.
        scale: :math:`s`, a number or 0-d array.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> float(jax.grad(lambda x: 3.0 * gradtx.scale_gradient(x, 0.5))(1.0))
        1.5
    """

    @jax.custom_vjp
    def identity(x):
        return x

    def forward(x):
        return x, None

    def backward(_, cotangent):
        return (jax.tree.map(lambda c: c * jnp.asarray(scale, jnp.result_type(c)), cotangent),)

    identity.defvjp(forward, backward)
    return identity(inputs)


class MultiNormalDiagFromLogScale:
    """A Gaussian with diagonal covariance, given by its mean and the log of its standard deviations.

    Args:
        loc: the mean :math:`\\mu`.
        log_scale: :math:`\\log \\sigma`, shaped like ``loc``.
    """

    def __init__(self, loc: jax.Array, log_scale: jax.Array):
        loc, log_scale = jnp.asarray(loc), jnp.asarray(log_scale)
        if loc.shape != log_scale.shape:
            raise ValueError(
                f"multi_normal: loc has shape {loc.shape}, log_scale has shape {log_scale.shape}; they must be equal"
            )
        self._loc, self.log_scale = loc, log_scale

    @property
    def params(self) -> list[jax.Array]:
        """``[loc, log_scale]``."""
        return [self._loc, self.log_scale]

    def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
        """``shape`` independent draws, each shaped like ``loc``: :math:`\\mu + \\sigma z`, :math:`z \\sim N(0, I)`.

        Args:
            shape: the leading shape of the draws.
            key: a PRNG key.
        """
        z = jax.random.normal(key, tuple(shape) + self._loc.shape, self._loc.dtype)
        return self._loc + jnp.exp(self.log_scale) * z

    def log_prob(self, x: jax.Array) -> jax.Array:
        r"""The log-density, summed over ``loc``'s axes:
        :math:`\sum_i -\tfrac12 ((x_i - \mu_i)/\sigma_i)^2 - \log \sigma_i - \tfrac12 \log 2\pi`.

        Args:
            x: points shaped like ``loc``, with any leading axes.
        """
        z = (jnp.asarray(x) - self._loc) / jnp.exp(self.log_scale)
        terms = -0.5 * jnp.square(z) - self.log_scale - 0.5 * np.log(2 * np.pi)
        return jnp.sum(terms, axis=tuple(range(-self._loc.ndim, 0)))


def multi_normal(loc: jax.Array, log_scale: jax.Array) -> MultiNormalDiagFromLogScale:
    r"""The diagonal Gaussian :math:`N(\mu, \operatorname{diag}(\sigma^2))` with
    :math:`\log \sigma` = ``log_scale``, as evolution strategies sample their perturbations.

    Args:
        loc: the mean :math:`\mu`.
        log_scale: :math:`\log \sigma`, shaped like ``loc``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> dist = gradtx.multi_normal(jnp.zeros(2), jnp.zeros(2))
        >>> dist.sample((5,), jax.random.key(0)).shape
        (5, 2)
        >>> round(float(dist.log_prob(jnp.zeros(2))), 4)  # -log(2 pi)
        -1.8379
    """
    return MultiNormalDiagFromLogScale(loc, log_scale)
