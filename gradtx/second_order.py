"""Second-order quantities of a loss at the parameters, as in ``optax.second_order``.

A Hessian-vector product, the diagonal of the Hessian and the diagonal of the Fisher
information, each of ``loss(params, inputs, targets) -> scalar`` at ``params``. The parameters
are a pytree; they are flattened, as ``jax.flatten_util.ravel_pytree`` orders them, into one
vector :math:`\\theta \\in \\mathbb{R}^d`, and the diagonals are returned as vectors of that
length.

Optax 0.2.8 marks these three functions as deprecated (they warn when called) and names no
replacement; gradtx mirrors them, warning the same way, so that moving a project over is a
change of import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = ["fisher_diag", "hessian_diag", "hvp"]

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def _deprecated(name: str) -> None:
    warnings.warn(
        f"gradtx.second_order.{name} is deprecated, as optax.second_order.{name} is in Optax 0.2.8, "
        "and will be removed with it",
        DeprecationWarning,
        stacklevel=3,
    )


def _hvp(loss: LossFn, v: jax.Array, params: Any, inputs: jax.Array, targets: jax.Array) -> Any:
    _, unravel = ravel_pytree(params)
    grad = jax.grad(lambda p: loss(p, inputs, targets))
    return jax.jvp(grad, (params,), (unravel(v),))[1]


def hvp(loss: LossFn, v: jax.Array, params: Any, inputs: jax.Array, targets: jax.Array) -> Any:
    r"""The Hessian of the loss at the parameters times a vector, :math:`\nabla^2_\theta L(\theta)\, v`.

    .. math::
        H v = \frac{\partial}{\partial \epsilon} \nabla_\theta L(\theta + \epsilon v) \Big|_{\epsilon=0}

    computed as the forward-mode derivative (``jax.jvp``) of the reverse-mode gradient, at the
    cost of about two gradients and without forming :math:`H` (Pearlmutter, 1994,
    :doi:`10.1162/neco.1994.6.1.147`). ``v`` is a flat vector in the order of
    ``ravel_pytree(params)``; the product comes back as a pytree shaped like ``params`` (as
    Optax returns it: ``ravel_pytree`` of it is the flat :math:`Hv`). Deprecated, as in Optax.

    Args:
        loss: the loss, ``loss(params, inputs, targets) -> scalar``.
        v: the vector, flat, of the length of the flattened parameters.
        params: the parameters :math:`\theta`, a pytree.
        inputs: the inputs passed to ``loss``.
        targets: the targets passed to ``loss``.

    Example:
        >>> import warnings, jax.numpy as jnp
        >>> from gradtx import second_order
        >>> loss = lambda p, x, y: jnp.sum((x @ p["w"] - y) ** 2)  # H = 2 x^T x
        >>> x, y = jnp.array([[1.0, 2.0], [0.0, 1.0]]), jnp.zeros(2)
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     second_order.hvp(loss, jnp.array([1.0, 0.0]), {"w": jnp.zeros(2)}, x, y)["w"].tolist()
        [2.0, 4.0]
    """
    _deprecated("hvp")
    return _hvp(loss, v, params, inputs, targets)


def hessian_diag(loss: LossFn, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""The diagonal of the Hessian of the loss at the flattened parameters.

    .. math::
        \operatorname{diag}(H)_k = e_k^\top \nabla^2_\theta L(\theta)\, e_k, \qquad k = 1, \dots, d

    one exact Hessian-vector product per coordinate (see :func:`hvp`), taken one after the
    other, so the memory is that of a few gradients and the time that of :math:`2d` gradients:
    meant for small models. Deprecated, as in Optax.

    Args:
        loss: the loss, ``loss(params, inputs, targets) -> scalar``.
        params: the parameters :math:`\theta`, a pytree.
        inputs: the inputs passed to ``loss``.
        targets: the targets passed to ``loss``.

    Returns:
        A flat vector of length :math:`d`, in the order of ``ravel_pytree(params)``.

    Example:
        >>> import warnings, jax.numpy as jnp
        >>> from gradtx import second_order
        >>> loss = lambda p, x, y: jnp.sum((x @ p["w"] - y) ** 2)  # H = 2 x^T x
        >>> x, y = jnp.array([[1.0, 2.0], [0.0, 1.0]]), jnp.zeros(2)
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     second_order.hessian_diag(loss, {"w": jnp.zeros(2)}, x, y).tolist()
        [2.0, 10.0]
    """
    _deprecated("hessian_diag")
    flat, _ = ravel_pytree(params)

    def entry(k: jax.Array) -> jax.Array:
        basis = jnp.zeros_like(flat).at[k].set(1)
        return ravel_pytree(_hvp(loss, basis, params, inputs, targets))[0][k]

    return jax.lax.map(entry, jnp.arange(flat.size))


def fisher_diag(negative_log_likelihood: LossFn, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""The diagonal of the Fisher information, estimated by the squared gradient of the
    negative log-likelihood of the whole batch.

    .. math::
        \operatorname{diag}(F) \approx \big(\nabla_\theta\, \ell(\theta; x, y)\big)^{2}

    elementwise, with :math:`\ell` the negative log-likelihood of ``inputs`` and ``targets``
    together and :math:`\theta` the flattened parameters: the square of one gradient, as Optax
    defines it, not the mean of per-example squared gradients (for that, ``jax.vmap`` this over
    single examples and average). Deprecated, as in Optax.

    Args:
        negative_log_likelihood: :math:`\ell`, ``negative_log_likelihood(params, inputs, targets) -> scalar``.
        params: the parameters :math:`\theta`, a pytree.
        inputs: the inputs passed to ``negative_log_likelihood``.
        targets: the targets passed to ``negative_log_likelihood``.

    Returns:
        A flat vector of length :math:`d`, in the order of ``ravel_pytree(params)``.

    Example:
        >>> import warnings, jax.numpy as jnp
        >>> from gradtx import second_order
        >>> nll = lambda p, x, y: jnp.sum((x @ p["w"] - y) ** 2) / 2  # gradient x^T (x w - y)
        >>> x, y = jnp.array([[1.0, 2.0], [0.0, 1.0]]), jnp.array([1.0, 1.0])
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     second_order.fisher_diag(nll, {"w": jnp.zeros(2)}, x, y).tolist()
        [1.0, 9.0]
    """
    _deprecated("fisher_diag")
    grads = jax.grad(negative_log_likelihood)(params, inputs, targets)
    return jnp.square(ravel_pytree(grads)[0])
