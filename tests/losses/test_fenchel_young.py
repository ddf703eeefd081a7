"""The sparsemax losses (Martins & Astudillo 2016) and Fenchel-Young losses (Blondel et al. 2020)
against float64 NumPy references: sparsemax by sorting (itself checked against bisection), the
closed-form sparsemax loss, the piecewise binary loss; gradients against central differences;
extreme scores; jit; bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.losses.fenchel_young import make_fenchel_young_loss, multiclass_sparsemax_loss, sparsemax_loss

from references import losses_structured as L

RNG = np.random.default_rng(0)
SCORES = {scale: (scale * RNG.standard_normal((5, 6))).astype(np.float32) for scale in (0.1, 1.0, 4.0)}
LABELS = RNG.integers(0, 6, 5)


def test_the_two_sparsemax_references_agree():
    z = np.random.default_rng(1).standard_normal((20, 7)) * 3
    np.testing.assert_allclose(L.sparsemax(z), L.sparsemax_by_bisection(z), atol=1e-12)
    np.testing.assert_allclose(L.sparsemax(z).sum(-1), 1, rtol=1e-12)


# -------------------------------------------------------------- multiclass sparsemax loss


@pytest.mark.parametrize("scale", sorted(SCORES))
def test_multiclass_matches_reference(scale):
    got = multiclass_sparsemax_loss(SCORES[scale], LABELS)
    assert got.shape == (5,) and got.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(got), L.multiclass_sparsemax_loss(SCORES[scale], LABELS), rtol=1e-5, atol=1e-6
    )


def test_multiclass_leading_axes_and_one_example():
    scores = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    labels = np.array([[0, 1, 3], [2, 2, 0]])
    got = multiclass_sparsemax_loss(scores, labels)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(got), L.multiclass_sparsemax_loss(scores, labels), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(multiclass_sparsemax_loss(scores[0, 0], 0)), L.multiclass_sparsemax_loss(scores[0, 0], 0), rtol=1e-5
    )


def test_multiclass_gradient():
    """Central differences of the reference, and the closed form sparsemax(z) - e_y."""
    scores, labels = SCORES[1.0].astype(np.float64), LABELS
    with jax.enable_x64(True):
        grad = jax.grad(lambda z: jnp.sum(multiclass_sparsemax_loss(z, labels)))(jnp.asarray(scores))
    np.testing.assert_allclose(
        np.asarray(grad),
        L.central_differences(lambda z: L.multiclass_sparsemax_loss(z, labels).sum(), scores),
        atol=1e-7,
    )
    np.testing.assert_allclose(np.asarray(grad), L.sparsemax(scores) - np.eye(6)[labels], atol=1e-12)


def test_multiclass_extreme_scores():
    scores = np.array([[1e4, -1e4, 0.0], [1e4, 1e4 - 0.5, -1e4], [-1e4, -1e4, -1e4]], np.float32)
    labels = np.array([1, 0, 2])
    loss, grad = jax.value_and_grad(lambda z: jnp.sum(multiclass_sparsemax_loss(z, labels)))(scores)
    np.testing.assert_allclose(float(loss), L.multiclass_sparsemax_loss(scores, labels).sum(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), L.sparsemax(scores) - np.eye(3)[labels], atol=1e-6)


def test_multiclass_zero_exactly_at_the_label():
    """The loss is 0 when sparsemax puts all mass on the label, and positive otherwise."""
    scores = np.array([[2.0, 0.5, 0.0], [0.2, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(multiclass_sparsemax_loss(scores, np.array([0, 0])))[0], 0.0)
    assert float(multiclass_sparsemax_loss(scores, np.array([0, 0]))[1]) > 0


def test_multiclass_jit():
    got = jax.jit(multiclass_sparsemax_loss)(SCORES[1.0], LABELS)
    np.testing.assert_allclose(np.asarray(got), L.multiclass_sparsemax_loss(SCORES[1.0], LABELS), rtol=1e-5, atol=1e-6)
    # a traced label out of range cannot be refused: it gives NaN
    assert np.isnan(np.asarray(jax.jit(multiclass_sparsemax_loss)(SCORES[1.0], LABELS + 6))).all()


@pytest.mark.parametrize(
    "scores, labels, error, match",
    [
        (np.zeros((2, 3)), np.zeros(2, np.float32), TypeError, "multiclass_sparsemax_loss: labels must hold integer"),
        (np.zeros((2, 3)), np.zeros(3, np.int32), ValueError, r"multiclass_sparsemax_loss: labels has shape \(3,\)"),
        (np.zeros((2, 3)), np.array([0, 3]), ValueError, r"multiclass_sparsemax_loss: labels\[1\] is 3, outside"),
        (np.zeros((2, 3)), np.array([0, -1]), ValueError, r"multiclass_sparsemax_loss: labels\[1\] is -1"),
        (np.zeros(()), np.zeros((), np.int32), ValueError, "multiclass_sparsemax_loss: scores must have a class axis"),
        (
            np.zeros((2, 3), np.complex64),
            np.zeros(2, np.int32),
            TypeError,
            "multiclass_sparsemax_loss: scores must be real",
        ),
    ],
)
def test_multiclass_bad_inputs(scores, labels, error, match):
    with pytest.raises(error, match=match):
        multiclass_sparsemax_loss(scores, labels)


# ------------------------------------------------------------------ binary sparsemax loss

LOGITS = np.array([-3.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5, -1e4, 1e4], np.float32)


@pytest.mark.parametrize("label", [0, 1])
def test_binary_matches_reference(label):
    labels = np.full(LOGITS.shape, label)
    np.testing.assert_allclose(
        np.asarray(sparsemax_loss(LOGITS, labels)), L.binary_sparsemax_loss(LOGITS, labels), rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(sparsemax_loss(LOGITS, labels.astype(bool))), L.binary_sparsemax_loss(LOGITS, labels), rtol=1e-6
    )


def test_binary_batch_gradient_and_extremes():
    z = np.random.default_rng(3).uniform(-2, 2, (4, 5))
    y = np.random.default_rng(4).integers(0, 2, (4, 5))
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: jnp.sum(sparsemax_loss(x, y)))(jnp.asarray(z))
    np.testing.assert_allclose(
        np.asarray(grad), L.central_differences(lambda x: L.binary_sparsemax_loss(x, y).sum(), z), atol=1e-7
    )
    # the gradient is the sparse sigmoid minus the label
    np.testing.assert_allclose(np.asarray(grad), np.clip((z + 1) / 2, 0, 1) - y, atol=1e-12)
    grad = jax.grad(lambda x: jnp.sum(sparsemax_loss(x, np.array([0, 1, 0, 1]))))(
        np.array([1e4, 1e4, -1e4, -1e4], np.float32)
    )
    np.testing.assert_array_equal(np.asarray(grad), [1.0, 0.0, 0.0, -1.0])


def test_binary_jit():
    labels = (LOGITS > 0.2).astype(np.int32)
    np.testing.assert_allclose(
        np.asarray(jax.jit(sparsemax_loss)(LOGITS, labels)), L.binary_sparsemax_loss(LOGITS, labels), rtol=1e-6
    )


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.full(9, 0.5, np.float32), TypeError, "sparsemax_loss: labels must hold integer"),
        (np.full(9, 2), ValueError, "sparsemax_loss: labels must be 0 or 1"),
        (np.zeros(8, np.int32), ValueError, r"sparsemax_loss: labels has shape \(8,\), logits has shape \(9,\)"),
    ],
)
def test_binary_bad_inputs(labels, error, match):
    with pytest.raises(error, match=match):
        sparsemax_loss(LOGITS, labels)


# --------------------------------------------------------------------- make_fenchel_young_loss


def test_fenchel_young_with_logsumexp():
    """log-sum-exp minus <y, z>: for a distribution y, the softmax cross-entropy (Omega(y) is left out)."""
    scores = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float32)
    targets = L.softmax(np.random.default_rng(6).standard_normal((2, 3, 4)))
    loss = make_fenchel_young_loss(jax.nn.logsumexp)
    got = loss(scores, targets.astype(np.float32))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(got), L.fenchel_young(L.logsumexp, scores, targets), rtol=1e-5)
    cross_entropy = -np.sum(targets * L.log_softmax(scores), -1)
    np.testing.assert_allclose(np.asarray(got), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(loss)(scores, targets)), cross_entropy, rtol=1e-5)


def test_fenchel_young_passes_arguments_and_its_gradient():
    def smooth_max(z, temperature, *, shift=0.0):
        return temperature * jax.nn.logsumexp(z / temperature) + shift

    loss = make_fenchel_young_loss(smooth_max)
    scores = np.random.default_rng(7).standard_normal((3, 5))
    targets = np.eye(5)[[0, 2, 4]]
    ref = lambda z: L.fenchel_young(lambda v: 2.0 * L.logsumexp(v / 2.0) + 1.0, z, targets)
    np.testing.assert_allclose(np.asarray(loss(scores, targets, 2.0, shift=1.0)), ref(scores), rtol=1e-5)
    with jax.enable_x64(True):
        grad = jax.grad(lambda z: jnp.sum(loss(z, targets, 2.0, shift=1.0)))(jnp.asarray(scores))
    np.testing.assert_allclose(np.asarray(grad), L.central_differences(lambda z: ref(z).sum(), scores), atol=1e-7)


def test_fenchel_young_extreme_scores():
    loss = make_fenchel_young_loss(jax.nn.logsumexp)
    scores = np.array([[1e4, -1e4, 0.0]], np.float32)
    value, grad = jax.value_and_grad(lambda z: jnp.sum(loss(z, np.array([[0.0, 1.0, 0.0]]))))(scores)
    np.testing.assert_allclose(float(value), 2e4, rtol=1e-6)  # logsumexp = 1e4, <y, z> = -1e4
    np.testing.assert_allclose(np.asarray(grad), [[1.0, -1.0, 0.0]], atol=1e-6)


def test_fenchel_young_bad_inputs():
    with pytest.raises(TypeError, match="make_fenchel_young_loss: max_fun must be a function"):
        make_fenchel_young_loss(3.0)
    loss = make_fenchel_young_loss(jax.nn.logsumexp)
    with pytest.raises(ValueError, match=r"fenchel_young_loss: targets has shape \(4,\), scores has shape \(2, 4\)"):
        loss(np.zeros((2, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="fenchel_young_loss: scores must have at least one axis"):
        loss(np.zeros(()), np.zeros(()))
    with pytest.raises(ValueError, match="fenchel_young_loss: max_fun must return one number per vector"):
        make_fenchel_young_loss(lambda z: z)(np.zeros((2, 4)), np.zeros((2, 4)))
