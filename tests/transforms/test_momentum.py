"""trace (heavy-ball and Nesterov momentum) and ema, step by step against independent NumPy references.

Each transform is used on its own as the optimizer (``params += updates``), so
its raw output is what gets compared, for 12 steps, eagerly and under
``jax.jit``, in float32 and float64. The references live in ``references/momentum.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R

# (transform, id, kwargs, float32 tolerance or None for the default)
CASES = [
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
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


# One representative per transform for the structural checks below.
BASIC = {
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
    ("trace", "accumulator_dtype", dict(decay=0.9, accumulator_dtype=jnp.bfloat16)),
    ("ema", "accumulator_dtype", dict(decay=0.9, accumulator_dtype=jnp.bfloat16)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,kwargs", [pytest.param(n, kw, id=f"{n}-{label}") for n, label, kw in ACCUMULATOR_CASES])
def test_accumulator_dtype(name, kwargs, mode):
    tx = getattr(gradtx, name)(**kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    n_bf16 = sum(jnp.asarray(x).dtype == jnp.bfloat16 for x in jax.tree.leaves(state))
    assert n_bf16 == len(jax.tree.leaves(params))
    # bfloat16 keeps 8 significant bits (relative rounding 2**-9 ~ 2e-3 per
    # store); over 12 steps the params drift by a few 1e-3 of their scale.
    R.run_against_reference(tx, R.REF_TRANSFORMS[name](**kwargs), "float32", mode, rtol=3e-2)
