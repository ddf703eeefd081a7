"""The moment-based transforms, step by step against independent NumPy references.

Each transform is used on its own as the optimizer (``params += updates``), so
its raw output is what gets compared, for 12 steps, eagerly and under
``jax.jit``, in float32 and float64. The references live in ``references.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import references as R

# (transform, id, kwargs, float32 tolerance or None for the default)
CASES = [
    ("scale_by_adam", "default", dict(), None),
    ("scale_by_adam", "custom", dict(b1=0.8, b2=0.99, eps=1e-3, eps_root=1e-4), None),
    ("scale_by_adam", "nesterov", dict(nesterov=True), None),
    ("scale_by_adam", "nesterov_custom", dict(b1=0.7, b2=0.95, eps=1e-2, eps_root=1e-3, nesterov=True), None),
    ("scale_by_amsgrad", "default", dict(), None),
    ("scale_by_amsgrad", "custom", dict(b1=0.7, b2=0.9, eps=1e-3, eps_root=1e-4), None),
    ("scale_by_adamax", "default", dict(), None),
    ("scale_by_adamax", "custom", dict(b1=0.8, b2=0.95, eps=1e-2), None),
    ("scale_by_rms", "default", dict(), None),
    ("scale_by_rms", "initial_scale", dict(decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("scale_by_rms", "eps_outside_sqrt", dict(decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    ("scale_by_rms", "bias_correction", dict(decay=0.8, eps=1e-3, bias_correction=True), None),
    ("scale_by_rms", "all", dict(decay=0.95, eps=1e-2, initial_scale=0.2, eps_in_sqrt=False, bias_correction=True), None),
    ("scale_by_stddev", "default", dict(), None),
    ("scale_by_stddev", "initial_scale", dict(decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("scale_by_stddev", "eps_outside_sqrt", dict(decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    # With bias correction the first step has v_hat - m_hat^2 = g^2 - g^2 = 0, a
    # difference of two rounded numbers: in float32 (XLA may also fuse it into
    # an FMA) it is noise of ~6e-8 * g^2, up to ~1e-2 for the largest leaf here,
    # against eps = 1. So float32 only gets a loose check; float64 a tight one.
    ("scale_by_stddev", "bias_correction", dict(decay=0.9, eps=1.0, bias_correction=True), 1e-2),
    ("scale_by_stddev", "all_but_bias_correction", dict(decay=0.6, eps=1e-2, initial_scale=0.3, eps_in_sqrt=False), None),
    ("scale_by_rss", "default", dict(), None),
    ("scale_by_rss", "custom", dict(initial_accumulator_value=0.5, eps=1e-4), None),
    ("trace", "heavy_ball", dict(decay=0.9), None),
    ("trace", "nesterov", dict(decay=0.8, nesterov=True), None),
    ("trace", "zero_decay", dict(decay=0.0), None),
    ("ema", "debias", dict(decay=0.9), None),
    ("ema", "no_debias", dict(decay=0.7, debias=False), None),
    ("ema", "debias_slow", dict(decay=0.99, debias=True), None),
]

DTYPES = ["float32", "float64"]
MODES = R.MODES


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(CASES))
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    ref = R.check_transform(name, kwargs, f32_tol, dtype, mode)
    if name == "scale_by_amsgrad":
        # the gradients shrink at times, so the running max must have mattered
        assert R.find(ref, R.AMSGrad).max_was_active


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rss_zero_accumulator_gives_zero_update(dtype, mode):
    """AdaGrad with no initial accumulator and eps=0: where the sum of squares
    is still 0 (gradient exactly 0 so far) the update is 0, not 0/0 = nan."""
    tx = gradtx.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    ref = R.RSS(initial_accumulator_value=0.0, eps=0.0)
    R.run_against_reference(tx, ref, dtype, mode, zero_until=4)


# One representative per transform for the structural checks below.
BASIC = {
    "scale_by_adam": dict(),
    "scale_by_adam-nesterov": dict(nesterov=True),
    "scale_by_amsgrad": dict(),
    "scale_by_adamax": dict(),
    "scale_by_rms": dict(),
    "scale_by_stddev": dict(),
    "scale_by_rss": dict(),
    "trace": dict(decay=0.9),
    "trace-nesterov": dict(decay=0.9, nesterov=True),
    "ema": dict(decay=0.9),
}


def _make(key):
    name = key.split("-")[0]
    return name, getattr(gradtx, name)(**BASIC[key]), R.REF_TRANSFORMS[name](**BASIC[key])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BASIC))
def test_bfloat16_keeps_dtypes(key, mode):
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BASIC))
def test_bfloat16_stays_finite(key, mode):
    """With bfloat16 params the work must not overflow or divide by zero (a
    hyperparameter such as b2 = 0.999 rounds to 1.0 in bfloat16)."""
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BASIC))
def test_empty_tree(key, mode):
    _, tx, _ = _make(key)
    R.check_empty_tree(tx, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BASIC))
def test_none_leaf(key, mode):
    _, tx, ref = _make(key)
    R.check_none_leaf(tx, ref, mode)


# Accumulators held in bfloat16 while params are float32: one bfloat16 state
# leaf per parameter leaf, the state signature stays put, params stay float32,
# and the result is still the reference up to bfloat16 rounding of the state.
ACCUMULATOR_CASES = [
    ("scale_by_adam", "mu_dtype", dict(mu_dtype=jnp.bfloat16)),
    ("scale_by_adam", "nu_dtype", dict(nu_dtype=jnp.bfloat16, b2=0.9)),
    ("scale_by_amsgrad", "mu_dtype", dict(mu_dtype=jnp.bfloat16)),
    ("trace", "accumulator_dtype", dict(decay=0.9, accumulator_dtype=jnp.bfloat16)),
    ("ema", "accumulator_dtype", dict(decay=0.9, accumulator_dtype=jnp.bfloat16)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name,kwargs", [pytest.param(n, kw, id=f"{n}-{label}") for n, label, kw in ACCUMULATOR_CASES]
)
def test_accumulator_dtype(name, kwargs, mode):
    tx = getattr(gradtx, name)(**kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    n_bf16 = sum(jnp.asarray(x).dtype == jnp.bfloat16 for x in jax.tree.leaves(state))
    assert n_bf16 == len(jax.tree.leaves(params))
    # bfloat16 keeps 8 significant bits (relative rounding 2**-9 ~ 2e-3 per
    # store); over 12 steps the params drift by a few 1e-3 of their scale.
    R.run_against_reference(tx, R.REF_TRANSFORMS[name](**kwargs), "float32", mode, rtol=3e-2)


# ------------------------------------------------------- differentiating through an update


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "nadamw", "amsgrad"])
def test_meta_gradient_through_an_update_at_zero_gradients_is_finite_with_eps_root(name):
    """Meta-learning differentiates through ``update``: at a zero gradient the derivative of
    sqrt(v) is infinite, times a zero, unless ``eps_root > 0`` keeps the root away from 0."""
    params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)}
    target = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)}  # the inner loss is at its minimum

    def inner_loss(p):
        return sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)

    def outer(p, eps_root):
        tx = getattr(gradtx, name)(0.1, eps_root=eps_root)
        grads = jax.grad(inner_loss)(p)  # exactly zero here
        updates, _ = tx.update(grads, tx.init(p), p)
        stepped = gradtx.apply_updates(p, updates)
        return sum(jnp.sum(stepped[k] ** 2) for k in stepped)

    meta = jax.grad(outer)(params, 1e-8)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(meta)), meta
    # without eps_root the same derivative is not finite, which is what eps_root is for
    without = jax.grad(outer)(params, 0.0)
    assert not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(without))
