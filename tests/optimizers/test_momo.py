"""MoMo and MoMo-Adam (Schaipp et al. 2023): 12 steps on a fixed loss (value and gradient computed
here, in NumPy for the reference of Algorithms 1 and 2 and by ``jax.value_and_grad`` for gradtx),
float32 and float64, eager and jitted; the lower-bound estimate, Optax's steps, the
hyperparameters, errors and convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from gradtx.optimizers.momo import MomoAdamState, MomoState, momo, momo_adam

import references as R
from helpers import run_problem
from references.momo import ref_momo, ref_momo_adam

# ------------------------------------------------------------------ the loss

SHAPES = {"w": (3, 4), "b": (4,), "s": ()}
_rng = np.random.default_rng(3)
TARGETS = {k: _rng.standard_normal(s) for k, s in SHAPES.items()}
CURVATURES = {k: np.exp(_rng.standard_normal(s)) for k, s in SHAPES.items()}


def start(dtype):
    rng = np.random.default_rng(4)
    return {k: np.asarray(2.0 * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}


def jax_loss(params, offset=0.0):
    """0.5 sum c (x - t)^2 + sum log cosh(x - t) + offset: >= offset, with its minimum at t."""
    total = offset
    for k, x in params.items():
        r = x - jnp.asarray(TARGETS[k], x.dtype)
        total = total + jnp.sum(0.5 * jnp.asarray(CURVATURES[k], x.dtype) * r**2 + jnp.log(jnp.cosh(r)))
    return total


def np_loss(leaves, offset=0.0):
    """The same loss and its gradient, in float64, on the leaves in tree order ("b", "s", "w")."""
    value, grads = offset, []
    for k, x in zip(sorted(SHAPES), leaves):
        r = x - TARGETS[k]
        value += float(np.sum(0.5 * CURVATURES[k] * r**2 + np.log(np.cosh(r))))
        grads.append(CURVATURES[k] * r + np.tanh(r))
    return value, grads


value_and_grad = jax.jit(jax.value_and_grad(jax_loss))


def run_against_reference(tx, ref, dtype_name, mode, steps=12, rtol=None, offset=0.0):
    """``tx`` and ``ref`` side by side on the loss; params and updates compared after every step."""
    rtol = R.RTOL[dtype_name] if rtol is None else rtol
    dtype = R.DTYPES[dtype_name]
    with R.precision(dtype_name):
        params = jax.tree.map(jnp.asarray, start(dtype))
        paths = R.leaf_paths(params)
        state = tx.init(params)
        signature = R.state_signature(state)
        update = jax.jit(tx.update) if mode == "jit" else tx.update
        ref_params = R.leaves64(start(dtype))
        ref.init(ref_params)
        param_scales = [float(np.max(np.abs(p))) for p in ref_params]
        update_scales = [0.0] * len(ref_params)
        for step in range(1, steps + 1):
            value, grads = value_and_grad(params, offset)
            updates, state = update(grads, state, params, value=value)
            params = gradtx.apply_updates(params, updates)
            ref_value, ref_grads = np_loss(ref_params, offset)
            ref_updates = ref.update(ref_grads, ref_params, ref_value)
            ref_params = [p + u for p, u in zip(ref_params, ref_updates)]
            assert R.state_signature(state) == signature, f"step {step}: state structure/dtypes changed"
            assert all(p.dtype == dtype for p in jax.tree.leaves(params))
            update_scales = [max(s, float(np.max(np.abs(u)))) for s, u in zip(update_scales, ref_updates)]
            param_scales = [max(s, float(np.max(np.abs(p)))) for s, p in zip(param_scales, ref_params)]
            R.assert_close_per_leaf(
                jax.tree.leaves(updates), ref_updates, update_scales, rtol, f"step {step}: updates", paths
            )
            R.assert_close_per_leaf(
                jax.tree.leaves(params), ref_params, param_scales, rtol, f"step {step}: params", paths
            )
            if getattr(ref, "adapt", False):
                np.testing.assert_allclose(float(state.lb), ref.lb, rtol=max(rtol, 1e-6), atol=rtol)
    return ref


# ------------------------------------------------------------ against the reference

# (id, factory, kwargs, reference, float32 rtol or None for references.RTOL, 2e-5, loss offset)
CASES = [
    ("momo-default", momo, dict(), ref_momo, None, 0.0),
    (
        "momo-small_lr_schedule",
        momo,
        dict(learning_rate=lambda t: 0.3 / (1.0 + 0.1 * t), beta=0.5),
        ref_momo,
        None,
        0.0,
    ),
    ("momo-bias_correction", momo, dict(bias_correction=True), ref_momo, None, 0.0),
    (
        "momo-weight_decay_lower_bound",
        momo,
        dict(learning_rate=0.5, weight_decay=0.1, lower_bound=0.5),
        ref_momo,
        None,
        1.0,
    ),
    ("momo-adapt_lower_bound", momo, dict(adapt_lower_bound=True, lower_bound=-1.0), ref_momo, None, 2.0),
    ("momo_adam-default", momo_adam, dict(), ref_momo_adam, None, 0.0),
    (
        "momo_adam-large_lr_decay",
        momo_adam,
        dict(learning_rate=1.0, weight_decay=0.05, b2=0.9),
        ref_momo_adam,
        None,
        0.0,
    ),
    (
        "momo_adam-adapt_lower_bound",
        momo_adam,
        dict(learning_rate=1.0, adapt_lower_bound=True),
        ref_momo_adam,
        None,
        2.0,
    ),
]
RUNS = [(c, d, "jit") for c in CASES for d in ("float32", "float64")]
RUNS += [(CASES[0], "float32", "eager"), (CASES[5], "float32", "eager")]


@pytest.mark.parametrize(
    "make,kwargs,ref,f32_tol,offset,dtype,mode",
    [pytest.param(*c[1:], d, m, id=f"{c[0]}-{d}-{m}") for c, d, m in RUNS],
)
def test_matches_reference(make, kwargs, ref, f32_tol, offset, dtype, mode):
    rtol = f32_tol if dtype == "float32" else None
    reference = run_against_reference(make(**kwargs), ref(**kwargs), dtype, mode, rtol=rtol, offset=offset)
    if "adapt_lower_bound" in kwargs:
        assert reference.lb > kwargs.get("lower_bound", 0.0), "the estimate must have moved above the given bound"


def test_both_step_size_regimes_are_exercised():
    """Some steps are capped at alpha / rho, others are the model's (Polyak) step."""
    for make, ref, lr in ((momo, ref_momo, 0.05), (momo_adam, ref_momo_adam, 0.5)):
        reference = run_against_reference(make(learning_rate=lr), ref(learning_rate=lr), "float64", "jit", steps=12)
        assert reference.steps_capped > 0 and reference.steps_model > 0, (reference.steps_capped, reference.steps_model)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(learning_rate=0.3, beta=0.5, lower_bound=0.5), dict(adapt_lower_bound=True, lower_bound=-1.0)],
)
@pytest.mark.parametrize("adam", [False, True])
def test_matches_optax_without_weight_decay(kwargs, adam):
    if adam:
        kwargs = {("b1" if k == "beta" else k): v for k, v in kwargs.items()}
    runs = []
    for factory in (momo_adam, optax.contrib.momo_adam) if adam else (momo, optax.contrib.momo):
        tx = factory(**kwargs)
        params, state, update = (
            jax.tree.map(jnp.asarray, start(np.float32)),
            tx.init(start(np.float32)),
            jax.jit(tx.update),
        )
        for _ in range(10):
            value, grads = value_and_grad(params, 2.0)
            updates, state = update(grads, state, params, value=value)
            params = jax.tree.map(lambda x, u: x + u, params, updates)
        runs.append(params)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_first_steps():
    x = jnp.array([1.0, -2.0, 0.5])
    g = jnp.array([1.0, -4.0, 1.5])  # the gradient of 0.5 sum c x^2, c = (1, 2, 3)
    f = 0.5 * (1.0 + 8.0 + 0.75) + 0.3
    gg = float(jnp.sum(g**2))
    tx = momo()
    u, state = tx.update(g, tx.init(x), x, value=f)
    np.testing.assert_allclose(u, -min(1.0, f / gg) * g, rtol=1e-6)  # Polyak's step, capped at alpha
    assert isinstance(state, MomoState) and float(state.barf) == pytest.approx(f)
    tx = momo(learning_rate=0.01)
    np.testing.assert_allclose(tx.update(g, tx.init(x), x, value=f)[0], -0.01 * g, rtol=1e-6)
    # MoMo-Adam: d_1 = 0.1 g, D_1 = eps + |g|, rho_1 = 0.1: the model's step is (f - f*) / |g|_{D^-1}^2 along g / D
    tx = momo_adam(learning_rate=10.0)
    u, state = tx.update(g, tx.init(x), x, value=f)
    D = 1e-8 + jnp.abs(g)
    np.testing.assert_allclose(u, -(f / float(jnp.sum(g**2 / D))) * g / D, rtol=1e-5)
    assert isinstance(state, MomoAdamState) and state._fields[:2] == ("exp_avg", "exp_avg_sq")


