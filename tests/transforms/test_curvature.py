"""Hutchinson's estimator of the Hessian's diagonal (gradtx.transforms.curvature).

Checked on a quadratic form with off-diagonal terms, by its mean over many seeds, and on a
separable function, where Rademacher vectors make it exact.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.transforms.curvature import HutchinsonState, hutchinson_estimator_diag_hessian

# a quadratic form with off-diagonal terms, over two leaves: x = (a, vec(b)), f = x^T Q x / 2
Q = np.array(
    [
        [4.0, 1.0, 0.0, 0.5, 0.0, -1.0, 0.0],
        [1.0, 2.0, 0.3, 0.0, 0.0, 0.0, 0.2],
        [0.0, 0.3, 1.0, 0.0, 0.7, 0.0, 0.0],
        [0.5, 0.0, 0.0, 3.0, 0.0, 0.4, 0.0],
        [0.0, 0.0, 0.7, 0.0, 5.0, 0.0, 1.5],
        [-1.0, 0.0, 0.0, 0.4, 0.0, 2.5, 0.0],
        [0.0, 0.2, 0.0, 0.0, 1.5, 0.0, 6.0],
    ]
)


def quadratic_form(p):
    x = jnp.concatenate([p["a"], p["b"].reshape(-1)])
    return 0.5 * x @ jnp.asarray(Q, x.dtype) @ x


@pytest.mark.parametrize("distribution", ["rademacher", "normal"])
def test_hutchinson_mean_approaches_the_diagonal(distribution):
    n = 4000
    est = hutchinson_estimator_diag_hessian(distribution=distribution)
    params = {"a": jnp.array([0.3, -1.0, 2.0]), "b": jnp.ones((2, 2))}
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    draw = jax.jit(jax.vmap(lambda k: est.update(params, HutchinsonState(k), params, obj_fn=quadratic_form)[0]))
    samples = draw(keys)
    mean = np.concatenate([np.mean(samples["a"], 0), np.mean(samples["b"], 0).reshape(-1)])
    off = np.sum(Q**2, 1) - np.diag(Q) ** 2  # the variance of one sample, per coordinate
    variance = off if distribution == "rademacher" else off + 2 * np.diag(Q) ** 2
    # within 5 standard errors of the true diagonal (a false alarm has probability ~6e-7 each)
    np.testing.assert_array_less(np.abs(mean - np.diag(Q)), 5 * np.sqrt(variance / n))
    assert np.max(np.abs(mean - np.diag(Q))) > 0  # an estimate, not the diagonal itself
    if distribution == "rademacher":
        np.testing.assert_allclose(np.var(samples["a"], 0), off[:3], rtol=0.15)


def test_hutchinson_is_exact_for_a_diagonal_hessian_and_advances_its_key():
    est = hutchinson_estimator_diag_hessian(random_seed=jax.random.key(3))
    w = {"x": jnp.array([1.0, -2.0, 0.5]), "y": jnp.array(2.0)}
    f = lambda p: jnp.sum(jnp.array([1.0, 4.0, 9.0]) * p["x"] ** 2) + p["y"] ** 3  # noqa: E731
    state = est.init(w)
    assert state.key.dtype == jnp.uint32
    for _ in range(3):
        h, new = est.update(w, state, w, obj_fn=f)
        np.testing.assert_allclose(h["x"], [2.0, 8.0, 18.0])
        np.testing.assert_allclose(h["y"], 12.0)
        assert not np.array_equal(new.key, state.key)
        state = new
    # the same seed draws the same vectors; another seed others
    p = {"a": jnp.array([0.3, -1.0, 2.0]), "b": jnp.ones((2, 2))}

    def first(seed):
        e = hutchinson_estimator_diag_hessian(seed)
        h = e.update(p, e.init(p), p, obj_fn=quadratic_form)[0]
        return np.concatenate([h["a"], h["b"].reshape(-1)])

    np.testing.assert_array_equal(first(1), first(1))
    assert any(not np.array_equal(first(1), first(seed)) for seed in (2, 3, 4))
    np.testing.assert_array_equal(first(None), first(jax.random.PRNGKey(0)))


def test_hutchinson_errors():
    est = hutchinson_estimator_diag_hessian()
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="needs the loss function.*obj_fn=loss"):
        est.update(w, est.init(w), w)
    with pytest.raises(ValueError, match="needs the parameters"):
        est.update(w, est.init(w), obj_fn=jnp.sum)
    with pytest.raises(TypeError, match="obj_fn must be a function"):
        est.update(w, est.init(w), w, obj_fn=3.0)
    with pytest.raises(TypeError, match="random_seed must be a PRNG key"):
        hutchinson_estimator_diag_hessian("seed")
    with pytest.raises(ValueError, match="distribution must be one of"):
        hutchinson_estimator_diag_hessian(distribution="uniform")
    with pytest.raises(TypeError, match="'z' is complex64"):
        est.init({"z": jnp.ones(1, jnp.complex64)})
