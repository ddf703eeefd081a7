"""NT-Xent (Chen et al. 2020) and the triplet margin loss (Balntas et al. 2016) against float64
NumPy references written pair by pair: several label groupings and temperatures, gradients
against central differences, extreme and zero embeddings, jit, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.losses.contrastive import ntxent, triplet_margin_loss

from references import losses_structured as L

RNG = np.random.default_rng(0)
EMBEDDINGS = RNG.standard_normal((6, 3)).astype(np.float32)
GROUPINGS = {
    "pairs": np.array([0, 0, 1, 1, 2, 2]),
    "uneven": np.array([0, 0, 0, 1, 1, 2]),
    "shuffled": np.array([3, 1, 3, 1, 1, 7]),
}

# -------------------------------------------------------------------------------- ntxent


@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_ntxent_matches_reference(grouping, temperature):
    labels = GROUPINGS[grouping]
    got = ntxent(EMBEDDINGS, labels, temperature)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), L.ntxent(EMBEDDINGS, labels, temperature), rtol=1e-5)


def test_ntxent_gradient_matches_finite_differences():
    labels = GROUPINGS["uneven"]
    e = EMBEDDINGS.astype(np.float64)
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: ntxent(x, labels, 0.5))(jnp.asarray(e))
    np.testing.assert_allclose(
        np.asarray(grad), L.central_differences(lambda x: L.ntxent(x, labels, 0.5), e), atol=1e-7
    )


@pytest.mark.parametrize("scale", [1e-2, 1e4, 1e20])
def test_ntxent_is_scale_free_and_finite(scale):
    """Cosine similarities do not depend on the length of the embeddings, which are scaled
    before they are squared."""
    labels = GROUPINGS["pairs"]
    value, grad = jax.value_and_grad(lambda x: ntxent(x, labels))(EMBEDDINGS * np.float32(scale))
    np.testing.assert_allclose(float(value), L.ntxent(EMBEDDINGS, labels, 0.07), rtol=1e-4)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_ntxent_zero_embeddings_and_groupings_without_negatives_or_positives():
    zero = np.zeros((4, 3), np.float32)
    zero_value, zero_grad = jax.value_and_grad(lambda x: ntxent(x, np.array([0, 0, 1, 1])))(zero)
    np.testing.assert_allclose(float(zero_value), np.log(3.0), rtol=1e-6)  # all similarities 0: log(1 + 2)
    assert np.all(np.isfinite(np.asarray(zero_grad)))
    # one group: no negatives, every pair is its own softmax, loss 0
    np.testing.assert_allclose(float(ntxent(EMBEDDINGS, np.zeros(6, np.int32))), 0.0, atol=1e-6)
    # no positive pair: the mean over no pairs
    assert np.isnan(float(ntxent(EMBEDDINGS, np.arange(6))))


def test_ntxent_jit():
    labels = GROUPINGS["shuffled"]
    np.testing.assert_allclose(
        float(jax.jit(ntxent)(EMBEDDINGS, labels, 0.3)), L.ntxent(EMBEDDINGS, labels, 0.3), rtol=1e-5
    )


@pytest.mark.parametrize(
    "embeddings, labels, temperature, error, match",
    [
        (EMBEDDINGS, GROUPINGS["pairs"].astype(np.float32), 0.1, TypeError, "ntxent: labels must hold integer"),
        (
            EMBEDDINGS[:, 0],
            GROUPINGS["pairs"],
            0.1,
            ValueError,
            r"ntxent: embeddings must have shape \(batch, features\)",
        ),
        (EMBEDDINGS, np.zeros(5, np.int32), 0.1, ValueError, r"ntxent: labels has shape \(5,\)"),
        (EMBEDDINGS, GROUPINGS["pairs"], 0.0, ValueError, "ntxent: temperature must be a positive number"),
        (EMBEDDINGS, GROUPINGS["pairs"], np.ones(2), ValueError, "ntxent: temperature must be a number"),
    ],
)
def test_ntxent_bad_inputs(embeddings, labels, temperature, error, match):
    with pytest.raises(error, match=match):
        ntxent(embeddings, labels, temperature)


# ------------------------------------------------------------------------------- triplet

A, P, N = (RNG.standard_normal((4, 5)).astype(np.float32) for _ in range(3))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(margin=0.2),
        dict(margin=3.0),
        dict(norm_degree=1),
        dict(norm_degree=3, eps=1e-3),
        dict(axis=0),
        dict(eps=0.0),
    ],
)
def test_triplet_matches_reference(kwargs):
    got = triplet_margin_loss(A, P, N, **kwargs)
    want = L.triplet_margin(A, P, N, **kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    # the regime: some triplets are inside the margin, some not
    if kwargs == dict(margin=0.2):
        assert 0 < np.count_nonzero(want) < want.size


def test_triplet_leading_axes():
    a, p, n = (RNG.standard_normal((2, 3, 4)) for _ in range(3))
    got = triplet_margin_loss(a, p, n, axis=1, norm_degree=1.5)
    np.testing.assert_allclose(
        np.asarray(got), L.triplet_margin(a, p, n, axis=1, norm_degree=1.5), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("norm_degree", [1, 2, 3])
def test_triplet_gradient_matches_finite_differences(norm_degree):
    a, p, n = (x.astype(np.float64) for x in (A, P, N))
    with jax.enable_x64(True):
        grads = jax.grad(
            lambda a, p, n: jnp.sum(triplet_margin_loss(a, p, n, norm_degree=norm_degree, margin=2.0)),
            argnums=(0, 1, 2),
        )(a, p, n)
    for i, got in enumerate(grads):

        def ref(x, i=i):
            args = [a, p, n]
            args[i] = x
            return L.triplet_margin(*args, norm_degree=norm_degree, margin=2.0).sum()

        np.testing.assert_allclose(np.asarray(got), L.central_differences(ref, [a, p, n][i]), atol=1e-6)


def test_triplet_extremes_and_coincident_points():
    big = (1e4 * np.sign(RNG.standard_normal((3, 4, 5)))).astype(np.float32)
    value, grad = jax.value_and_grad(lambda a: jnp.sum(triplet_margin_loss(a, big[1], big[2])))(big[0])
    np.testing.assert_allclose(float(value), L.triplet_margin(*big).sum(), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(grad)))
    # a positive equal to its anchor: eps keeps the gradient finite (0 at that point)
    grad = jax.grad(lambda p: jnp.sum(triplet_margin_loss(A, p, N, margin=10.0)))(A.copy())
    assert np.all(np.isfinite(np.asarray(grad)))


def test_triplet_jit():
    fn = jax.jit(triplet_margin_loss, static_argnames=("axis", "norm_degree"))
    np.testing.assert_allclose(
        np.asarray(fn(A, P, N, norm_degree=3, margin=0.5)),
        L.triplet_margin(A, P, N, norm_degree=3, margin=0.5),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            dict(negatives=N[0]),
            ValueError,
            r"triplet_margin_loss: negatives has shape \(5,\), anchors has shape \(4, 5\)",
        ),
        (dict(positives=P[:, :4]), ValueError, "triplet_margin_loss: positives has shape"),
        (dict(axis=2), ValueError, "triplet_margin_loss: axis 2 is out of range"),
        (dict(norm_degree=0), ValueError, "triplet_margin_loss: norm_degree must be a positive number"),
        (dict(eps=-1.0), ValueError, "triplet_margin_loss: eps must be a nonnegative number"),
        (dict(margin=np.ones(4)), ValueError, "triplet_margin_loss: margin must be a number"),
        (dict(anchors=A.astype(np.complex64)), TypeError, "triplet_margin_loss: anchors must be real"),
    ],
)
def test_triplet_bad_inputs(change, error, match):
    args = dict(anchors=A, positives=P, negatives=N) | change
    with pytest.raises(error, match=match):
        triplet_margin_loss(**args)
