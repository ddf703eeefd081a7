"""MADGRAD (Defazio & Jelassi 2021): scale_by_madgrad and madgrad against the NumPy reference of
Algorithm 1 (12 steps on the nested test tree, float32 and float64, eager and jitted), its
hyperparameters, errors and convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from gradtx.optimizers.madgrad import MadgradState, madgrad, scale_by_madgrad

import references as R
from helpers import run_problem
from references.madgrad import ref_madgrad, ref_scale_by_madgrad

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]

# (id, factory, kwargs, reference, float32 rtol or None for references.RTOL, 2e-5; the largest
# relative difference seen in float32 was 2e-6)
CASES = [
    ("scale_by_madgrad-default", scale_by_madgrad, dict(), ref_scale_by_madgrad, None),
    (
        "scale_by_madgrad-no_momentum",
        scale_by_madgrad,
        dict(learning_rate=0.05, momentum=0.0, eps=1e-3),
        ref_scale_by_madgrad,
        None,
    ),
    (
        "scale_by_madgrad-schedule",
        scale_by_madgrad,
        dict(learning_rate=lambda t: 0.02 / (1.0 + t), momentum=0.5),
        ref_scale_by_madgrad,
        None,
    ),
    ("madgrad-weight_decay", madgrad, dict(learning_rate=0.03, weight_decay=0.1), ref_madgrad, None),
]


# every case jitted in both dtypes; the first also eagerly, in float32 (eager steps are slow)
RUNS = [(c, dtype, "jit") for c in CASES for dtype in DTYPES] + [(CASES[0], "float32", "eager")]


@pytest.mark.parametrize(
    "make,kwargs,ref,f32_tol,dtype,mode", [pytest.param(*c[1:], d, m, id=f"{c[0]}-{d}-{m}") for c, d, m in RUNS]
)
def test_matches_reference(make, kwargs, ref, f32_tol, dtype, mode):
    R.run_against_reference(make(**kwargs), ref(**kwargs), dtype, mode, rtol=f32_tol if dtype == "float32" else None)


def test_add_eps_to_learning_rate_gives_optax_steps():
    """The authors' code and Optax use lambda_k = (gamma_k + eps) sqrt(k + 1); the keyword gives that."""
    kwargs = dict(learning_rate=0.05, eps=0.01)
    R.run_against_reference(
        scale_by_madgrad(**kwargs, add_eps_to_learning_rate=True),
        ref_scale_by_madgrad(0.06, eps=0.01),
        "float64",
        "jit",
    )
    params = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, 2.0], [-1.0, 0.1]])}
    loss = lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(jnp.cos(p["b"]))  # noqa: E731
    runs = []
    for tx in (
        madgrad(**kwargs, weight_decay=0.1, add_eps_to_learning_rate=True),
        optax.contrib.madgrad(**kwargs, weight_decay=0.1),
    ):
        p, state, update = params, tx.init(params), jax.jit(tx.update)
        for _ in range(10):
            updates, state = update(jax.grad(loss)(p), state, p)
            p = jax.tree.map(lambda x, u: x + u, p, updates)
        runs.append(p)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_first_step_and_state():
    w = jnp.array([1.0, 1.0, 2.0])
    tx = scale_by_madgrad(1.0, momentum=0.0, eps=0.0)
    state = tx.init(w)
    assert isinstance(state, MadgradState) and state._fields == ("count", "grad_sum_sq", "s", "x0", "hyperparams")
    u, state = tx.update(jnp.array([8.0, -1.0, 0.0]), state, w)
    np.testing.assert_allclose(u, [-2.0, 1.0, 0.0])  # z_1 = x_0 - g / |g|^(2/3); a zero gradient stays at x_0
    np.testing.assert_array_equal(state.x0, w)
    assert int(state.count) == 1
    # momentum 0.9: the step is c = 0.1 of the way to z_1
    tx = scale_by_madgrad(1.0, eps=0.0)
    u, _ = tx.update(jnp.array([8.0, -1.0, 0.0]), tx.init(w), w)
    np.testing.assert_allclose(u, [-0.2, 0.1, 0.0], rtol=1e-6)