def test_hyperparams_are_readable_and_settable():
    tx = momo(0.5, weight_decay=0.01)
    state = tx.init(start(np.float32))
    assert gradtx.hyperparams(state) == {"learning_rate": 0.5, "beta": 0.9, "lower_bound": 0.0, "weight_decay": 0.01}
    assert set(gradtx.hyperparams(momo_adam().init(start(np.float32)))) == {
        "learning_rate",
        "b1",
        "b2",
        "eps",
        "lower_bound",
        "weight_decay",
    }
    ref = ref_momo(0.5, weight_decay=0.01)
    params, ref_params = jax.tree.map(jnp.asarray, start(np.float32)), R.leaves64(start(np.float32))
    ref.init(ref_params)
    update = jax.jit(tx.update)
    for step in range(8):
        if step == 4:
            state = gradtx.set_hyperparams(state, lower_bound=1.5, learning_rate=0.2)
            ref.lb0, ref.lb, ref.lr = 1.5, 1.5, 0.2
            assert float(state.lb) == 0.0  # the state's bound follows the hyperparameter from the next update on
        value, grads = value_and_grad(params, 2.0)
        updates, state = update(grads, state, params, value=value)
        params = gradtx.apply_updates(params, updates)
        ref_value, ref_grads = np_loss(ref_params, 2.0)
        ref_params = [p + u for p, u in zip(ref_params, ref.update(ref_grads, ref_params, ref_value))]
    assert float(state.lb) == 1.5
    for got, want in zip(jax.tree.leaves(params), ref_params):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_construction_and_update_errors():
    with pytest.raises(ValueError, match="^beta must be in"):
        momo(beta=1.0)
    with pytest.raises(ValueError, match="^b2 must be in"):
        momo_adam(b2=1.5)
    with pytest.raises(ValueError, match="^lower_bound must be in"):
        momo(lower_bound=float("inf"))
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        momo_adam(weight_decay=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        momo(-1.0)
    with pytest.raises(TypeError, match="beta must be a number"):
        momo(beta=lambda t: 0.9)
    x = {"a": jnp.ones(2)}
    for tx, who in ((momo(), "momo"), (momo_adam(), "momo_adam")):
        state = tx.init(x)
        with pytest.raises(ValueError, match=f"^{who} needs the loss: .*value=loss"):
            tx.update(x, state, x)
        with pytest.raises(ValueError, match=f"^{who} needs the parameters"):
            tx.update(x, state, value=1.0)
        with pytest.raises(ValueError, match="one number"):
            tx.update(x, state, x, value=jnp.ones(3))
        # the other extra arguments are accepted and ignored
        tx.update(x, state, x, value=1.0, grad=x, value_fn=None, obj_fn=None, grad_fn=None)


def test_jit_equals_eager():
    for tx in (momo(0.5, weight_decay=0.01, adapt_lower_bound=True), momo_adam(0.5)):
        eager = jitted = tx.init(start(np.float32))
        pe = pj = jax.tree.map(jnp.asarray, start(np.float32))
        for _ in range(5):
            ve, ge = value_and_grad(pe, 1.0)
            vj, gj = value_and_grad(pj, 1.0)
            ue, eager = tx.update(ge, eager, pe, value=ve)
            uj, jitted = jax.jit(tx.update)(gj, jitted, pj, value=vj)
            pe, pj = gradtx.apply_updates(pe, ue), gradtx.apply_updates(pj, uj)
        for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(pj)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_empty_tree_none_leaf_zero_gradient_and_complex():
    def with_loss(tx):
        return gradtx.GradientTransformation(
            tx.init, lambda u, s, p=None, **kw: tx.update(u, s, p, value=jnp.asarray(1.0), **kw)
        )

    for make in (momo, momo_adam):
        R.check_bfloat16(with_loss(make()), "jit")
        R.check_empty_tree(with_loss(make()), "jit")
        params = {"a": jnp.ones(3), "b": None}
        tx = make()
        updates, _ = tx.update({"a": jnp.ones(3), "b": None}, tx.init(params), params, value=1.0)
        assert updates["b"] is None and bool(jnp.all(jnp.isfinite(updates["a"])))
        u, _ = tx.update({"a": jnp.zeros(3), "b": None}, tx.init(params), params, value=1.0)  # |d|^2 = 0
        np.testing.assert_array_equal(u["a"], 0.0)
        # complex parameters: the inner products are real, the model the same as on pairs of reals
        z = jnp.array([1.0 + 2.0j, -0.5j])
        pairs = jnp.stack([z.real, z.imag])
        tz, tp = make(10.0), make(10.0)  # a large cap: the model's step, which measures |d|^2
        uz, _ = tz.update(z, tz.init(z), z, value=jnp.sum(jnp.abs(z) ** 2) / 2)
        up, _ = tp.update(pairs, tp.init(pairs), pairs, value=jnp.sum(pairs**2) / 2)
        if make is momo:  # momo_adam's D_k is per complex element, not per real pair
            np.testing.assert_allclose(np.stack([uz.real, uz.imag]), up, rtol=1e-6)


CONVERGENCE = [
    # (optimizer, steps, factor): the ill-conditioned quadratic (condition number 100, from x = 1), f* = 0
    (lambda: momo(), 300, 1e6),  # reached 124 -> 1.7e-7 (CPU, float32)
    (lambda: momo_adam(0.5), 200, 1e6),  # reached 124 -> 8.7e-6
]


@pytest.mark.parametrize("make,steps,factor", CONVERGENCE)
def test_convergence(make, steps, factor):
    initial, final, _ = run_problem(make(), "quadratic", steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
