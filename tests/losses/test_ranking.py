"""The listwise softmax ranking loss against a float64 NumPy reference written item by item:
graded labels, masks, weights, the reduction, gradients against central differences, extreme and
-inf scores, jit, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.losses.ranking import ranking_softmax_loss

from references import losses_structured as L

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((4, 6)).astype(np.float32)
LABELS = RNG.integers(0, 4, (4, 6)).astype(np.float32)  # graded relevance, not normalised
WHERE = RNG.random((4, 6)) > 0.3
WHERE[3] = False  # a list with no valid item
WEIGHTS = RNG.uniform(0.2, 2.0, (4, 6)).astype(np.float32)


@pytest.mark.parametrize("use_where", [False, True])
@pytest.mark.parametrize("use_weights", [False, True])
def test_matches_reference(use_where, use_weights):
    where = WHERE if use_where else None
    weights = WEIGHTS if use_weights else None
    want, valid = L.ranking_softmax(LOGITS, LABELS, where, weights)
    per_list = ranking_softmax_loss(LOGITS, LABELS, where=where, weights=weights, reduce_fn=None)
    assert per_list.shape == (4,)
    np.testing.assert_allclose(np.asarray(per_list), want, rtol=1e-5)
    # the mean and the sum run over the lists that keep an item
    np.testing.assert_allclose(
        float(ranking_softmax_loss(LOGITS, LABELS, where=where, weights=weights)), want[valid].mean(), rtol=1e-5
    )
    total = ranking_softmax_loss(LOGITS, LABELS, where=where, weights=weights, reduce_fn=jnp.sum)
    np.testing.assert_allclose(float(total), want[valid].sum(), rtol=1e-5)


def test_leading_axes_and_a_single_list():
    logits = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    labels = RNG.integers(0, 3, (2, 3, 5)).astype(np.float32)
    got = ranking_softmax_loss(logits, labels, reduce_fn=None)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(got), L.ranking_softmax(logits, labels)[0], rtol=1e-5)
    np.testing.assert_allclose(
        float(ranking_softmax_loss(logits[0, 0], labels[0, 0])),
        L.ranking_softmax(logits[0, 0], labels[0, 0])[0],
        rtol=1e-5,
    )


def test_masked_items_change_nothing():
    noise = RNG.standard_normal(LOGITS.shape).astype(np.float32) * 1e4
    logits = np.where(WHERE, LOGITS, noise)
    labels = np.where(WHERE, LABELS, 7.0)
    got = ranking_softmax_loss(logits, labels, where=WHERE, reduce_fn=None)
    base = ranking_softmax_loss(LOGITS, LABELS, where=WHERE, reduce_fn=None)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(base))
    assert float(got[3]) == 0.0  # no valid item: loss 0
    grad = jax.grad(lambda s: ranking_softmax_loss(s, labels, where=WHERE))(logits)
    assert np.all(np.asarray(grad)[~WHERE] == 0)


def test_gradient_matches_finite_differences():
    logits = LOGITS.astype(np.float64)

    def reference(s):
        losses, valid = L.ranking_softmax(s, LABELS, WHERE, WEIGHTS)
        return losses[valid].mean()

    with jax.enable_x64(True):
        grad = jax.grad(lambda s: ranking_softmax_loss(s, LABELS, where=WHERE, weights=WEIGHTS))(jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(grad), L.central_differences(reference, logits), atol=1e-7)


def test_extreme_scores():
    logits = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4]], np.float32)
    labels = np.array([[0.0, 1.0, 2.0, 1.0], [1.0, 0.0, 0.0, 3.0]], np.float32)
    value, grad = jax.value_and_grad(lambda s: ranking_softmax_loss(s, labels, reduce_fn=jnp.sum))(logits)
    np.testing.assert_allclose(float(value), L.ranking_softmax(logits, labels)[0].sum(), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_minus_infinity_scores():
    """A score of -inf is an item of probability 0: left out when it carries no relevance, an
    infinite loss when it does."""
    logits = np.array([[0.5, -np.inf, 1.0, 0.0]], np.float32)
    got = ranking_softmax_loss(logits, np.array([[1.0, 0.0, 2.0, 0.0]]), reduce_fn=None)
    want = L.ranking_softmax(logits, np.array([[1.0, 0.0, 2.0, 0.0]]), where=np.array([[True, False, True, True]]))[0]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    grad = jax.grad(lambda s: ranking_softmax_loss(s, np.array([[1.0, 0.0, 2.0, 0.0]])))(logits)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert float(ranking_softmax_loss(logits, np.array([[1.0, 1.0, 0.0, 0.0]]))) == np.inf


def test_jit():
    fn = jax.jit(lambda s, y, m, w: ranking_softmax_loss(s, y, where=m, weights=w, reduce_fn=None))
    np.testing.assert_allclose(
        np.asarray(fn(LOGITS, LABELS, WHERE, WEIGHTS)), L.ranking_softmax(LOGITS, LABELS, WHERE, WEIGHTS)[0], rtol=1e-5
    )


def test_custom_reduce_fn_gets_the_valid_lists():
    seen = {}

    def reduce_fn(losses, where=None):
        seen["where"] = where
        return jnp.max(losses)

    ranking_softmax_loss(LOGITS, LABELS, where=WHERE, reduce_fn=reduce_fn)
    np.testing.assert_array_equal(np.asarray(seen["where"]), WHERE.any(-1))
    ranking_softmax_loss(LOGITS, LABELS, reduce_fn=reduce_fn)
    assert seen["where"] is None


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            dict(labels=np.zeros((4, 5))),
            ValueError,
            r"ranking_softmax_loss: labels has shape \(4, 5\), logits has shape \(4, 6\)",
        ),
        (dict(weights=np.ones(6)), ValueError, r"ranking_softmax_loss: weights has shape \(6,\)"),
        (dict(where=np.ones((4, 6))), TypeError, "ranking_softmax_loss: where must be a boolean mask"),
        (dict(where=np.ones((6,), bool)), ValueError, r"ranking_softmax_loss: where has shape \(6,\)"),
        (dict(reduce_fn="mean"), TypeError, "ranking_softmax_loss: reduce_fn must be a function or None"),
        (
            dict(logits=np.zeros(()), labels=np.zeros(())),
            ValueError,
            "ranking_softmax_loss: logits must have a list axis",
        ),
        (dict(labels=np.zeros((4, 6), np.complex64)), TypeError, "ranking_softmax_loss: labels must be real"),
    ],
)
def test_bad_inputs(change, error, match):
    args = dict(logits=LOGITS, labels=LABELS) | change
    with pytest.raises(error, match=match):
        ranking_softmax_loss(**args)
