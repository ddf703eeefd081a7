"""The CTC loss and its forward probabilities (Graves et al. 2006) against float64 NumPy
references: the log-space forward recursion and, for a few frames, the brute-force sum over all
alignments; gradients against central differences of the reference; padded frames and labels;
extreme logits; jit; bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.losses.ctc import ctc_loss, ctc_loss_with_forward_probs

from references import losses_structured as L


def batch(seed=0, frames=7, classes=5, width=4):
    """Three sequences: one unpadded with a repeated label, one with trailing padded frames and
    two padded labels, one with a padded frame in the middle and one padded label."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((3, frames, classes)).astype(np.float32)
    logit_paddings = np.zeros((3, frames), np.float32)
    logit_paddings[1, frames - 2 :] = 1
    logit_paddings[2, 2] = 1
    labels = rng.integers(1, classes, (3, width))
    labels[0, 2] = labels[0, 1]
    label_paddings = np.zeros((3, width), np.float32)
    label_paddings[1, 2:] = 1
    label_paddings[2, 3:] = 1
    return logits, logit_paddings, labels, label_paddings


def test_the_two_references_agree():
    """The recursion reference and the brute-force enumeration, on repeats and a blank id of 2."""
    rng = np.random.default_rng(1)
    for labels, blank in [([1, 1], 0), ([1, 2, 1], 0), ([2], 0), ([0, 1], 2), ([], 0)]:
        logits = rng.standard_normal((5, 3))
        padded = np.array([labels + [0]])  # one padded label more
        paddings = np.array([[0] * len(labels) + [1]])
        loss, _, _ = L.ctc_reference(logits[None], np.zeros((1, 5)), padded, paddings, blank)
        np.testing.assert_allclose(loss[0], L.ctc_brute_force(logits, labels, blank), rtol=1e-12)


@pytest.mark.parametrize("blank_id", [0, 2])
def test_matches_brute_force(blank_id):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 5, 3)).astype(np.float32)
    labels = np.array([[1, 1], [0 if blank_id else 2, 1]])
    loss = ctc_loss(logits, np.zeros((2, 5)), labels, np.zeros((2, 2)), blank_id=blank_id)
    want = [L.ctc_brute_force(logits[b], list(labels[b]), blank_id) for b in range(2)]
    np.testing.assert_allclose(np.asarray(loss), want, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("blank_id", [0, 2])
def test_matches_reference(dtype, blank_id):
    logits, logit_paddings, labels, label_paddings = batch()
    labels = np.where(labels == blank_id, 1 if blank_id != 1 else 3, labels)
    with jax.enable_x64(dtype == "float64"):
        out = ctc_loss_with_forward_probs(
            logits.astype(dtype), logit_paddings, labels, label_paddings, blank_id=blank_id
        )
        loss = ctc_loss(logits.astype(dtype), logit_paddings, labels, label_paddings, blank_id=blank_id)
    want_loss, want_blank, want_label = L.ctc_reference(logits, logit_paddings, labels, label_paddings, blank_id)
    tol = 1e-5 if dtype == "float32" else 1e-11
    assert [x.dtype for x in out] == [np.dtype(dtype)] * 3
    assert out[0].shape == (3,) and out[1].shape == (7, 3, 5) and out[2].shape == (7, 3, 4)
    np.testing.assert_allclose(np.asarray(out[0]), want_loss, rtol=tol)
    np.testing.assert_allclose(np.asarray(loss), want_loss, rtol=tol)
    np.testing.assert_allclose(np.exp(np.asarray(out[1], np.float64)), want_blank, rtol=tol, atol=tol * 1e-2)
    np.testing.assert_allclose(np.exp(np.asarray(out[2], np.float64)), want_label, rtol=tol, atol=tol * 1e-2)
    # the last row holds the loss of each sequence at its own label length
    lengths = (label_paddings == 0).sum(1)
    np.testing.assert_allclose(-np.asarray(out[1])[-1, np.arange(3), lengths], want_loss, rtol=tol)


def test_gradient_matches_finite_differences():
    logits, logit_paddings, labels, label_paddings = batch(seed=3, frames=5, classes=4, width=3)
    weights = np.array([0.5, 1.0, 2.0])

    def reference(x):
        return float(weights @ L.ctc_reference(x, logit_paddings, labels, label_paddings)[0])

    with jax.enable_x64(True):
        grad = jax.grad(lambda x: jnp.dot(jnp.asarray(weights), ctc_loss(x, logit_paddings, labels, label_paddings)))(
            jnp.asarray(logits, jnp.float64)
        )
    want = L.central_differences(reference, logits)
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-8)
    # padded frames get no gradient
    assert np.all(np.asarray(grad)[logit_paddings.astype(bool)] == 0)


def test_padded_frames_and_labels_change_nothing():
    logits, logit_paddings, labels, label_paddings = batch(seed=4)
    base = ctc_loss_with_forward_probs(logits, logit_paddings, labels, label_paddings)
    noisy = np.where(
        logit_paddings[..., None] == 1, 1e4 * np.random.default_rng(5).standard_normal(logits.shape), logits
    )
    for padded_value in (-1, 0, 4, 99):
        other_labels = np.where(label_paddings == 1, padded_value, labels)
        out = ctc_loss_with_forward_probs(
            noisy.astype(np.float32), logit_paddings.astype(bool), other_labels, label_paddings
        )
        for got, want in zip(out, base):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # a padded frame is the same as no frame at all: sequence 2 without its frame 2
    short = ctc_loss(np.delete(logits[2:], 2, axis=1), np.zeros((1, 6)), labels[2:], label_paddings[2:])
    np.testing.assert_allclose(np.asarray(short), np.asarray(base[0][2:]), rtol=1e-6)


