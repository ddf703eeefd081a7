"""sgd (plain, heavy-ball and Nesterov momentum) and noisy_sgd, step by step against independent
NumPy references.

Each runs for 12 steps on a nested tree (dicts, a list, a tuple, a 0-d and a 4-d leaf), eagerly
and under ``jax.jit``, in float32 and float64, and its params are compared after every step with
the references of ``references/sgd.py`` and ``references/regularizers.py`` (whose noise is drawn
with ``jax.random`` from the same key, in the documented order). noisy_sgd also runs on the
convergence benchmark and on zero, tiny and huge gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem
from references.regularizers import AddNoise

DTYPES = ["float32", "float64"]
MODES = R.MODES


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.1 / (1 + step)


# (optimizer, id, kwargs, float32 tolerance or None for the default)
CASES = [
    ("sgd", "plain", dict(learning_rate=0.1), None),
    ("sgd", "momentum", dict(learning_rate=0.05, momentum=0.9), None),
    ("sgd", "nesterov", dict(learning_rate=0.05, momentum=0.9, nesterov=True), None),
    ("sgd", "schedule_momentum", dict(learning_rate=schedule, momentum=0.5), None),
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
    R.run_against_reference(tx, ref, dtype, mode, rtol=rtol)


# One representative configuration for the structural checks, with momentum so that it acts.
BASIC = {
    "sgd": dict(learning_rate=0.1, momentum=0.9),
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


# ------------------------------------------------------------------ noisy_sgd

NOISY_CASES = [
    (
        "noisy_sgd",
        "default",
        lambda: gradtx.noisy_sgd(key=jax.random.key(1)),
        lambda dtype: R.Chain(AddNoise(0.01, 0.55, jax.random.key(1), dtype), R.ScaleByLearningRate(1e-3)),
    ),
    (
        "noisy_sgd",
        "custom",
        lambda: gradtx.noisy_sgd(lambda t: 0.1 / (1 + t), eta=0.5, gamma=1.0, seed=5),
        lambda dtype: R.Chain(
            AddNoise(0.5, 1.0, jax.random.key(5), dtype), R.ScaleByLearningRate(lambda t: 0.1 / (1 + t))
        ),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,ref", [pytest.param(m, r, id=f"{n}-{label}") for n, label, m, r in NOISY_CASES])
def test_noisy_sgd_matches_reference(make, ref, dtype, mode):
    R.run_against_reference(make(), ref(R.DTYPES[dtype]), dtype, mode)


NOISY = {
    "noisy_sgd": lambda: gradtx.noisy_sgd(key=jax.random.key(0)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(NOISY))
def test_noisy_sgd_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(NOISY[name], mode)


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(NOISY))
def test_noisy_sgd_edge_cases_stay_finite(name, scale):
    check_edge_cases(NOISY[name], scale, apply=True)


# (problem, learning rate, steps, factor) for noisy_sgd with its default noise
# (eta 0.01, gamma 0.55); the factors reached (CPU, float32) are noted.
CONVERGENCE = [
    ("quadratic", 0.01, 200, 1e3),  # reached 1.2e4 (the noise floor, not the rate, limits it)
    ("rosenbrock", 1e-3, 2000, 15.0),  # reached 64
    ("digits", 3.0, 200, 5.0),  # reached 14
]


@pytest.mark.parametrize("problem,lr,steps,factor", CONVERGENCE)
def test_noisy_sgd_convergence(problem, lr, steps, factor):
    initial, final, _ = run_problem(gradtx.noisy_sgd(lr, key=jax.random.key(0)), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
