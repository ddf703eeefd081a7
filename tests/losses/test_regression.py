"""The regression, margin and cosine losses against float64 NumPy references: values, gradients
against finite differences, the zero-vector and large-error cases, jit, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import losses

from references import losses as RL

RNG = np.random.default_rng(1)


def _x(*shape, scale=2.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("squared_error", lambda e: e**2),
        ("l2_loss", lambda e: 0.5 * e**2),
        ("huber_loss", lambda e: RL.huber(e, 1.0)),
        ("log_cosh", RL.log_cosh),
    ],
)
def test_elementwise_regression_losses(name, reference):
    loss = getattr(losses, name)
    p, t = _x(4, 5), _x(4, 5)
    e = p.astype(np.float64) - t
    np.testing.assert_allclose(loss(p, t), reference(e), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss(p), reference(p.astype(np.float64)), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(loss(x, t)))(p)
    expected = RL.numeric_grad(lambda x: reference(x - t).sum(), p.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jax.jit(loss)(p, t), loss(p, t), rtol=1e-6)
    with pytest.raises(ValueError, match=f"{name}: targets has shape \\(5,\\), predictions has shape \\(4, 5\\)"):
        loss(p, t[0])


def test_huber_delta_and_large_errors():
    e = np.array([-10.0, -2.0, -0.3, 0.0, 0.3, 2.0, 10.0], np.float32)
    for delta in (0.5, 1.0, 3.0):
        np.testing.assert_allclose(losses.huber_loss(e, delta=delta), RL.huber(e, delta), rtol=1e-6)
    # the gradient is the error clipped to [-delta, delta]
    grad = jax.grad(lambda x: losses.huber_loss(x, delta=2.0).sum())(e)
    np.testing.assert_allclose(grad, np.clip(e, -2.0, 2.0), rtol=1e-6)
    with pytest.raises(ValueError, match="huber_loss: delta"):
        losses.huber_loss(e, delta=0.0)


def test_log_cosh_does_not_overflow():
    e = jnp.array([1e4, -1e4, 100.0], jnp.float32)
    np.testing.assert_allclose(losses.log_cosh(e), np.abs(np.asarray(e, np.float64)) - np.log(2), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: losses.log_cosh(x).sum())(e), np.tanh(np.asarray(e)), rtol=1e-6)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 10.0])
def test_cosine_similarity_and_distance(epsilon):
    p, t = _x(6, 4), _x(6, 4)
    expected = RL.cosine_similarity(p, t, epsilon)
    np.testing.assert_allclose(losses.cosine_similarity(p, t, epsilon=epsilon), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses.cosine_distance(p, t, epsilon=epsilon), 1 - expected, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(losses.cosine_similarity(x, t, epsilon=epsilon)))(p)
    numeric = RL.numeric_grad(lambda x: RL.cosine_similarity(x, t, epsilon).sum(), p.astype(np.float64))
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_cosine_axis_where_and_zero_vectors():
    p, t = _x(3, 5, 2), _x(3, 5, 2)
    np.testing.assert_allclose(losses.cosine_similarity(p, t, axis=1), RL.cosine_similarity(p, t, axis=1), rtol=1e-5)
    where = RNG.random((3, 5, 2)) < 0.6
    got = losses.cosine_similarity(p, t, axis=1, where=jnp.asarray(where))
    expected = RL.cosine_similarity(np.where(where, p, 0), np.where(where, t, 0), axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    zero = jnp.zeros((1, 3))
    value, grad = jax.value_and_grad(lambda x: losses.cosine_similarity(x, jnp.ones((1, 3))).sum())(zero)
    assert value == 0 and np.all(grad == 0)


@pytest.mark.parametrize("name", ["hinge_loss", "perceptron_loss"])
def test_binary_margin_losses(name):
    f = _x(20)
    y = np.where(RNG.random(20) < 0.5, -1.0, 1.0).astype(np.float32)
    margin = 1.0 if name == "hinge_loss" else 0.0
    np.testing.assert_allclose(getattr(losses, name)(f, y), np.maximum(0, margin - f * y.astype(np.float64)), rtol=1e-6)
    with pytest.raises(ValueError, match=f"{name}: targets has shape"):
        getattr(losses, name)(f, y[:3])


def test_multiclass_margin_losses():
    s = _x(7, 5)
    labels = RNG.integers(0, 5, 7)
    np.testing.assert_allclose(losses.multiclass_hinge_loss(s, labels), RL.multiclass_hinge(s, labels), rtol=1e-6)
    np.testing.assert_allclose(
        losses.multiclass_perceptron_loss(s, labels), RL.multiclass_perceptron(s, labels), rtol=1e-6, atol=1e-6
    )
    assert np.all(np.asarray(losses.multiclass_hinge_loss(s, labels)) >= 0)
    grad = jax.grad(lambda x: losses.multiclass_hinge_loss(x, labels).sum())(s)
    numeric = RL.numeric_grad(lambda x: RL.multiclass_hinge(x, labels).sum(), s.astype(np.float64), h=1e-4)
    np.testing.assert_allclose(grad, numeric, atol=1e-6)
    with pytest.raises(ValueError, match="multiclass_hinge_loss: labels has shape \\(6,\\)"):
        losses.multiclass_hinge_loss(s, labels[:6])
    with pytest.raises(TypeError, match="multiclass_perceptron_loss: labels must hold integer"):
        losses.multiclass_perceptron_loss(s, labels.astype(float))
