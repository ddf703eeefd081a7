"""LaProp (Ziyin, Wang & Ueda 2020) step by step against the NumPy reference of
``references/laprop.py``, written from the paper's Algorithm 1: the gradient normalised by the
bias-corrected second moment first, then averaged into the momentum, whose own bias correction
is applied to the step.

12 steps on the nested tree of ``references``, in float32 and float64, under jit and eagerly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.laprop import ScaleByLapropState, laprop, scale_by_laprop

import references as R
from helpers import run_problem
from references.laprop import ref_laprop, ref_scale_by_laprop

DTYPES = ["float32", "float64"]
FACTORIES = {"scale_by_laprop": (scale_by_laprop, ref_scale_by_laprop), "laprop": (laprop, ref_laprop)}


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.05 / (1 + 0.1 * step)


CASES = [
    ("scale_by_laprop", "default", dict()),
    ("scale_by_laprop", "custom", dict(b1=0.5, b2=0.8, eps=1e-3)),
    # b1 > sqrt(b2), where Adam's bound fails and LaProp's does not
    ("scale_by_laprop", "high_momentum", dict(b1=0.99, b2=0.5)),
    ("laprop", "default", dict()),
    ("laprop", "schedule_decay_mask", dict(learning_rate=schedule, weight_decay=0.1, mask=R.MASK_TREE)),
]


# every row under jit; the first and last eagerly too (test_jit_equals_eager holds the rest)
RUNS = [(row, "jit") for row in CASES] + [(CASES[0], "eager"), (CASES[-1], "eager")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,mode", [pytest.param(n, kw, mode, id=f"{n}-{label}-{mode}") for (n, label, kw), mode in RUNS]
)
def test_matches_reference(name, kwargs, dtype, mode):
    make, make_ref = FACTORIES[name]
    R.run_against_reference(make(**kwargs), make_ref(**kwargs), dtype, mode, steps=12 if mode == "jit" else 10)


def test_first_steps_by_hand():
    tx = scale_by_laprop(b1=0.5, b2=0.75, eps=0.0)
    state = tx.init({"w": jnp.zeros(2)})
    assert isinstance(state, ScaleByLapropState) and state._fields == ("count", "mu", "nu", "hyperparams")
    u, state = tx.update({"w": jnp.array([2.0, -0.1])}, state)
    np.testing.assert_allclose(u["w"], [1.0, -1.0], rtol=1e-6)  # sign(g): both corrections exact at t = 1
    np.testing.assert_allclose(state.mu["w"], [0.5, -0.5], rtol=1e-6)  # (1 - b1) g / |g|, uncorrected
    np.testing.assert_allclose(state.nu["w"], [1.0, 0.0025], rtol=1e-6)  # (1 - b2) g^2
    u, state = tx.update({"w": jnp.array([2.0, 0.1])}, state)
    n_hat = (0.75 * np.array([1.0, 0.0025]) + 0.25 * np.array([4.0, 0.01])) / (1 - 0.75**2)
    m = 0.5 * np.array([0.5, -0.5]) + 0.5 * np.array([2.0, 0.1]) / np.sqrt(n_hat)
    np.testing.assert_allclose(u["w"], m / (1 - 0.5**2), rtol=1e-6)


def test_hyperparams_are_readable_and_settable():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = [
        {"w": jnp.array([0.3, -1.0]), "b": jnp.array([2.0])},
        {"w": jnp.array([-0.5, 0.2]), "b": jnp.array([1.0])},
        {"w": jnp.array([0.1, 0.4]), "b": jnp.array([-3.0])},
    ]
    tx = laprop(0.1, weight_decay=0.01)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-15,
        "weight_decay": 0.01,
        "learning_rate": 0.1,
    }
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, b1=0.5, b2=0.9, learning_rate=0.3, weight_decay=0.2)
    got, _ = update(grads[2], state, params)

    leaves = R.leaves64
    ref = ref_laprop(0.1, weight_decay=0.01)
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    laprop_ref, decay, _ = ref.refs
    laprop_ref.b1, laprop_ref.b2, decay.weight_decay = 0.5, 0.9, 0.2
    direction = decay.update(laprop_ref.update(leaves(grads[2]), leaves(params)), leaves(params))
    for g, d in zip(leaves(got), direction):
        np.testing.assert_allclose(g, -0.3 * d, rtol=1e-5)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b2 must be in \[0.0, 1.0\), got 1.0"):
        laprop(b2=1.0)
    with pytest.raises(ValueError, match="^b1 must be in"):
        scale_by_laprop(b1=-0.1)
    with pytest.raises(ValueError, match=r"^eps must be in \[0.0, inf\)"):
        scale_by_laprop(eps=-1e-8)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        laprop(-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        laprop(weight_decay=-0.1)
    with pytest.raises(TypeError, match="^b1 must be a number or an array"):
        scale_by_laprop(b1=lambda t: 0.9)


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones(3)}
    tx = laprop()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, state, params)
    with pytest.raises(ValueError, match="^add_decayed_weights needs the parameters"):
        tx.update(params, state)
    tx.update(params, state, params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)
    scale_by_laprop().update(params, scale_by_laprop().init(params))  # the direction needs no parameters


def test_jit_equals_eager():
    tx = laprop(0.05, b1=0.8, b2=0.9, weight_decay=0.1)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(R.grad_trees(np.float32, 6)))


def test_bfloat16_empty_tree_and_dtypes():
    R.check_bfloat16(laprop(0.01), "jit", steps=6)
    R.check_empty_tree(laprop(), "jit")
    state = scale_by_laprop(mu_dtype=jnp.bfloat16).init({"w": jnp.ones(3, jnp.float16)})
    assert state.mu["w"].dtype == jnp.bfloat16 and state.nu["w"].dtype == jnp.float32
    state = scale_by_laprop().init({"z": jnp.ones(2, jnp.complex64)})
    assert state.mu["z"].dtype == jnp.complex64 and state.nu["z"].dtype == jnp.float32


def test_huge_tiny_and_zero_gradients_stay_finite():
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "s": jnp.asarray(0.5)}
    tx = laprop(0.1)
    update = jax.jit(tx.update)
    for scale in (0.0, 1e-30, 1e30):
        state = tx.init(params)
        for sign in (1.0, -0.5, 1.0):
            grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
            updates, state = update(grads, state, params)
            assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), (scale, updates)


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100), 300 steps: from 124 to 5.7e-13
    # on CPU in float32
    initial, final, _ = run_problem(laprop(0.05), "quadratic", 300)
    assert np.isfinite(final) and final <= 1e-10 * initial, (initial, final)
    # Rosenbrock from (-1.5, 2), 1000 steps, with b1 = 0.99 > sqrt(b2) = 0.95: 12.5 to 3.8e-5
    initial, final, _ = run_problem(laprop(0.01, b1=0.99, b2=0.9), "rosenbrock", 1000)
    assert np.isfinite(final) and final <= 1e-4, (initial, final)
