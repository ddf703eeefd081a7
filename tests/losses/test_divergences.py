"""The KL divergences against float64 NumPy references: values with zero targets, the generalized
divergence of unnormalised measures, log targets of -inf, masks, gradients, and the deprecated name."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import losses

from references import losses as RL

RNG = np.random.default_rng(2)


def _log_q(*shape):
    return np.asarray(RL.log_softmax(2 * RNG.standard_normal(shape)), np.float32)


def _targets(*shape, zeros=True):
    t = RNG.random(shape)
    if zeros:
        t[RNG.random(shape) < 0.3] = 0.0
    return (t / t.sum(-1, keepdims=True)).astype(np.float32)


def test_kl_divergence_matches_reference():
    log_q, t = _log_q(5, 6), _targets(5, 6)
    np.testing.assert_allclose(losses.kl_divergence(log_q, t), RL.kl(log_q, t), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(losses.kl_divergence(log_q, t)) >= -1e-6)
    np.testing.assert_allclose(losses.kl_divergence(log_q, np.exp(log_q)), 0.0, atol=1e-5)
    grad = jax.grad(lambda x: losses.kl_divergence(x, t).sum())(log_q)
    np.testing.assert_allclose(grad, -t, rtol=1e-6)  # d/dlog q of -sum t log q
    grad_t = jax.grad(lambda y: losses.kl_divergence(log_q, y).sum())(t)
    assert np.all(np.isfinite(grad_t))


def test_kl_with_log_targets():
    log_q, t = _log_q(4, 5), _targets(4, 5)
    with np.errstate(divide="ignore"):
        log_t = np.log(t).astype(np.float32)
    got = losses.kl_divergence_with_log_targets(log_q, log_t)
    np.testing.assert_allclose(got, RL.kl(log_q, t), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: losses.kl_divergence_with_log_targets(log_q, x).sum())(log_t)
    assert np.all(np.isfinite(grad))


def test_generalized_kl_and_its_deprecated_name():
    log_q = (RNG.standard_normal((3, 4))).astype(np.float32)
    t = 3 * _targets(3, 4)
    expected = RL.generalized_kl(log_q, t)
    np.testing.assert_allclose(losses.generalized_kl_divergence(log_q, t), expected, rtol=1e-5, atol=1e-6)
    assert np.all(expected >= 0)
    with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
        old = gradtx.convex_kl_divergence(log_q, t)
    np.testing.assert_allclose(old, expected, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: losses.generalized_kl_divergence(x, t).sum())(log_q)
    np.testing.assert_allclose(grad, np.exp(log_q.astype(np.float64)) - t, rtol=1e-5, atol=1e-6)
    # normalised measures: the same as the KL divergence
    log_p, p = _log_q(2, 5), _targets(2, 5)
    np.testing.assert_allclose(losses.generalized_kl_divergence(log_p, p), RL.kl(log_p, p), rtol=1e-4, atol=1e-6)


def test_axis_and_where():
    log_q, t = _log_q(3, 4).T.copy(), _targets(3, 4).T.copy()
    np.testing.assert_allclose(losses.kl_divergence(log_q, t, axis=0), RL.kl(log_q, t, axis=0), rtol=1e-5, atol=1e-6)
    where = RNG.random((4, 3)) < 0.5
    got = losses.kl_divergence(log_q, t, axis=0, where=jnp.asarray(where))
    np.testing.assert_allclose(got, RL.kl(log_q, np.where(where, t, 0.0), axis=0), rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for fn in (losses.kl_divergence, losses.generalized_kl_divergence, losses.kl_divergence_with_log_targets):
            np.testing.assert_allclose(jax.jit(fn)(log_q, t), fn(log_q, t), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="kl_divergence: targets has shape \\(3,\\), log_predictions has shape"):
        losses.kl_divergence(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="kl_divergence_with_log_targets: where has shape"):
        losses.kl_divergence_with_log_targets(np.zeros((2, 3)), np.zeros((2, 3)), where=np.ones(3, bool))
