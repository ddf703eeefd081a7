"""ACProp (Zhuang et al. 2021): scale_by_acprop and acprop, in the paper's form (the default,
``numerator="momentum"``) and Optax's (``numerator="gradient"``), against the NumPy reference (12
steps on the nested test tree, float32 and float64, eager and jitted) and, in Optax's form, against
Optax, with their hyperparameters, errors and convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from gradtx.optimizers.acprop import acprop, scale_by_acprop

import references as R
from helpers import quadratic, run_problem
from references.acprop import ref_acprop, ref_scale_by_acprop

DTYPES = ["float32", "float64"]
GRADIENT = dict(numerator="gradient")  # Optax's form

# (id, factory, kwargs, reference, float32 rtol or None for references.RTOL, 2e-5; the largest
# relative difference seen in float32 was 1.2e-6 in the paper's form, 1.3e-6 in Optax's)
CASES = [
    ("scale_by_acprop-default", scale_by_acprop, dict(), ref_scale_by_acprop, None),
    ("scale_by_acprop-eps", scale_by_acprop, dict(b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4), ref_scale_by_acprop, None),
    ("scale_by_acprop-gradient", scale_by_acprop, GRADIENT, ref_scale_by_acprop, None),
    (
        "scale_by_acprop-gradient-eps",
        scale_by_acprop,
        dict(b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4, **GRADIENT),
        ref_scale_by_acprop,
        None,
    ),
    ("acprop-default", acprop, dict(), ref_acprop, None),
    (
        "acprop-decay_mask_schedule",
        acprop,
        dict(learning_rate=lambda t: 0.01 / (1.0 + t), weight_decay=0.1, mask=R.MASK_TREE),
        ref_acprop,
        None,
    ),
    ("acprop-gradient-decay", acprop, dict(learning_rate=0.01, weight_decay=0.1, **GRADIENT), ref_acprop, None),
]
# every case jitted in both dtypes; the first and the third also eagerly, in float32 (eager steps
# are slow)
RUNS = [(c, dtype, "jit") for c in CASES for dtype in DTYPES] + [(CASES[i], "float32", "eager") for i in (0, 2)]


@pytest.mark.parametrize(
    "make,kwargs,ref,f32_tol,dtype,mode", [pytest.param(*c[1:], d, m, id=f"{c[0]}-{d}-{m}") for c, d, m in RUNS]
)
def test_matches_reference(make, kwargs, ref, f32_tol, dtype, mode):
    R.run_against_reference(make(**kwargs), ref(**kwargs), dtype, mode, rtol=f32_tol if dtype == "float32" else None)


def _train(tx, steps=10):
    params = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, 2.0], [-1.0, 0.1]])}
    loss = lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(jnp.cos(p["b"]))  # noqa: E731
    p, state, update = params, tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        updates, state = update(jax.grad(loss)(p), state, p)
        p = jax.tree.map(lambda x, u: x + u, p, updates)
    return jax.tree.leaves(p)


def test_gradient_form_matches_optax_and_the_default_does_not():
    kwargs = dict(learning_rate=0.05, eps=1e-3, eps_root=1e-4, weight_decay=0.1)
    want = _train(optax.contrib.acprop(**kwargs))
    for a, b in zip(_train(acprop(**kwargs, numerator="gradient")), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(_train(acprop(**kwargs)), want))
    assert gap > 1e-3, gap  # the paper's form is another optimizer


def test_first_steps_and_state_paper_form():
    tx = scale_by_acprop(eps=0.1, eps_root=0.01)
    state = tx.init(jnp.zeros(2))
    assert state._fields == ("count", "mu", "nu", "hyperparams")
    g1, g2 = np.array([0.5, -2.0]), np.array([1.0, 1.0])
    u, state = tx.update(jnp.asarray(g1), state)
    np.testing.assert_allclose(u, g1, rtol=1e-6)  # no s_0: the bias-corrected m_1 = g_1, no eps
    m1 = 0.1 * g1
    s1 = 0.001 * (g1 - m1) ** 2 + 0.01  # centred on the new momentum m_1
    np.testing.assert_allclose(state.mu, m1, rtol=1e-6)
    np.testing.assert_allclose(state.nu, s1, rtol=1e-5)
    u, state = tx.update(jnp.asarray(g2), state)
    m2 = 0.9 * m1 + 0.1 * g2
    np.testing.assert_allclose(u, (m2 / (1 - 0.9**2)) / (np.sqrt(s1 / 0.001) + 0.1), rtol=1e-5)
    np.testing.assert_allclose(state.nu, 0.999 * s1 + 0.001 * (g2 - m2) ** 2 + 0.01, rtol=1e-5)


def test_first_steps_and_state_gradient_form():
    tx = scale_by_acprop(eps=0.1, eps_root=0.01, numerator="gradient")
    state = tx.init(jnp.zeros(2))
    u, state = tx.update(jnp.array([0.5, -2.0]), state)
    np.testing.assert_allclose(u, [0.5 / 1.1, -2.0 / 1.1], rtol=1e-6)  # no s_0: g / (1 + eps)
    np.testing.assert_allclose(state.nu, 0.001 * np.array([0.25, 4.0]) + 0.01, rtol=1e-5)  # centred on m_0 = 0
    u, state = tx.update(jnp.array([1.0, 1.0]), state)
    s1_hat = (0.001 * np.array([0.25, 4.0]) + 0.01) / 0.001  # the previous s, corrected by 1 - b2^1
    np.testing.assert_allclose(u, 1.0 / (np.sqrt(s1_hat) + 0.1), rtol=1e-5)
    np.testing.assert_allclose(state.mu, 0.9 * 0.1 * np.array([0.5, -2.0]) + 0.1, rtol=1e-6)


def test_hyperparams_are_readable_and_settable():
    params = R.param_tree(np.float32)
    grads = R.grad_trees(np.float32, steps=6)
    tx = acprop(0.01, weight_decay=0.01)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-16,
        "eps_root": 1e-16,
        "weight_decay": 0.01,
        "learning_rate": 0.01,
    }
    ref = ref_acprop(0.01, weight_decay=0.01)
    ref.init(R.leaves64(params))
    ref_params, p = R.leaves64(params), params
    update = jax.jit(tx.update)
    for step, g in enumerate(grads):
        if step == 3:
            state = gradtx.set_hyperparams(state, b2=0.9, learning_rate=0.05)
            ref.refs[0].b2 = 0.9
            ref.refs[2] = R.ScaleByLearningRate(0.05)
            ref.refs[2].init(ref_params)
        updates, state = update(g, state, p)
        p = gradtx.apply_updates(p, updates)
        ref_params = [x + u for x, u in zip(ref_params, ref.update(R.leaves64(g), ref_params))]
    for got, want in zip(jax.tree.leaves(p), ref_params):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_construction_and_update_errors():
    with pytest.raises(ValueError, match="^b1 must be in"):
        acprop(b1=1.0)
    with pytest.raises(ValueError, match="^b2 must be in"):
        scale_by_acprop(b2=-0.1)
    with pytest.raises(ValueError, match="^eps must be in"):
        scale_by_acprop(eps=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        acprop(-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        acprop(weight_decay=-1.0)
    with pytest.raises(TypeError, match="learning_rate must be"):
        acprop(None)
    with pytest.raises(ValueError, match="^numerator must be one of 'momentum', 'gradient'"):
        scale_by_acprop(numerator="moment")
    with pytest.raises(ValueError, match="^numerator must be one of"):
        acprop(numerator="optax")
    with pytest.raises(TypeError):
        scale_by_acprop(0.9, 0.999, 1e-16, 1e-16, "gradient")  # keyword only
    tx = acprop()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    with pytest.raises(ValueError, match="do not match"):
        scale_by_acprop().update(jnp.ones(3), scale_by_acprop().init(jnp.zeros(2)))


def test_jit_equals_eager_and_extra_args_are_ignored():
    params = R.param_tree(np.float32)
    tx = acprop(0.01, weight_decay=0.01)
    eager, jitted = (tx.init(params),) * 2
    pe = pj = params
    for g in R.grad_trees(np.float32, steps=5):
        ue, eager = tx.update(g, eager, pe, value=1.0, grad=g, value_fn=None, obj_fn=None, grad_fn=None)
        uj, jitted = jax.jit(tx.update)(g, jitted, pj, value=1.0)
        pe, pj = gradtx.apply_updates(pe, ue), gradtx.apply_updates(pj, uj)
    for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(pj)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_bfloat16_empty_tree_none_leaf_and_complex(mode):
    R.check_bfloat16(acprop(), mode)
    R.check_empty_tree(acprop(), mode)
    R.run_against_reference(
        scale_by_acprop(), ref_scale_by_acprop(), "float32", mode, steps=4, trees=(R.none_param_tree, R.none_grad_trees)
    )
    z = jnp.array([1.0 + 2.0j, -0.5j])
    state = scale_by_acprop().init(z)
    assert state.mu.dtype == jnp.complex64 and state.nu.dtype == jnp.float32  # |g - m|^2 is real


def test_zero_and_huge_gradients_stay_finite():
    tx = scale_by_acprop()
    params = {"w": jnp.ones(3)}
    for value in (0.0, 1e30):
        state = tx.init(params)
        for _ in range(3):
            u, state = jax.jit(tx.update)({"w": jnp.full(3, value)}, state, params)
            assert bool(jnp.all(jnp.isfinite(u["w"]))), (value, u)


@pytest.mark.parametrize("numerator", ["momentum", "gradient"])
def test_convergence(numerator):
    # the ill-conditioned quadratic (condition number 100, from x = 1), 200 steps (CPU, float32):
    # 124 -> 8.0e-8 in the paper's form, 1.1e-7 in Optax's
    initial, final, _ = run_problem(acprop(0.01, numerator=numerator), "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e6, (initial, final)


@pytest.mark.parametrize("numerator", ["momentum", "gradient"])
def test_the_registry_row_converges(numerator):
    # helpers' row acprop(0.05) on 0.5 ||x||^2 from the nested test tree (0.5 ||x_0||^2 = 34):
    # 100 steps end at 7.1e-4 in the paper's form, 1.2e-3 in Optax's (CPU, float32)
    tx, p = acprop(0.05, numerator=numerator), jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state, update = tx.init(p), jax.jit(tx.update)
    for _ in range(100):
        updates, state = update(jax.grad(quadratic)(p), state, p)
        p = gradtx.apply_updates(p, updates)
    assert float(quadratic(p)) < 4e-3, float(quadratic(p))
