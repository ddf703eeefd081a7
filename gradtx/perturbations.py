"""Perturbed functions and their Monte-Carlo gradients, as in ``optax.perturbations``.

:func:`make_perturbed_fun` turns a function that may be piecewise constant (an argmax, a
ranking, a solver's output) into a smooth one, its expectation under a random perturbation of
its input, with a gradient estimated from the same samples (Berthet et al., 2020,
:arxiv:`2002.08676`). :class:`Gumbel` and :class:`Normal` are the two noise distributions.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from gradtx.core.validation import check_positive

__all__ = ["Gumbel", "Normal", "make_perturbed_fun"]


class Noise(Protocol):
    """What a noise distribution offers :func:`make_perturbed_fun`."""

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = (), dtype: Any = float) -> jax.Array: ...

    def log_prob(self, inputs: jax.Array) -> jax.Array: ...


class Gumbel:
    r"""The standard Gumbel distribution, elementwise.

    .. math::
        \log p(z) = -z - e^{-z}, \qquad \mathbb{E}[Z] = \gamma \approx 0.5772

    (:math:`\gamma` is the Euler-Mascheroni constant). With it, the argmax of
    :math:`x + \sigma Z` is distributed as :math:`\operatorname{softmax}(x / \sigma)` (the
    Gumbel-max trick), so a perturbed argmax is a softmax in expectation.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.perturbations import Gumbel
        >>> Gumbel().sample(jax.random.key(0), (2, 3)).shape
        (2, 3)
        >>> round(float(Gumbel().log_prob(jnp.array(0.0))), 4)  # -0 - e^0
        -1.0
    """

    def __repr__(self) -> str:
        return "Gumbel()"

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = (), dtype: Any = float) -> jax.Array:
        """Draw standard Gumbel samples.

        Args:
            key: a ``jax.random`` key.
            sample_shape: the shape of the samples.
            dtype: their floating dtype.
        """
        return jax.random.gumbel(key, tuple(sample_shape), dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        r"""The log-density :math:`-z - e^{-z}` of each element of ``inputs`` (not summed).

        Args:
            inputs: the points :math:`z`.
        """
        return -inputs - jnp.exp(-inputs)


class Normal:
    r"""The standard normal distribution, elementwise.

    .. math::
        \log p(z) = -\tfrac{1}{2} z^2 + \text{const}, \qquad \mathbb{E}[Z] = 0

    ``log_prob`` leaves out the constant :math:`-\tfrac{1}{2} \log 2\pi` per element, as Optax
    does: the gradient estimate needs only :math:`\nabla_z \log p(z) = -z`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.perturbations import Normal
        >>> Normal().sample(jax.random.key(0), (4,)).shape
        (4,)
        >>> Normal().log_prob(jnp.array([0.0, 2.0])).tolist()
        [-0.0, -2.0]
    """

    def __repr__(self) -> str:
        return "Normal()"

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = (), dtype: Any = float) -> jax.Array:
        """Draw standard normal samples.

        Args:
            key: a ``jax.random`` key.
            sample_shape: the shape of the samples.
            dtype: their floating dtype.
        """
        return jax.random.normal(key, tuple(sample_shape), dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        r"""The log-density :math:`-z^2 / 2` of each element of ``inputs``, up to its constant.

        Args:
            inputs: the points :math:`z`.
        """
        return -0.5 * jnp.square(inputs)


_GUMBEL = Gumbel()  # the default noise, one instance (it holds no state)


def make_perturbed_fun(
    fun: Callable[[Any], Any],
    num_samples: int = 1000,
    sigma: float = 0.1,
    noise: Noise = _GUMBEL,
    use_baseline: bool = True,
) -> Callable[[jax.Array, Any], Any]:
    r"""The expectation of ``fun`` under a perturbation of its input, with a Monte-Carlo gradient.

    .. math::
        f_\sigma(x) = \mathbb{E}\big[f(x + \sigma Z)\big]
        \approx \frac{1}{N} \sum_{s=1}^{N} f(x + \sigma Z_s)

    .. math::
        J f_\sigma(x)\, \dot x = \frac{1}{\sigma}\,
        \mathbb{E}\Big[\big(f(x + \sigma Z) - b\big)\,
        \big\langle \nabla_z(-\log p)(Z), \dot x \big\rangle\Big]

    the perturbed-optimizer estimator of Berthet et al., 2020 (:arxiv:`2002.08676`), which
    needs no derivative of :math:`f`, so :math:`f` may be piecewise constant. The baseline
    :math:`b = f(x)` when ``use_baseline`` (it has expectation zero against the score and
    lowers the variance), else 0. The value and the derivative use the same :math:`N` samples
    :math:`Z_s \sim` ``noise``, drawn for every leaf of the input; the derivative is given as a
    custom JVP, so ``jax.grad``, ``jax.jacobian`` and ``jax.vjp`` all use it.

    Args:
        fun: :math:`f`, from a pytree of arrays to a pytree of arrays.
        num_samples: :math:`N`, the number of samples, a positive integer.
        sigma: :math:`\sigma > 0`, the scale of the perturbation.
        noise: the distribution of :math:`Z`, with ``sample(key, sample_shape, dtype)`` and an
            elementwise ``log_prob(inputs)`` (a :class:`Gumbel` or a :class:`Normal`).
        use_baseline: whether to subtract :math:`f(x)` in the derivative.

    Returns:
        ``perturbed(rng, inputs)``, the estimate of :math:`f_\sigma` at ``inputs`` from the
        samples drawn with the key ``rng``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import perturbations
        >>> argmax = lambda x: jax.nn.one_hot(jnp.argmax(x), x.shape[-1])
        >>> soft = perturbations.make_perturbed_fun(argmax, num_samples=100_000, sigma=1.0)
        >>> x = jnp.array([0.0, 1.0, 2.0])  # Gumbel noise: the expectation is softmax(x / sigma)
        >>> bool(jnp.allclose(soft(jax.random.key(0), x), jax.nn.softmax(x), atol=0.01))
        True
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    check_positive("sigma", sigma)

    def draw(rng: jax.Array, inputs: Any) -> Any:
        leaves, treedef = jax.tree.flatten(inputs)
        keys = jax.random.split(rng, len(leaves)) if leaves else []
        samples = [
            noise.sample(key, (num_samples, *jnp.shape(leaf)), jnp.result_type(leaf, float))
            for key, leaf in zip(keys, leaves)
        ]
        return jax.tree.unflatten(treedef, samples)

    def outputs(inputs: Any, z: Any) -> Any:
        perturb = lambda x, zs: x + jnp.asarray(sigma, zs.dtype) * zs
        return jax.vmap(lambda zs: fun(jax.tree.map(perturb, inputs, zs)))(z)

    @jax.custom_jvp
    def perturbed(rng: jax.Array, inputs: Any) -> Any:
        return jax.tree.map(lambda y: jnp.mean(y, axis=0), outputs(inputs, draw(rng, inputs)))

    @perturbed.defjvp
    def perturbed_jvp(primals, tangents):
        rng, inputs = primals
        _, d_inputs = tangents
        z = draw(rng, inputs)
        ys = outputs(inputs, z)
        value = jax.tree.map(lambda y: jnp.mean(y, axis=0), ys)
        if use_baseline:
            ys = jax.tree.map(lambda y, y0: y - y0, ys, fun(inputs))

        def score(zs: jax.Array) -> jax.Array:  # the gradient of -log p, sample by sample
            return jax.vmap(jax.grad(lambda t: -jnp.sum(noise.log_prob(t))))(zs)

        def inner(zs: jax.Array, dx: jax.Array) -> jax.Array:
            return jnp.sum((score(zs) * dx).reshape(num_samples, -1), axis=1)

        weights = sum(jax.tree.leaves(jax.tree.map(inner, z, d_inputs)), jnp.zeros((num_samples,)))

        def tangent(y: jax.Array) -> jax.Array:
            w = weights.astype(jnp.result_type(y, float)).reshape((num_samples,) + (1,) * (y.ndim - 1))
            return jnp.mean(y * w, axis=0) / sigma

        return value, jax.tree.map(tangent, ys)

    return perturbed
