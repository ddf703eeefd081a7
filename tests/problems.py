"""The fixed convergence benchmark: three problems and a runner.

- ``quadratic``: f(x) = 1/2 sum_i lambda_i x_i^2, lambda log-spaced over [1, 100]
  (condition number 100), from x = 1; minimum 0.
- ``rosenbrock``: f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.5, 2); minimum 0 at (1, 1).
- ``digits``: softmax regression on scikit-learn's digits (64 -> 10, pixels / 16,
  full batch, zero initial weights); initial loss log(10).

``run`` drives any gradtx optimizer through ``lax.scan`` and passes ``value``,
``grad`` and ``value_fn`` as extra arguments, which every transform accepts and
only the ones that need them use.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

import gradtx


class Problem(NamedTuple):
    name: str
    loss: Callable
    init: Callable[[], dict]


def _quadratic():
    scales = jnp.logspace(0.0, 2.0, 10)
    return Problem(
        "quadratic",
        lambda p: 0.5 * jnp.sum(scales * p["x"] ** 2),
        lambda: {"x": jnp.ones(10)},
    )


def _rosenbrock():
    return Problem(
        "rosenbrock",
        lambda p: (1.0 - p["x"]) ** 2 + 100.0 * (p["y"] - p["x"] ** 2) ** 2,
        lambda: {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)},
    )


@functools.lru_cache(maxsize=1)
def _digits_data():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return jnp.asarray(images / 16.0, jnp.float32), jnp.asarray(labels)


def _digits():
    x, y = _digits_data()

    def loss(p):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0])

    return Problem("digits", loss, lambda: {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)})


PROBLEMS = {"quadratic": _quadratic, "rosenbrock": _rosenbrock, "digits": _digits}


def run(tx: gradtx.GradientTransformation, problem: str, steps: int) -> tuple[float, float, dict]:
    """Train ``steps`` steps; return (initial loss, final loss, final params)."""
    prob = PROBLEMS[problem]()
    params = prob.init()
    value_and_grad = jax.value_and_grad(prob.loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=prob.loss)
        return (gradtx.apply_updates(params, updates), state), value

    @jax.jit
    def train(params):
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    final = train(params)
    return float(prob.loss(params)), float(prob.loss(final)), final
