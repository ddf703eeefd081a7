r"""Curvature estimators: blocks that read the loss ``obj_fn`` given to ``update`` and return an
estimate of its second derivatives at the parameters, for the second-order optimizers
(Sophia, AdaHessian).

An estimator is a transform whose ``update(updates, state, params, obj_fn=loss)`` ignores the
``updates`` and returns a tree shaped like the parameters.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation
from gradtx.core.kit import needs_params
from gradtx.core.tree import check_real
from gradtx.core.validation import check_one_of

__all__ = ["HutchinsonState", "hutchinson_estimator_diag_hessian", "needs_obj_fn"]


class HutchinsonState(NamedTuple):
    """Hutchinson's estimator: the PRNG key of the next draw (raw ``uint32`` data)."""

    key: jax.Array


_SAMPLERS: dict[str, Callable[..., jax.Array]] = {
    "rademacher": jax.random.rademacher,
    "normal": jax.random.normal,
}


def needs_obj_fn(who: str, obj_fn: Any) -> None:
    """Raise unless ``obj_fn``, the loss given to ``update``, is present (``ValueError``) and callable (``TypeError``).

    Args:
        who: the transform's name, for the message.
        obj_fn: what ``update`` was given as ``obj_fn`` (``None`` when nothing).

    Example:
        >>> from gradtx.transforms.curvature import needs_obj_fn
        >>> needs_obj_fn("adahessian", None)
        Traceback (most recent call last):
        ...
        ValueError: adahessian needs the loss function: call update(updates, state, params, obj_fn=loss)
    """
    if obj_fn is None:
        raise ValueError(f"{who} needs the loss function: call update(updates, state, params, obj_fn=loss)")
    if not callable(obj_fn):
        raise TypeError(f"{who}: obj_fn must be a function of the parameters returning the loss, got {obj_fn!r}")


def _key_functions(random_seed: Any) -> tuple[Callable[[], jax.Array], Callable[[jax.Array], jax.Array], Any]:
    """From the seed: the raw key data for the state (made when called), and the maps data -> key -> data."""
    if random_seed is None or (
        isinstance(random_seed, (numbers.Integral, np.integer)) and not isinstance(random_seed, bool)
    ):
        seed = 0 if random_seed is None else int(random_seed)
        return (lambda: jax.random.PRNGKey(seed)), (lambda data: data), (lambda key: key)
    if not isinstance(random_seed, (jax.Array, np.ndarray)):
        raise TypeError(f"random_seed must be a PRNG key, an int or None, got {random_seed!r}")
    if jnp.issubdtype(random_seed.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(random_seed)
        data = jax.random.key_data(random_seed)
        return (lambda: data), (lambda d: jax.random.wrap_key_data(d, impl=impl)), jax.random.key_data
    return (lambda: jnp.asarray(random_seed)), (lambda data: data), (lambda key: key)


def hutchinson_estimator_diag_hessian(
    random_seed: Any = None,
    *,
    distribution: str = "rademacher",
) -> GradientTransformation:
    r"""Hutchinson's estimator of the Hessian's diagonal (Sophia-H, :arxiv:`2305.14342`, section 2.3).

    .. math::
        \hat h = u \odot (\nabla^2 f(\theta)\, u), \qquad
        \mathbb E[u u^\top] = I \;\Rightarrow\; \mathbb E[\hat h] = \operatorname{diag} \nabla^2 f(\theta)

    with :math:`Hu` one forward-over-reverse product (``jax.jvp`` of ``jax.grad(obj_fn)`` at the
    parameters). ``update(updates, state, params, obj_fn=f)`` returns :math:`\hat h` (the
    ``updates`` are not read). Each update splits the key: the first half is the next state's,
    the second draws :math:`u`, one key per leaf. Rademacher :math:`u` (as Optax) makes the estimate
    exact for a diagonal Hessian; the paper draws Gaussian :math:`u` (``distribution="normal"``).

    Args:
        random_seed: the PRNG key: a ``jax.random.key``, a raw ``PRNGKey``, an int seed, or
            ``None`` for ``PRNGKey(0)``.
        distribution: the law of :math:`u`: ``"rademacher"`` (entries :math:`\pm 1`) or
            ``"normal"`` (standard Gaussian entries).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.curvature import hutchinson_estimator_diag_hessian
        >>> f = lambda w: jnp.sum(jnp.array([1.0, 4.0]) * w**2)  # Hessian diag(2, 8)
        >>> est, w = hutchinson_estimator_diag_hessian(), jnp.ones(2)
        >>> h, state = est.update(w, est.init(w), w, obj_fn=f)
        >>> h.tolist()
        [2.0, 8.0]
    """
    check_one_of("distribution", distribution, tuple(_SAMPLERS))
    sampler = _SAMPLERS[distribution]
    first_key, as_key, as_data = _key_functions(random_seed)

    def init(params):
        check_real(
            "hutchinson_estimator_diag_hessian", params, "it estimates the Hessian of a real function of real numbers"
        )
        return HutchinsonState(first_key())

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        needs_params("hutchinson_estimator_diag_hessian", params, updates, call="updates")
        needs_obj_fn("hutchinson_estimator_diag_hessian", obj_fn)
        next_key, draw_key = jax.random.split(as_key(state.key))
        u = _tree.random_like(draw_key, params, sampler)
        _, hu = jax.jvp(jax.grad(obj_fn), (params,), (u,))
        estimate = jax.tree.map(lambda v, w, p: (v * w).astype(jnp.result_type(p)), u, hu, params)
        return estimate, HutchinsonState(as_data(next_key))

    return GradientTransformation(init, update)
