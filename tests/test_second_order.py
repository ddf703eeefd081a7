"""gradtx.second_order against Hessians and gradients written out in float64 NumPy.

Two models with closed forms: least squares with a matrix of weights and a bias (Hessian
J^T J, J the Jacobian of the outputs) and logistic regression (Hessian X^T diag(p (1 - p)) X);
and a small tanh network, whose Hessian is jax.hessian of the loss of the flattened
parameters. The parameters are flattened in ravel_pytree's order: dict keys sorted, each leaf
row-major.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gradtx import second_order

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 3))
Y_REG = RNG.normal(size=(6, 2))
Y_CLS = np.where(RNG.normal(size=6) > 0, 1.0, -1.0)


# ------------------------------------------------------------------ the models and their references


def least_squares(params, inputs, targets):
    return 0.5 * jnp.sum((inputs @ params["w"] + params["b"] - targets) ** 2)


LS_PARAMS = {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=2)}


def ls_jacobian(inputs):
    """d output[n, c] / d theta, theta = [b (2), w (3 x 2 row-major)], rows ordered (n, c)."""
    n, k = inputs.shape
    jac = np.zeros((n, 2, 2 + 2 * k))
    for c in range(2):
        jac[:, c, c] = 1.0
        for j in range(k):
            jac[:, c, 2 + 2 * j + c] = inputs[:, j]
    return jac.reshape(n * 2, -1)


def ls_hessian(params, inputs, targets):
    jac = ls_jacobian(inputs)
    return jac.T @ jac


def ls_gradient(params, inputs, targets):
    residual = inputs @ params["w"] + params["b"] - targets
    return ls_jacobian(inputs).T @ residual.ravel()


def logistic(params, inputs, targets):
    margins = targets * (inputs @ params["w"] + params["b"])
    return jnp.sum(jnp.logaddexp(0.0, -margins))


LOG_PARAMS = {"w": RNG.normal(size=3), "b": np.array(0.3)}


def _augmented(inputs):  # theta = [b, w]
    return np.concatenate([np.ones((len(inputs), 1)), inputs], axis=1)


def log_hessian(params, inputs, targets):
    a = _augmented(inputs)
    p = 1 / (1 + np.exp(-(a @ np.r_[params["b"], params["w"]])))
    return a.T @ (a * (p * (1 - p))[:, None])


def log_gradient(params, inputs, targets):
    a = _augmented(inputs)
    margins = targets * (a @ np.r_[params["b"], params["w"]])
    return a.T @ (-targets / (1 + np.exp(margins)))


def network(params, inputs, targets):
    hidden = jnp.tanh(inputs @ params["w1"])
    return jnp.mean((hidden @ params["w2"] - targets[:, 0]) ** 2) + 0.1 * jnp.sum(params["w1"] ** 4)


NET_PARAMS = {"w1": RNG.normal(size=(3, 4)), "w2": RNG.normal(size=4)}


def net_hessian(params, inputs, targets):
    # an independent route: the full Hessian of the flattened loss, in float64
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params))
        return np.asarray(jax.hessian(lambda t: network(unravel(t), inputs, targets))(flat))


CASES = {
    "least_squares": (least_squares, LS_PARAMS, Y_REG, ls_hessian),
    "logistic": (logistic, LOG_PARAMS, Y_CLS, log_hessian),
    "network": (network, NET_PARAMS, Y_REG, net_hessian),
}


def as32(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def flat_size(params):
    return sum(np.size(p) for p in jax.tree.leaves(params))


# ------------------------------------------------------------------ hvp


@pytest.mark.parametrize("case", list(CASES))
def test_hvp_is_the_hessian_times_v(case):
    loss, params, targets, hessian = CASES[case]
    d, full = flat_size(params), hessian(params, X, targets)
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=d)
        got = second_order.hvp(loss, jnp.asarray(v, jnp.float32), as32(params), jnp.asarray(X, jnp.float32), targets)
        # the product comes back shaped like the parameters; flattened, it is H v
        assert jax.tree.structure(got) == jax.tree.structure(params)
        assert all(g.shape == np.shape(p) for g, p in zip(jax.tree.leaves(got), jax.tree.leaves(params)))
        want = full @ v
        np.testing.assert_allclose(ravel_pytree(got)[0], want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("case", ["least_squares", "logistic"])
def test_the_closed_forms_are_jax_hessian_and_so_is_hvp_in_float64(case):
    # the NumPy closed forms agree with jax.hessian of the flattened loss (float64 throughout)
    loss, params, targets, hessian = CASES[case]
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params))
        full = np.asarray(jax.hessian(lambda t: loss(unravel(t), X, targets))(flat))
        v = np.linspace(-1, 1, flat.size)
        got = second_order.hvp(loss, jnp.asarray(v), unravel(flat), X, targets)
        np.testing.assert_allclose(ravel_pytree(got)[0], full @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(full, hessian(params, X, targets), rtol=1e-12, atol=1e-12)


def test_hvp_under_jit():
    loss, params, targets, hessian = CASES["network"]
    v = np.linspace(-1, 1, flat_size(params))
    hvp = jax.jit(partial(second_order.hvp, loss))
    got = hvp(jnp.asarray(v, jnp.float32), as32(params), jnp.asarray(X, jnp.float32), targets)
    np.testing.assert_allclose(ravel_pytree(got)[0], hessian(params, X, targets) @ v, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ hessian_diag


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_hessian_diag_is_the_diagonal(case, jit):
    loss, params, targets, hessian = CASES[case]
    fn = partial(second_order.hessian_diag, loss)
    got = (jax.jit(fn) if jit else fn)(as32(params), jnp.asarray(X, jnp.float32), targets)
    want = np.diag(hessian(params, X, targets))
    assert got.shape == (flat_size(params),)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


# ------------------------------------------------------------------ fisher_diag


@pytest.mark.parametrize(
    "loss,params,targets,gradient",
    [(least_squares, LS_PARAMS, Y_REG, ls_gradient), (logistic, LOG_PARAMS, Y_CLS, log_gradient)],
    ids=["least_squares", "logistic"],
)
def test_fisher_diag_is_the_squared_gradient(loss, params, targets, gradient):
    got = second_order.fisher_diag(loss, as32(params), jnp.asarray(X, jnp.float32), targets)
    want = gradient(params, X, targets) ** 2  # the whole batch's gradient, squared elementwise
    assert got.shape == (flat_size(params),)
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=1e-6 * want.max())


def test_fisher_diag_is_not_the_mean_of_per_example_squares():
    # the definition is the square of the batch gradient: two examples whose gradients cancel
    inputs, targets = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.array([[1.0, 0.0], [-1.0, 0.0]])
    params = {"w": np.zeros((3, 2)), "b": np.zeros(2)}
    got = second_order.fisher_diag(least_squares, as32(params), jnp.asarray(inputs, jnp.float32), targets)
    np.testing.assert_allclose(got, ls_gradient(params, inputs, targets) ** 2, atol=1e-7)
    assert float(jnp.max(got)) == 0.0


# ------------------------------------------------------------------ deprecation


@pytest.mark.parametrize("name", ["hvp", "hessian_diag", "fisher_diag"])
def test_each_function_warns_once_that_it_is_deprecated(name):
    loss, params, targets, _ = CASES["logistic"]
    args = (jnp.ones(flat_size(params)),) if name == "hvp" else ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(second_order, name)(loss, *args, as32(params), jnp.asarray(X, jnp.float32), targets)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1, [str(w.message) for w in deprecations]
    assert f"gradtx.second_order.{name} is deprecated" in str(deprecations[0].message)
    assert deprecations[0].filename == __file__  # attributed to the caller
