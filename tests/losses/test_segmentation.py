"""The Dice, Tversky, binary Dice and generalised Dice losses (Milletari et al. 2016; Salehi et
al. 2017; Sudre et al. 2017) against float64 NumPy references: shapes and the axes summed,
reductions, class weights, the background, gradients against central differences, extreme logits,
jit, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.losses.segmentation import binary_dice_loss, dice_loss, multiclass_generalized_dice_loss

from references import losses_structured as L

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((2, 3, 4, 3)).astype(np.float32)  # (batch, height, width, classes)
TARGETS = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, (2, 3, 4))]
SPATIAL = (1, 2)


def reduce(per_class, reduction):
    return {"mean": per_class.mean(-1), "sum": per_class.sum(-1), "none": per_class}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha, beta", [(0.5, 0.5), (0.3, 0.7), (1.0, 0.0)])
def test_dice_matches_reference(reduction, alpha, beta):
    got = dice_loss(LOGITS, TARGETS, alpha=alpha, beta=beta, reduction=reduction)
    want = reduce(L.dice_per_class(L.softmax(LOGITS), TARGETS, SPATIAL, 1.0, alpha, beta), reduction)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_dice_class_weights_background_smooth_and_probabilities():
    probs = L.softmax(LOGITS)
    weights = np.array([0.5, 1.0, 3.0])
    per_class = L.dice_per_class(probs, TARGETS, SPATIAL, 0.1) * weights
    got = dice_loss(LOGITS, TARGETS, class_weights=weights, smooth=0.1, ignore_background=True, reduction="sum")
    np.testing.assert_allclose(np.asarray(got), per_class[..., 1:].sum(-1), rtol=1e-5)
    got = dice_loss(probs.astype(np.float32), TARGETS, apply_softmax=False, smooth=0.0)
    np.testing.assert_allclose(np.asarray(got), L.dice_per_class(probs, TARGETS, SPATIAL, 0.0).mean(-1), rtol=1e-5)


@pytest.mark.parametrize("axis", [1, (1, 2), 0, (0, 1, 2), -2])
def test_dice_axes(axis):
    got = dice_loss(LOGITS, TARGETS, axis=axis, reduction="none")
    axes = tuple(np.arange(4)[np.atleast_1d(axis)]) if not isinstance(axis, tuple) else axis
    want = L.dice_per_class(L.softmax(LOGITS), TARGETS, axes)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_dice_one_class_uses_the_sigmoid_and_the_class_axis_may_be_left_out():
    logits = RNG.standard_normal((2, 5, 1)).astype(np.float32)
    targets = (RNG.random((2, 5, 1)) > 0.5).astype(np.float32)
    want = L.dice_per_class(L.sigmoid(logits), targets, (1,))[:, 0]
    for p, t in [(logits, targets), (logits[..., 0], targets), (logits, targets[..., 0])]:
        np.testing.assert_allclose(np.asarray(dice_loss(p, t)), want, rtol=1e-5)
    # no spatial axis: one value per example and class
    flat = dice_loss(LOGITS[:, 0, 0], TARGETS[:, 0, 0], reduction="none")
    np.testing.assert_allclose(
        np.asarray(flat), L.dice_per_class(L.softmax(LOGITS[:, 0, 0]), TARGETS[:, 0, 0], ()), rtol=1e-5
    )


def test_dice_gradient_matches_finite_differences():
    logits = LOGITS.astype(np.float64)
    ref = lambda x: L.dice_per_class(L.softmax(x), TARGETS, SPATIAL, 1.0, 0.3, 0.7).mean(-1).sum()
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: jnp.sum(dice_loss(x, TARGETS, alpha=0.3, beta=0.7)))(jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(grad), L.central_differences(ref, logits), atol=1e-7)


def test_dice_extreme_logits():
    logits = (1e4 * np.sign(LOGITS)).astype(np.float32)
    value, grad = jax.value_and_grad(lambda x: jnp.sum(dice_loss(x, TARGETS)))(logits)
    np.testing.assert_allclose(
        float(value), L.dice_per_class(L.softmax(logits), TARGETS, SPATIAL).mean(-1).sum(), rtol=1e-5
    )
    assert np.all(np.isfinite(np.asarray(grad)))


def test_dice_jit():
    fn = jax.jit(lambda p, t, w: dice_loss(p, t, class_weights=w, alpha=0.2, beta=0.8))
    want = (L.dice_per_class(L.softmax(LOGITS), TARGETS, SPATIAL, 1.0, 0.2, 0.8) * [1.0, 2.0, 3.0]).mean(-1)
    np.testing.assert_allclose(np.asarray(fn(LOGITS, TARGETS, np.array([1.0, 2.0, 3.0]))), want, rtol=1e-5)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            dict(targets=TARGETS[..., :2]),
            ValueError,
            r"dice_loss: targets has shape \(2, 3, 4, 2\), predictions has shape",
        ),
        (dict(reduction="max"), ValueError, "dice_loss: reduction must be one of 'mean', 'sum', 'none', got 'max'"),
        (dict(class_weights=np.ones(2)), ValueError, r"dice_loss: class_weights has shape \(2,\); it must be \(3,\)"),
        (dict(axis=-1), ValueError, "dice_loss: axis -1 includes the class axis"),
        (dict(axis=4), ValueError, "dice_loss: axis 4 is out of range"),
        (dict(smooth=-1.0), ValueError, "dice_loss: smooth must be a nonnegative number"),
        (dict(alpha=np.ones(3)), ValueError, "dice_loss: alpha must be a number"),
        (dict(predictions=LOGITS.astype(np.complex64)), TypeError, "dice_loss: predictions must be real"),
    ],
)
def test_dice_bad_inputs(change, error, match):
    args = dict(predictions=LOGITS, targets=TARGETS) | change
    with pytest.raises(error, match=match):
        dice_loss(**args)


# ----------------------------------------------------------------------------- binary


@pytest.mark.parametrize("shape", [(2, 5), (2, 3, 4), (2, 3, 4, 1), (4, 1)])
def test_binary_matches_reference(shape):
    logits = RNG.standard_normal(shape).astype(np.float32)
    targets = (RNG.random(shape) > 0.5).astype(np.float32)
    axes = tuple(range(1, len(shape) - (shape[-1] == 1)))  # all but the first (and a trailing class axis)
    want = L.dice_per_class(L.sigmoid(logits), targets, axes).reshape(shape[0])
    got = binary_dice_loss(logits, targets)
    assert got.shape == (shape[0],)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    probs = L.sigmoid(logits)
    got = binary_dice_loss(probs.astype(np.float32), targets, smooth=0.5, apply_sigmoid=False)
    np.testing.assert_allclose(
        np.asarray(got), L.dice_per_class(probs, targets, axes, 0.5).reshape(shape[0]), rtol=1e-5
    )


def test_binary_gradient_extremes_and_jit():
    logits = RNG.standard_normal((3, 6))
    targets = (RNG.random((3, 6)) > 0.5).astype(np.float64)
    ref = lambda x: L.dice_per_class(L.sigmoid(x), targets, (1,)).sum()
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: jnp.sum(binary_dice_loss(x, targets)))(jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(grad), L.central_differences(ref, logits), atol=1e-7)
    big = (1e4 * np.sign(logits)).astype(np.float32)
    value, grad = jax.value_and_grad(lambda x: jnp.sum(binary_dice_loss(x, targets)))(big)
    np.testing.assert_allclose(float(value), ref(big), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(
        np.asarray(jax.jit(binary_dice_loss)(logits.astype(np.float32), targets)),
        L.dice_per_class(L.sigmoid(logits), targets, (1,)),
        rtol=1e-5,
    )


def test_binary_bad_inputs():
    with pytest.raises(
        ValueError, match=r"binary_dice_loss: targets has shape \(2, 4, 1\), predictions has shape \(2, 5, 1\)"
    ):
        binary_dice_loss(np.zeros((2, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="binary_dice_loss: smooth must be a nonnegative number"):
        binary_dice_loss(np.zeros((2, 5)), np.zeros((2, 5)), smooth=-0.5)


# ------------------------------------------------------------------------ generalised


def generalized(logits, targets, ignore_background=False, smooth=1.0):
    per_class = L.dice_per_class(L.softmax(logits), targets, SPATIAL, smooth) * L.generalized_weights(targets)
    return per_class[..., 1:].mean() if ignore_background else per_class.mean()


@pytest.mark.parametrize("ignore_background", [False, True])
def test_generalized_matches_reference(ignore_background):
    got = multiclass_generalized_dice_loss(LOGITS, TARGETS, ignore_background=ignore_background, smooth=0.5)
    assert got.shape == ()
    np.testing.assert_allclose(float(got), generalized(LOGITS, TARGETS, ignore_background, 0.5), rtol=1e-5)


def test_generalized_rare_class_dominates():
    """A class absent from the targets gets a weight near the number of classes, the others
    near 0."""
    targets = TARGETS.copy()
    targets[..., 0] += targets[..., 2]
    targets[..., 2] = 0
    got = multiclass_generalized_dice_loss(LOGITS, targets)
    np.testing.assert_allclose(float(got), generalized(LOGITS, targets), rtol=1e-5)
    np.testing.assert_allclose(L.generalized_weights(targets)[2], 3.0, rtol=1e-6)


def test_generalized_gradient_extremes_and_jit():
    logits = LOGITS.astype(np.float64)
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: multiclass_generalized_dice_loss(x, TARGETS))(jnp.asarray(logits))
    np.testing.assert_allclose(
        np.asarray(grad), L.central_differences(lambda x: generalized(x, TARGETS), logits), atol=1e-7
    )
    big = (1e4 * np.sign(LOGITS)).astype(np.float32)
    value, grad = jax.value_and_grad(lambda x: multiclass_generalized_dice_loss(x, TARGETS))(big)
    np.testing.assert_allclose(float(value), generalized(big, TARGETS), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(
        float(jax.jit(multiclass_generalized_dice_loss)(LOGITS, TARGETS)), generalized(LOGITS, TARGETS), rtol=1e-5
    )


def test_generalized_bad_inputs():
    with pytest.raises(ValueError, match="multiclass_generalized_dice_loss: targets has shape"):
        multiclass_generalized_dice_loss(LOGITS, TARGETS[..., 0])
    with pytest.raises(ValueError, match="multiclass_generalized_dice_loss: smooth must be a nonnegative number"):
        multiclass_generalized_dice_loss(LOGITS, TARGETS, smooth=-1.0)