def test_hyperparams_are_readable_and_settable():
    params = R.param_tree(np.float32)
    grads = R.grad_trees(np.float32, steps=6)
    tx = madgrad(0.02, weight_decay=0.01)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {"weight_decay": 0.01, "learning_rate": 0.02, "momentum": 0.9, "eps": 1e-6}
    ref = ref_madgrad(0.02, weight_decay=0.01)
    ref.init(R.leaves64(params))
    ref_params, p = R.leaves64(params), params
    update = jax.jit(tx.update)
    for step, g in enumerate(grads):
        if step == 3:
            state = gradtx.set_hyperparams(state, learning_rate=0.1, momentum=0.5)
            ref.refs[1].lr, ref.refs[1].momentum = 0.1, 0.5
            assert gradtx.hyperparams(state)["learning_rate"] == 0.1
        updates, state = update(g, state, p)
        p = gradtx.apply_updates(p, updates)
        ref_params = [x + u for x, u in zip(ref_params, ref.update(R.leaves64(g), ref_params))]
    for got, want in zip(jax.tree.leaves(p), ref_params):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_construction_and_update_errors():
    with pytest.raises(ValueError, match="^momentum must be in"):
        madgrad(momentum=1.0)
    with pytest.raises(ValueError, match="^eps must be in"):
        scale_by_madgrad(eps=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        madgrad(-0.1)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        madgrad(weight_decay=-1.0)
    with pytest.raises(TypeError, match="momentum must be a number"):
        scale_by_madgrad(momentum=lambda t: 0.9)
    tx = scale_by_madgrad()
    with pytest.raises(ValueError, match="scale_by_madgrad needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    with pytest.raises(ValueError, match="do not match"):
        tx.update(jnp.ones(3), tx.init(jnp.zeros(2)), jnp.zeros(3))


def test_jit_equals_eager_and_extra_args_are_ignored():
    params = R.param_tree(np.float32)
    tx = madgrad(0.05, weight_decay=0.01)
    eager, jitted = (tx.init(params),) * 2
    pe = pj = params
    for g in R.grad_trees(np.float32, steps=5):
        ue, eager = tx.update(g, eager, pe, value=1.0, grad=g, value_fn=None, obj_fn=None, grad_fn=None)
        uj, jitted = jax.jit(tx.update)(g, jitted, pj, value=1.0)
        pe, pj = gradtx.apply_updates(pe, ue), gradtx.apply_updates(pj, uj)
    for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(pj)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_empty_tree_none_leaf_and_complex(mode):
    R.check_bfloat16(madgrad(), mode)
    R.check_empty_tree(madgrad(), mode)
    R.run_against_reference(
        scale_by_madgrad(),
        ref_scale_by_madgrad(),
        "float32",
        mode,
        steps=4,
        trees=(R.none_param_tree, R.none_grad_trees),
    )
    # complex parameters: |g|^2 is real, s complex; |z|^2 is minimized
    z = jnp.array([1.0 + 2.0j, -0.5j])
    tx = madgrad(0.1)
    state = tx.init(z)
    assert state[1].grad_sum_sq.dtype == jnp.float32 and state[1].s.dtype == jnp.complex64
    update = jax.jit(tx.update)
    for _ in range(300):
        updates, state = update(z, state, z)  # the gradient of |z|^2 / 2 in JAX's convention (conj)
        z = gradtx.apply_updates(z, updates)
    assert float(jnp.max(jnp.abs(z))) < 1e-2, z


def test_convergence():
    # the ill-conditioned quadratic (condition number 100, from x = 1): 124 -> 4.5e-13 (CPU, float32)
    initial, final, _ = run_problem(madgrad(0.1), "quadratic", 300)
    assert np.isfinite(final) and initial / final >= 1e5, (initial, final)
