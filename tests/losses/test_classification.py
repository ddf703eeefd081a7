"""The cross-entropy losses against float64 NumPy references (references/losses.py): values on
random batches, gradients against finite differences of the reference, logits of +-1e4 in float32,
``where`` masks, integer labels over one or several class axes, and the errors of bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import losses

from references import losses as RL

RNG = np.random.default_rng(0)


def _logits(*shape, scale=3.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _distribution(*shape):
    p = RNG.random(shape) ** 3
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_top_level_aliases_are_the_losses():
    for name in ["softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels", "sigmoid_binary_cross_entropy"]:
        assert getattr(gradtx, name) is getattr(losses, name)


@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 3, 7)])
def test_softmax_cross_entropy_matches_reference(shape):
    z, y = _logits(*shape), _distribution(*shape)
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, y), RL.softmax_cross_entropy(z, y), rtol=1e-5, atol=1e-6)


def test_softmax_cross_entropy_other_axes():
    z, y = _logits(3, 4, 5), _distribution(3, 4, 5).transpose(0, 2, 1).copy()
    z = z.transpose(0, 2, 1).copy()
    expected = RL.softmax_cross_entropy(z, y, axis=1)
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, y, axis=1), expected, rtol=1e-5)
    flat = RL.softmax_cross_entropy(z.reshape(3, -1), (y / y.sum((1, 2), keepdims=True)).reshape(3, -1))
    yy = y / y.sum((1, 2), keepdims=True)
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, yy, axis=(1, 2)), flat, rtol=1e-5)


def test_softmax_cross_entropy_gradient_matches_finite_differences():
    z, y = _logits(3, 5).astype(np.float64), _distribution(3, 5)
    grad = jax.grad(lambda logits: jnp.sum(losses.softmax_cross_entropy(logits, y)))(z.astype(np.float32))
    expected = RL.numeric_grad(lambda logits: RL.softmax_cross_entropy(logits, y).sum(), z)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_softmax_cross_entropy_where_leaves_classes_out():
    z, y = _logits(4, 6), _distribution(4, 6)
    where = RNG.random((4, 6)) < 0.7
    where[:, 0] = True
    got = losses.softmax_cross_entropy(z, y, where=jnp.asarray(where))
    np.testing.assert_allclose(got, RL.softmax_cross_entropy(z, y, where=where), rtol=1e-5, atol=1e-6)
    # the masked logits do not matter at all, whatever their value
    wild = np.where(where, z, 1e4).astype(np.float32)
    np.testing.assert_allclose(losses.softmax_cross_entropy(wild, y, where=jnp.asarray(where)), got, rtol=1e-6)
    grad = jax.grad(lambda logits: jnp.sum(losses.softmax_cross_entropy(logits, y, where=jnp.asarray(where))))(z)
    assert np.all(np.asarray(grad)[~where] == 0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_extreme_logits_are_finite(dtype):
    z = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    y = jnp.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype)
    value, grad = jax.value_and_grad(lambda logits: jnp.sum(losses.softmax_cross_entropy(logits, y)))(z)
    np.testing.assert_allclose(np.asarray(value, np.float64), RL.softmax_cross_entropy(z, y).sum(), rtol=1e-2)
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))
    labels = jnp.array([1, 0])
    value, grad = jax.value_and_grad(
        lambda logits: jnp.sum(losses.softmax_cross_entropy_with_integer_labels(logits, labels))
    )(z)
    np.testing.assert_allclose(np.asarray(value, np.float64), RL.integer_cross_entropy(z, labels).sum(), rtol=1e-2)
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_minus_infinity_logits():
    z = jnp.array([[-jnp.inf, 1.0, 2.0]])
    y = jnp.array([[0.0, 0.5, 0.5]])
    expected = RL.softmax_cross_entropy(np.array([[1.0, 2.0]]), np.array([[0.5, 0.5]]))
    for loss in (losses.softmax_cross_entropy, losses.safe_softmax_cross_entropy):
        np.testing.assert_allclose(loss(z, y), expected, rtol=1e-6)
        grad = jax.grad(lambda logits, loss=loss: jnp.sum(loss(logits, y)))(z)
        assert np.all(np.isfinite(grad)) and grad[0, 0] == 0
        # mass on an impossible class: the loss is infinite, not NaN and not ignored
        assert np.isposinf(loss(z, jnp.array([[0.5, 0.5, 0.0]]))[0])


@pytest.mark.parametrize("shape", [(7,), (4, 9), (2, 3, 5)])
def test_integer_labels_match_reference(shape):
    z = _logits(*shape)
    labels = RNG.integers(0, shape[-1], shape[:-1])
    got = losses.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(labels))
    np.testing.assert_allclose(got, RL.integer_cross_entropy(z, labels), rtol=1e-5, atol=1e-6)
    one_hot = np.eye(shape[-1])[labels]
    np.testing.assert_allclose(got, RL.softmax_cross_entropy(z, one_hot), rtol=1e-5, atol=1e-6)


def test_integer_labels_other_axes():
    z = _logits(3, 4, 5)
    labels = RNG.integers(0, 4, (3, 5))
    got = losses.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(labels), axis=1)
    np.testing.assert_allclose(got, RL.integer_cross_entropy(z.transpose(0, 2, 1), labels), rtol=1e-5)
    flat_labels = RNG.integers(0, 20, (3,))
    got = losses.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(flat_labels), axis=(1, 2))
    np.testing.assert_allclose(got, RL.integer_cross_entropy(z.reshape(3, 20), flat_labels), rtol=1e-5)


def test_integer_labels_gradient_and_masks():
    z = _logits(4, 6).astype(np.float64)
    labels = RNG.integers(0, 6, (4,))
    grad = jax.grad(lambda x: jnp.sum(losses.softmax_cross_entropy_with_integer_labels(x, jnp.asarray(labels))))(
        z.astype(np.float32)
    )
    expected = RL.numeric_grad(lambda x: RL.integer_cross_entropy(x, labels).sum(), z)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    examples = jnp.array([True, False, True, False])
    got = losses.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(labels), where=examples)
    np.testing.assert_allclose(got, np.where(examples, RL.integer_cross_entropy(z, labels), 0.0), rtol=1e-5)
    classes = np.ones((4, 6), bool)
    classes[:, -1] = False
    labels = np.minimum(labels, 4)
    got = losses.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(labels), where=jnp.asarray(classes))
    np.testing.assert_allclose(got, RL.softmax_cross_entropy(z, np.eye(6)[labels], where=classes), rtol=1e-5)


def test_integer_labels_out_of_range():
    z = _logits(2, 3)
    with pytest.raises(ValueError, match=r"labels\[1\] is 3, outside the 3 classes"):
        losses.softmax_cross_entropy_with_integer_labels(z, jnp.array([0, 3]))
    traced = jax.jit(losses.softmax_cross_entropy_with_integer_labels)(z, jnp.array([0, 3]))
    assert np.isfinite(traced[0]) and np.isnan(traced[1])


def test_sigmoid_binary_cross_entropy():
    z, y = _logits(5, 4), RNG.random((5, 4)).astype(np.float32)
    np.testing.assert_allclose(losses.sigmoid_binary_cross_entropy(z, y), RL.sigmoid_bce(z, y), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(losses.sigmoid_binary_cross_entropy(x, y)))(z)
    expected = RL.numeric_grad(lambda x: RL.sigmoid_bce(x, y).sum(), z.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    extreme = jnp.array([1e4, -1e4, 1e4, -1e4])
    labels = jnp.array([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(losses.sigmoid_binary_cross_entropy(extreme, labels), [1e4, 1e4, 0.0, 0.0])
    assert np.all(np.isfinite(jax.grad(lambda x: losses.sigmoid_binary_cross_entropy(x, labels).sum())(extreme)))
    # integer labels are cast to the logits' dtype
    np.testing.assert_allclose(
        losses.sigmoid_binary_cross_entropy(z[0], np.array([0, 1, 1, 0])), RL.sigmoid_bce(z[0], [0, 1, 1, 0]), rtol=1e-5
    )


@pytest.mark.parametrize("alpha, gamma", [(None, 2.0), (0.25, 2.0), (0.5, 0.0), (None, 1.5)])
def test_sigmoid_focal_loss(alpha, gamma):
    z, y = _logits(6, 3), (RNG.random((6, 3)) < 0.4).astype(np.float32)
    got = losses.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(got, RL.focal(z, y, alpha, gamma), rtol=1e-4, atol=1e-7)
    grad = jax.grad(lambda x: jnp.sum(losses.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)))(z)
    expected = RL.numeric_grad(lambda x: RL.focal(x, y, alpha, gamma).sum(), z.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-6)
    extreme = jnp.array([1e4, -1e4])
    assert np.all(np.isfinite(jax.grad(lambda x: losses.sigmoid_focal_loss(x, jnp.array([0.0, 1.0])).sum())(extreme)))


def test_poly_loss():
    z, y = _logits(5, 4), _distribution(5, 4)
    for epsilon in (2.0, -1.0, 0.0):
        got = losses.poly_loss_cross_entropy(z, y, epsilon=epsilon)
        np.testing.assert_allclose(got, RL.poly1(z, y, epsilon), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(losses.poly_loss_cross_entropy(x, y)))(z)
    expected = RL.numeric_grad(lambda x: RL.poly1(x, y).sum(), z.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    where = np.ones((5, 4), bool)
    where[:, 1] = False
    keep = np.delete(z, 1, axis=1), np.delete(y, 1, axis=1)
    got = losses.poly_loss_cross_entropy(z, y, where=jnp.asarray(where))
    np.testing.assert_allclose(got, RL.poly1(*keep), rtol=1e-5)


def test_smooth_labels():
    y = np.eye(5, dtype=np.float32)[RNG.integers(0, 5, 6)]
    np.testing.assert_allclose(losses.smooth_labels(y, 0.1), RL.smooth(y, 0.1, 5), rtol=1e-6)
    where = np.ones((6, 5), bool)
    where[:, :2] = False
    np.testing.assert_allclose(losses.smooth_labels(y, 0.1, where=jnp.asarray(where)), RL.smooth(y, 0.1, 3), rtol=1e-6)
    smoothed = losses.smooth_labels(y, 0.3)
    np.testing.assert_allclose(np.sum(smoothed, -1), 1.0, rtol=1e-6)


def test_all_under_jit():
    z, y = _logits(3, 4), _distribution(3, 4)
    labels = jnp.array([0, 3, 1])
    for fn, args in [
        (losses.softmax_cross_entropy, (z, y)),
        (losses.safe_softmax_cross_entropy, (z, y)),
        (losses.softmax_cross_entropy_with_integer_labels, (z, labels)),
        (losses.sigmoid_binary_cross_entropy, (z, y)),
        (losses.sigmoid_focal_loss, (z, y)),
        (losses.poly_loss_cross_entropy, (z, y)),
        (lambda a: losses.smooth_labels(a, 0.2), (y,)),
    ]:
        np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), rtol=1e-6)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(3)), ValueError, "labels has shape \\(3,\\)"),
        (
            lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), where=np.ones((2, 3))),
            TypeError,
            "where must be a boolean mask",
        ),
        (
            lambda: losses.softmax_cross_entropy_with_integer_labels(np.zeros((2, 3)), np.array([0.0, 1.0])),
            TypeError,
            "labels must hold integer class indices",
        ),
        (
            lambda: losses.softmax_cross_entropy_with_integer_labels(np.zeros((2, 3)), np.array([[0, 1]])),
            ValueError,
            "it must be \\(2,\\)",
        ),
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), axis=2), ValueError, "axis 2"),
        (
            lambda: losses.sigmoid_binary_cross_entropy(np.zeros((4, 1)), np.zeros(4)),
            ValueError,
            "sigmoid_binary_cross_entropy: labels has shape \\(4,\\), logits has shape \\(4, 1\\)",
        ),
        (lambda: losses.sigmoid_focal_loss(np.zeros(2), np.zeros(2), gamma=-1.0), ValueError, "gamma"),
        (lambda: losses.sigmoid_focal_loss(np.zeros(2), np.zeros(2), alpha=1.5), ValueError, "alpha"),
        (lambda: losses.smooth_labels(np.zeros(2), 2.0), ValueError, "smooth_labels: alpha"),
        (lambda: losses.safe_softmax_cross_entropy(np.zeros(()), np.zeros(())), ValueError, "class axis"),
        (
            lambda: losses.softmax_cross_entropy(np.zeros(3, complex), np.zeros(3)),
            TypeError,
            "logits must be real",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
