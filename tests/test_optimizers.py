"""The named optimizers, step by step against independent NumPy references.

Each optimizer runs for 12 steps on a nested tree (dicts, a list, a tuple, a
0-d and a 4-d leaf), eagerly and under ``jax.jit``, in float32 and float64, and
its params are compared after every step with the reference optimizers of
``references.py`` (written from the papers' equations, not from any library).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import references as R


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.1 / (1 + step)


# (optimizer, id, kwargs, float32 tolerance or None for the default)
CASES = [
    ("sgd", "plain", dict(learning_rate=0.1), None),
    ("sgd", "momentum", dict(learning_rate=0.05, momentum=0.9), None),
    ("sgd", "nesterov", dict(learning_rate=0.05, momentum=0.9, nesterov=True), None),
    ("sgd", "schedule_momentum", dict(learning_rate=schedule, momentum=0.5), None),
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
    ("nadamw", "decay", dict(learning_rate=0.05, weight_decay=0.2), None),
    ("nadamw", "mask_tree", dict(learning_rate=0.05, b2=0.95, eps=1e-3, weight_decay=0.5, mask=R.MASK_TREE), None),
    ("amsgrad", "default", dict(), None),
    ("amsgrad", "custom", dict(learning_rate=0.05, b1=0.7, b2=0.9, eps=1e-3, eps_root=1e-4), None),
    ("adamax", "default", dict(), None),
    ("adamax", "custom", dict(learning_rate=0.05, b1=0.8, b2=0.95, eps=1e-2), None),
    ("adamaxw", "decay", dict(learning_rate=0.05, weight_decay=0.1), None),
    ("adamaxw", "mask_fn", dict(learning_rate=schedule, b2=0.9, weight_decay=0.5, mask=R.mask_matrices), None),
    ("rmsprop", "default", dict(), None),
    ("rmsprop", "custom", dict(learning_rate=0.02, decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("rmsprop", "eps_outside_sqrt", dict(learning_rate=0.02, decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    ("rmsprop", "bias_correction", dict(learning_rate=0.02, decay=0.8, eps=1e-3, bias_correction=True), None),
    ("rmsprop", "momentum", dict(learning_rate=0.02, momentum=0.9), None),
    ("rmsprop", "nesterov", dict(learning_rate=0.02, decay=0.8, momentum=0.8, nesterov=True), None),
    ("rmsprop", "centered", dict(learning_rate=0.02, centered=True), None),
    ("rmsprop", "centered_momentum", dict(learning_rate=0.02, decay=0.8, eps=1e-3, centered=True, momentum=0.9), None),
    ("rmsprop", "centered_nesterov_schedule",
     dict(learning_rate=schedule, decay=0.7, eps=1e-2, eps_in_sqrt=False, initial_scale=0.3, centered=True,
          momentum=0.7, nesterov=True), None),
    # Centred with bias correction: the first step has v_hat - m_hat^2 = 0 up to
    # float32 rounding noise (~6e-8 g^2, up to ~1e-2 here) against eps = 1, so
    # float32 gets a loose check and float64 the tight one (see test_moments).
    ("rmsprop", "centered_bias_correction",
     dict(learning_rate=0.02, eps=1.0, centered=True, bias_correction=True, momentum=0.9), 1e-2),
    ("adagrad", "default", dict(), None),
    ("adagrad", "custom", dict(learning_rate=0.1, initial_accumulator_value=0.5, eps=1e-4), None),
    ("adagrad", "schedule", dict(learning_rate=schedule, initial_accumulator_value=0.0, eps=1e-6), None),
]

DTYPES = ["float32", "float64"]
MODES = R.MODES


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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_zero_accumulator(dtype, mode):
    """No initial accumulator, eps = 0 and gradients that are exactly 0 for a
    while: those entries get a 0 update (not 0/0 = nan)."""
    kwargs = dict(learning_rate=0.1, initial_accumulator_value=0.0, eps=0.0)
    R.run_against_reference(gradtx.adagrad(**kwargs), R.ref_adagrad(**kwargs), dtype, mode, zero_until=4)


# One representative configuration per optimizer for the structural checks,
# with enough learning rate / weight decay that every part of it acts.
BASIC = {
    "sgd": dict(learning_rate=0.1, momentum=0.9),
    "adam": dict(learning_rate=0.05),
    "adamw": dict(learning_rate=0.05, weight_decay=0.1),
    "nadam": dict(learning_rate=0.05),
    "nadamw": dict(learning_rate=0.05, weight_decay=0.1),
    "amsgrad": dict(learning_rate=0.05),
    "adamax": dict(learning_rate=0.05),
    "adamaxw": dict(learning_rate=0.05, weight_decay=0.1),
    "rmsprop": dict(learning_rate=0.02, centered=True, momentum=0.9),
    "adagrad": dict(learning_rate=0.1),
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
    ("sgd", dict(learning_rate=0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)),
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
