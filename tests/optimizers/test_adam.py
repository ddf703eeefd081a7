"""Adam, AdamW, NAdam, NAdamW, AMSGrad, AdaMax and AdaMaxW, and their scale_by_* blocks, step by step
against independent NumPy references.

Each block is used on its own as the optimizer (``params += updates``), so its raw output is what
gets compared; each named optimizer runs as it is. Both run for 12 steps on a nested tree (dicts,
a list, a tuple, a 0-d and a 4-d leaf), eagerly and under ``jax.jit``, in float32 and float64, and
their params are compared after every step with the references of ``references/adam.py``
(written from the papers' equations, not from any library).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R

DTYPES = ["float32", "float64"]
MODES = R.MODES


# ------------------------------------------------------------------ the scale_by_* blocks

# (transform, id, kwargs, float32 tolerance or None for the default)
BLOCK_CASES = [
    ("scale_by_adam", "default", dict(), None),
    ("scale_by_adam", "custom", dict(b1=0.8, b2=0.99, eps=1e-3, eps_root=1e-4), None),
    ("scale_by_adam", "nesterov", dict(nesterov=True), None),
    ("scale_by_adam", "nesterov_custom", dict(b1=0.7, b2=0.95, eps=1e-2, eps_root=1e-3, nesterov=True), None),
    ("scale_by_amsgrad", "default", dict(), None),
    ("scale_by_amsgrad", "custom", dict(b1=0.7, b2=0.9, eps=1e-3, eps_root=1e-4), None),
    ("scale_by_amsgrad", "uncorrected", dict(b1=0.7, b2=0.9, bias_correction_mu=False, bias_correction_nu=False), None),
    ("scale_by_amsgrad", "uncorrected_nu", dict(b2=0.9, bias_correction_nu=False), None),
    ("scale_by_adamax", "default", dict(), None),
    ("scale_by_adamax", "custom", dict(b1=0.8, b2=0.95, eps=1e-2), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(BLOCK_CASES))
def test_block_matches_reference(name, kwargs, f32_tol, dtype, mode):
    ref = R.check_transform(name, kwargs, f32_tol, dtype, mode)
    if name == "scale_by_amsgrad":
        # the gradients shrink at times, so the running max must have mattered
        assert R.find(ref, R.AMSGrad).max_was_active


# One representative per block for the structural checks below.
BLOCKS = {
    "scale_by_adam": dict(),
    "scale_by_adam-nesterov": dict(nesterov=True),
    "scale_by_amsgrad": dict(),
    "scale_by_adamax": dict(),
}


def _make(key):
    name = key.split("-")[0]
    return name, getattr(gradtx, name)(**BLOCKS[key]), R.REF_TRANSFORMS[name](**BLOCKS[key])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_bfloat16_keeps_dtypes(key, mode):
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_bfloat16_stays_finite(key, mode):
    """With bfloat16 params the work must not overflow or divide by zero (a
    hyperparameter such as b2 = 0.999 rounds to 1.0 in bfloat16)."""
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_empty_tree(key, mode):
    _, tx, _ = _make(key)
    R.check_empty_tree(tx, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_none_leaf(key, mode):
    _, tx, ref = _make(key)
    R.check_none_leaf(tx, ref, mode)


# Accumulators held in bfloat16 while params are float32: one bfloat16 state
# leaf per parameter leaf, the state signature stays put, params stay float32,
# and the result is still the reference up to bfloat16 rounding of the state.
BLOCK_ACCUMULATOR_CASES = [
    ("scale_by_adam", "mu_dtype", dict(mu_dtype=jnp.bfloat16)),
    ("scale_by_adam", "nu_dtype", dict(nu_dtype=jnp.bfloat16, b2=0.9)),
    ("scale_by_amsgrad", "mu_dtype", dict(mu_dtype=jnp.bfloat16)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name,kwargs", [pytest.param(n, kw, id=f"{n}-{label}") for n, label, kw in BLOCK_ACCUMULATOR_CASES]
)
def test_block_accumulator_dtype(name, kwargs, mode):
    tx = getattr(gradtx, name)(**kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    n_bf16 = sum(jnp.asarray(x).dtype == jnp.bfloat16 for x in jax.tree.leaves(state))
    assert n_bf16 == len(jax.tree.leaves(params))
    # bfloat16 keeps 8 significant bits (relative rounding 2**-9 ~ 2e-3 per
    # store); over 12 steps the params drift by a few 1e-3 of their scale.
    R.run_against_reference(tx, R.REF_TRANSFORMS[name](**kwargs), "float32", mode, rtol=3e-2)


# ------------------------------------------------------------------ the named optimizers


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.1 / (1 + step)


# (optimizer, id, kwargs, float32 tolerance or None for the default)
CASES = [
    ("adam", "default", dict(), None),
    ("adam", "custom", dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-3, eps_root=1e-4), None),
    ("adam", "nesterov", dict(learning_rate=0.05, eps=1e-4, nesterov=True), None),
    ("adam", "schedule", dict(learning_rate=schedule), None),
    ("adamw", "default", dict(), None),
    ("adamw", "decay", dict(learning_rate=0.05, weight_decay=0.1), None),
    ("adamw", "mask_tree", dict(learning_rate=0.05, b1=0.8, weight_decay=0.5, mask=R.MASK_TREE), None),
    ("adamw", "mask_fn", dict(learning_rate=0.05, weight_decay=0.5, mask=R.mask_matrices), None),
    ("adamw", "nesterov", dict(learning_rate=0.05, eps=1e-3, eps_root=1e-4, weight_decay=0.2, nesterov=True), None),
    ("adamw", "schedule", dict(learning_rate=schedule, weight_decay=0.3), None),
    ("nadam", "default", dict(), None),
    ("nadam", "custom", dict(learning_rate=0.05, b1=0.85, b2=0.98, eps=1e-3, eps_root=1e-5), None),
    ("nadam", "schedule", dict(learning_rate=schedule), None),
    ("nadam", "no_nesterov", dict(learning_rate=0.05, nesterov=False), None),
    ("nadamw", "no_nesterov", dict(learning_rate=0.05, weight_decay=0.2, nesterov=False), None),
    ("nadamw", "decay", dict(learning_rate=0.05, weight_decay=0.2), None),
    ("nadamw", "mask_tree", dict(learning_rate=0.05, b2=0.95, eps=1e-3, weight_decay=0.5, mask=R.MASK_TREE), None),
    ("amsgrad", "default", dict(), None),
    ("amsgrad", "custom", dict(learning_rate=0.05, b1=0.7, b2=0.9, eps=1e-3, eps_root=1e-4), None),
    (
        "amsgrad",
        "uncorrected",
        dict(learning_rate=0.05, b2=0.9, bias_correction_mu=False, bias_correction_nu=False),
        None,
    ),
    ("adamax", "default", dict(), None),
    ("adamax", "custom", dict(learning_rate=0.05, b1=0.8, b2=0.95, eps=1e-2), None),
    ("adamaxw", "decay", dict(learning_rate=0.05, weight_decay=0.1), None),
    ("adamaxw", "mask_fn", dict(learning_rate=schedule, b2=0.9, weight_decay=0.5, mask=R.mask_matrices), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,f32_tol",
    [pytest.param(n, kw, tol, id=f"{n}-{label}") for n, label, kw, tol in CASES],
)
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    tx = getattr(gradtx, name)(**kwargs)
    ref = R.REF_OPTIMIZERS[name](**kwargs)
    rtol = f32_tol if (dtype == "float32" and f32_tol) else None
    ref = R.run_against_reference(tx, ref, dtype, mode, rtol=rtol)
    if name == "amsgrad":
        assert R.find(ref, R.AMSGrad).max_was_active


# One representative configuration per optimizer for the structural checks,
# with enough learning rate / weight decay that every part of it acts.
BASIC = {
    "adam": dict(learning_rate=0.05),
    "adamw": dict(learning_rate=0.05, weight_decay=0.1),
    "nadam": dict(learning_rate=0.05),
    "nadamw": dict(learning_rate=0.05, weight_decay=0.1),
    "amsgrad": dict(learning_rate=0.05),
    "adamax": dict(learning_rate=0.05),
    "adamaxw": dict(learning_rate=0.05, weight_decay=0.1),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_keeps_dtypes(name, mode):
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_stays_finite(name, mode):
    """With bfloat16 params the work must not overflow or divide by zero (a
    hyperparameter such as b2 = 0.999 rounds to 1.0 in bfloat16)."""
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_empty_tree(name, mode):
    R.check_empty_tree(getattr(gradtx, name)(**BASIC[name]), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_none_leaf(name, mode):
    """``{"a": array, "b": None}``: "b" stays None, "a" follows the reference."""
    R.check_none_leaf(getattr(gradtx, name)(**BASIC[name]), R.REF_OPTIMIZERS[name](**BASIC[name]), mode)


# Accumulators in bfloat16 for float32 params.
ACCUMULATOR_CASES = [
    ("adam", dict(learning_rate=0.05, mu_dtype=jnp.bfloat16)),
    ("adamw", dict(learning_rate=0.05, weight_decay=0.1, mu_dtype=jnp.bfloat16)),
    ("nadam", dict(learning_rate=0.05, mu_dtype=jnp.bfloat16)),
    ("nadamw", dict(learning_rate=0.05, weight_decay=0.1, mu_dtype=jnp.bfloat16)),
    ("amsgrad", dict(learning_rate=0.05, mu_dtype=jnp.bfloat16)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,kwargs", [pytest.param(n, kw, id=n) for n, kw in ACCUMULATOR_CASES])
def test_accumulator_dtype(name, kwargs, mode):
    """One bfloat16 state leaf per parameter leaf, a stable state signature,
    float32 params, and the reference up to bfloat16 rounding of the state
    (8 significant bits: ~2e-3 per store, a few 1e-3 after 12 steps)."""
    tx = getattr(gradtx, name)(**kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    n_bf16 = sum(jnp.asarray(x).dtype == jnp.bfloat16 for x in jax.tree.leaves(state))
    assert n_bf16 == len(jax.tree.leaves(params))
    R.run_against_reference(tx, R.REF_OPTIMIZERS[name](**kwargs), "float32", mode, rtol=3e-2)


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