def test_extreme_logits():
    """Logits of +-1e4 in float32: one path dominates; the loss matches the float64 reference
    (which works in log space) and every gradient is finite."""
    logits, logit_paddings, labels, label_paddings = batch(seed=6)
    logits = 1e4 * np.sign(logits).astype(np.float32)
    loss, grad = jax.value_and_grad(lambda x: jnp.sum(ctc_loss(x, logit_paddings, labels, label_paddings)))(logits)
    want = L.ctc_reference(logits, logit_paddings, labels, label_paddings)[0]
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(float(loss), want.sum(), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_labels_that_no_alignment_fits():
    """Three equal labels need five frames; with four, the loss is near -log_epsilon, finite, and
    so is its gradient."""
    logits = np.random.default_rng(7).standard_normal((1, 4, 3)).astype(np.float32)
    for log_epsilon in (-1e5, -1e3):
        loss, grad = jax.value_and_grad(
            lambda x, e=log_epsilon: ctc_loss(
                x, np.zeros((1, 4)), np.array([[1, 1, 1]]), np.zeros((1, 3)), log_epsilon=e
            )[0]
        )(logits)
        assert -log_epsilon <= float(loss) < -log_epsilon + 100
        assert np.all(np.isfinite(np.asarray(grad)))


def test_no_labels():
    """An empty label sequence: the probability that every frame is blank."""
    logits, logit_paddings, _, _ = batch(seed=8)
    loss = ctc_loss(logits, logit_paddings, np.zeros((3, 0), np.int32), np.zeros((3, 0)))
    want = L.ctc_reference(logits, logit_paddings, np.zeros((3, 0), int), np.zeros((3, 0)))[0]
    np.testing.assert_allclose(np.asarray(loss), want, rtol=1e-5)


def test_jit():
    logits, logit_paddings, labels, label_paddings = batch(seed=9)
    want = L.ctc_reference(logits, logit_paddings, labels, label_paddings, 0)[0]
    got = jax.jit(ctc_loss_with_forward_probs)(logits, logit_paddings, labels, label_paddings)
    np.testing.assert_allclose(np.asarray(got[0]), want, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(jax.jit(ctc_loss)(logits, logit_paddings, labels, label_paddings)), want, rtol=1e-5
    )
    # under jit an out-of-range label cannot be refused: it gives NaN, not a silent number
    bad = labels.copy()
    bad[0, 0] = 7
    loss = np.asarray(jax.jit(ctc_loss)(logits, logit_paddings, bad, label_paddings))
    assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:]))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(labels=np.ones((3, 4), np.float32)), TypeError, "ctc_loss: labels must hold integer"),
        (dict(logits=np.zeros((3, 7))), ValueError, r"ctc_loss: logits must have shape \(batch, frames, classes\)"),
        (dict(logit_paddings=np.zeros((3, 6))), ValueError, "ctc_loss: logit_paddings has shape"),
        (dict(labels=np.ones((2, 4), np.int32)), ValueError, "ctc_loss: labels must have shape"),
        (dict(label_paddings=np.zeros((3, 3))), ValueError, "ctc_loss: label_paddings has shape"),
        (dict(labels=np.full((3, 4), 5)), ValueError, r"ctc_loss: labels\[0, 0\] is 5, outside the 5 classes"),
        (dict(blank_id=5), ValueError, "ctc_loss: blank_id must be an integer class index"),
        (dict(log_epsilon=1.0), ValueError, "ctc_loss: log_epsilon must be a finite negative number"),
        (dict(log_epsilon=-np.inf), ValueError, "ctc_loss: log_epsilon must be a finite negative number"),
        (dict(logits=np.zeros((3, 7, 5), np.complex64)), TypeError, "ctc_loss: logits must be real"),
    ],
)
def test_bad_inputs(change, error, match):
    logits, logit_paddings, labels, label_paddings = batch()
    args = dict(logits=logits, logit_paddings=logit_paddings, labels=labels, label_paddings=label_paddings) | change
    keywords = {k: args.pop(k) for k in ("blank_id", "log_epsilon") if k in args}
    with pytest.raises(error, match=match):
        ctc_loss(**args, **keywords)
    with pytest.raises(error, match=match.replace("ctc_loss", "ctc_loss_with_forward_probs")):
        ctc_loss_with_forward_probs(**args, **keywords)


def test_a_padded_label_may_hold_any_value():
    logits, logit_paddings, labels, label_paddings = batch()
    labels = np.where(label_paddings == 1, -1, labels)
    np.testing.assert_allclose(
        np.asarray(ctc_loss(logits, logit_paddings, labels, label_paddings)),
        L.ctc_reference(logits, logit_paddings, labels, label_paddings)[0],
        rtol=1e-5,
    )
