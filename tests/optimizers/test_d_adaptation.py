"""D-Adapt AdamW and Prodigy against NumPy references written from the papers (Defazio &
Mishchenko 2023; Mishchenko & Defazio 2023): step by step on the nested test tree with fixed
gradients, and on a small tree driven by a quadratic's gradients, where the distance estimate
``d`` grows and is compared too; Optax's behaviour through ``use_bias_correction=True``; the
hyperparameters; construction errors; jit against eager; convergence from far away.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.d_adaptation import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem
from references.d_adaptation import DAdaptAdamW, Prodigy, run

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]
BUILD = {"dadapt_adamw": (dadapt_adamw, DAdaptAdamW), "prodigy": (prodigy, Prodigy)}

# (optimizer, id, kwargs)
CASES = [
    ("dadapt_adamw", "default", dict()),
    ("dadapt_adamw", "decay_schedule", dict(learning_rate=lambda t: 1.0 / (1.0 + t), weight_decay=0.1)),
    ("dadapt_adamw", "custom", dict(betas=(0.8, 0.99), eps=1e-3, estim_lr0=1e-3, use_bias_correction=True)),
    ("prodigy", "default", dict()),
    ("prodigy", "decay_schedule", dict(learning_rate=lambda t: 1.0 / (1.0 + t), weight_decay=0.1)),
    ("prodigy", "safeguard", dict(learning_rate=0.5, safeguard_warmup=True, estim_lr0=1e-3)),
    (
        "prodigy",
        "custom",
        dict(betas=(0.8, 0.99), beta3=0.9, eps=1e-3, estim_lr_coef=2.0, estim_lr0=1e-3, use_bias_correction=True),
    ),
]
ROWS = [pytest.param(name, kwargs, id=f"{name}-{label}") for name, label, kwargs in CASES]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", ROWS)
def test_matches_reference_on_fixed_gradients(name, kwargs, dtype, mode):
    make, ref = BUILD[name]
    R.run_against_reference(make(**kwargs), ref(**kwargs), dtype, mode)


# ----------------------------------------------- the distance estimate, on a quadratic

TARGET = [np.full((3, 2), 4.0), np.linspace(-3.0, 3.0, 4), np.asarray(-2.0)]
CURVATURE = [np.full((3, 2), 1.0), np.asarray([1.0, 2.0, 5.0, 10.0]), np.asarray(0.5)]
# From 0, where float32 holds the first movements (~1e-6) to full relative precision: from 1 it
# would resolve them to 6e-8 / 1e-6, and Prodigy's <g, x_0 - x> would be known to a few percent.
START = [np.zeros((3, 2)), np.zeros(4), np.asarray(0.0)]
STEPS = 30


def quadratic_grad(params):
    """The gradient of 1/2 sum c (x - target)^2, for NumPy leaves or a tuple of JAX leaves."""
    return [c * (np.asarray(x, np.float64) - t) for x, c, t in zip(params, CURVATURE, TARGET)]


def run_gradtx(tx, dtype, mode, steps=STEPS):
    """The parameters and ``estim_lr`` after every step, the final state and the gradients used."""
    with R.precision(dtype):
        params = tuple(jnp.asarray(x, dtype) for x in START)
        state = tx.init(params)
        update = jax.jit(tx.update) if mode == "jit" else tx.update
        path, ds, used = [], [], []
        for _ in range(steps):
            grads = tuple(jnp.asarray(g, dtype) for g in quadratic_grad(params))
            used.append([np.asarray(g, np.float64) for g in grads])
            updates, state = update(grads, state, params)
            params = gradtx.apply_updates(params, updates)
            path.append([np.asarray(x, np.float64) for x in params])
            ds.append(float(state.estim_lr))
    return path, ds, state, used


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", ROWS)
def test_params_and_estimate_follow_the_reference_while_d_grows(name, kwargs, dtype, mode):
    make, ref = BUILD[name]
    path, ds, _, grads = run_gradtx(make(**kwargs), dtype, mode)
    # the reference gets the same gradients: fed back through the loss, float32's rounding of
    # the parameters would grow along the run as any two runs of the same method drift apart
    want_path, want_ds = run(ref(**kwargs), [np.asarray(x, np.float64) for x in START], grads)
    # float32: b2 = 0.999 is rounded by 1.3e-8 relative, sqrt(b2) by up to 3e-8, which 1 - sqrt(b2)
    # = 5e-4 (the weight of each new term of r and s) turns into ~6e-5; d, built from such sums step
    # after step, drifts by ~3e-6 a step (3.7e-5 after 12 steps of growth, CPU), and the steps with it
    rtol = 1e-4 if dtype == "float32" else 1e-10
    moved = [0.0 for _ in START]
    for step, (got, want, d, want_d) in enumerate(zip(path, want_path, ds, want_ds), start=1):
        moved = [max(m, float(np.max(np.abs(y - x0)))) for m, y, x0 in zip(moved, want, START)]
        for leaf, (x, y, scale) in enumerate(zip(got, want, moved)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale, err_msg=f"step {step}, leaf {leaf}")
        np.testing.assert_allclose(d, want_d, rtol=rtol, err_msg=f"step {step}: estim_lr")
    d0 = kwargs.get("estim_lr0", 1e-6)
    assert want_ds[0] == d0 or name == "prodigy", "D-Adaptation's first estimate is d_0 (s_0 = 0)"
    assert want_ds[-1] > 100 * d0, f"the estimate must grow for the test to mean something: {want_ds[-1]}"


def test_first_step():
    """The first step, by hand: D-Adaptation moves by (1 - b1) d0 g / (sqrt(1 - b2) |g| + eps),
    Prodigy by the same with d0 eps; D-Adaptation's estimate stays d0 (its numerator starts at 0)."""
    w, g = jnp.asarray([1.0, -2.0]), jnp.asarray([3.0, -4.0])
    want = -0.1 * 1e-6 * g / (np.sqrt(1e-3) * np.abs(g))
    for tx in [dadapt_adamw(eps=0.0), prodigy(eps=0.0)]:
        updates, state = tx.update(g, tx.init(w), w)
        np.testing.assert_allclose(updates, want, rtol=1e-5)
    _, state = dadapt_adamw().update(g, dadapt_adamw().init(w), w)
    assert float(state.estim_lr) == pytest.approx(1e-6) and float(state.numerator_weighted) == 0.0


# ------------------------------------------------------------------- Optax's behaviour


@pytest.mark.parametrize(
    "name,kwargs,rtol",
    [
        ("dadapt_adamw", dict(learning_rate=0.5, weight_decay=0.1), 1e-9),
        # Optax adds d_{k+1} eps to the root where the paper adds d_k eps: ~1e-7 relative
        ("prodigy", dict(beta3=0.9, estim_lr_coef=2.0, weight_decay=0.1), 1e-5),
    ],
)
def test_bias_correction_gives_optax(name, kwargs, rtol):
    contrib = pytest.importorskip("optax.contrib")
    ours, *_ = run_gradtx(BUILD[name][0](**kwargs, use_bias_correction=True), "float64", "jit")
    with R.precision("float64"):
        tx = getattr(contrib, name)(**kwargs)
        params = tuple(jnp.asarray(x) for x in START)
        state = tx.init(params)
        for step, want in enumerate(ours, start=1):
            updates, state = tx.update(tuple(jnp.asarray(g) for g in quadratic_grad(params)), state, params)
            params = tuple(p + u for p, u in zip(params, updates))
            for got, w in zip(params, want):
                np.testing.assert_allclose(np.asarray(got), w, rtol=rtol, atol=rtol, err_msg=f"step {step}")
    assert float(state.estim_lr) > 1e-3


# ------------------------------------------------------------------ hyperparameters


def test_state_fields_follow_optax():
    assert DAdaptAdamWState._fields[:-1] == (
        "exp_avg", "exp_avg_sq", "grad_sum", "estim_lr", "numerator_weighted", "count"
    )  # fmt: skip
    assert ProdigyState._fields[:-1] == (
        "exp_avg", "exp_avg_sq", "grad_sum", "params0", "estim_lr", "numerator_weighted", "count"
    )  # fmt: skip


def test_hyperparams_are_readable_and_settable():
    params = (jnp.ones(3),)
    state = dadapt_adamw().init(params)
    assert gradtx.hyperparams(state) == {
        "learning_rate": 1.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "estim_lr0": 1e-6, "weight_decay": 0.0
    }  # fmt: skip
    assert set(gradtx.hyperparams(prodigy().init(params))) == {
        "learning_rate", "b1", "b2", "eps", "estim_lr0", "estim_lr_coef", "weight_decay"
    }  # fmt: skip
    assert gradtx.hyperparams(prodigy(beta3=0.5).init(params))["beta3"] == 0.5


@pytest.mark.parametrize("name", sorted(BUILD))
def test_set_hyperparams_changes_the_next_updates_as_the_reference_predicts(name):
    make, ref_class = BUILD[name]
    tx, ref, unchanged = make(), ref_class(), ref_class()
    ref_params = [np.asarray(x, np.float64) for x in START]
    ref.init(ref_params)
    unchanged.init(ref_params)
    other = list(ref_params)
    with R.precision("float64"):
        params = tuple(jnp.asarray(x) for x in START)
        state, update = tx.init(params), jax.jit(tx.update)
        for step in range(12):
            if step == 6:  # after the estimate has started to grow
                state = gradtx.set_hyperparams(state, learning_rate=0.5, b1=0.5, weight_decay=0.2)
                ref.lr, ref.b1, ref.wd = 0.5, 0.5, 0.2
            updates, state = update(tuple(jnp.asarray(g) for g in quadratic_grad(params)), state, params)
            params = gradtx.apply_updates(params, updates)
            want = [p + u for p, u in zip(ref_params, ref.update(quadratic_grad(ref_params), ref_params))]
            other = [p + u for p, u in zip(other, unchanged.update(quadratic_grad(other), other))]
            ref_params = want
            for got, w in zip(params, want):
                np.testing.assert_allclose(np.asarray(got), w, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(float(state.estim_lr), ref.d, rtol=1e-10)
    assert gradtx.hyperparams(state)["b1"] == 0.5
    change = max(float(np.max(np.abs(a - b))) for a, b in zip(other, ref_params))
    assert change > 1e-3 * max(float(np.max(np.abs(b))) for b in ref_params), "the change must show"
    # estim_lr0 is read at the first update: setting it on a fresh state changes d_0
    params = (jnp.ones(3),)
    fresh = gradtx.set_hyperparams(tx.init(params), estim_lr0=1e-3)
    _, fresh = tx.update(params, fresh, params)
    assert float(fresh.estim_lr) >= 1e-3


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make", [dadapt_adamw, prodigy])
def test_construction_errors_name_the_argument(make):
    with pytest.raises(ValueError, match="^betas must be a pair"):
        make(betas=0.9)
    with pytest.raises(ValueError, match=r"^betas\[1\] must be in \[0.0, 1.0\)"):
        make(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="^eps must be in"):
        make(eps=-1.0)
    with pytest.raises(ValueError, match="^estim_lr0 must be in"):
        make(estim_lr0=0.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        make(learning_rate=-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        make(weight_decay=-0.1)
    with pytest.raises(TypeError, match="^eps must be a number or an array"):
        make(eps=lambda t: 1e-8)
    with pytest.raises(ValueError, match="prodigy needs the parameters|dadapt_adamw needs the parameters"):
        tx = make()
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    with pytest.raises(ValueError, match="do not match the tree this state was built for"):
        tx = make()
        tx.update(jnp.ones(3), tx.init(jnp.ones(2)), jnp.ones(3))


def test_prodigy_construction_errors():
    with pytest.raises(ValueError, match="^beta3 must be in"):
        prodigy(beta3=1.0)
    with pytest.raises(ValueError, match="^estim_lr_coef must be in"):
        prodigy(estim_lr_coef=0.0)


# ------------------------------------------------------------------ jit, dtypes, edges


@pytest.mark.parametrize("name", sorted(BUILD))
def test_jit_equals_eager_and_extra_arguments_are_ignored(name):
    make = BUILD[name][0]
    eager, _, eager_state, _ = run_gradtx(make(weight_decay=0.1), "float32", "eager", steps=8)
    jitted, _, jit_state, _ = run_gradtx(make(weight_decay=0.1), "float32", "jit", steps=8)
    for a, b in zip(eager[-1], jitted[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(eager_state.estim_lr), float(jit_state.estim_lr), rtol=1e-6)
    tx, w = make(), jnp.ones(2)
    u, _ = tx.update(w, tx.init(w), w, value=jnp.asarray(1.0), grad=w, value_fn=jnp.sum, obj_fn=jnp.sum, grad_fn=None)
    assert bool(jnp.all(jnp.isfinite(u)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BUILD))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    make, ref = BUILD[name]
    R.check_bfloat16(make(), mode)
    R.check_empty_tree(make(), mode)
    R.check_none_leaf(make(), ref(), mode)


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(BUILD))
def test_edge_cases_stay_finite(name, scale):
    updates = check_edge_cases(BUILD[name][0], scale)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", sorted(BUILD))
def test_complex_parameters_step_like_their_real_part_when_imaginary_parts_are_zero(name):
    make = BUILD[name][0]
    real, *_ = run_gradtx(make(), "float32", "jit", steps=6)
    tx = make()
    params = tuple(jnp.asarray(x, jnp.complex64) for x in START)
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(6):
        grads = tuple(jnp.asarray(g, jnp.complex64) for g in quadratic_grad([p.real for p in params]))
        updates, state = update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
    assert all(p.dtype == jnp.complex64 for p in params)
    for got, want in zip(params, real[-1]):
        np.testing.assert_allclose(np.asarray(got.real), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(got.imag), 0.0)


# ------------------------------------------------------------------ convergence

CURVATURES = jnp.linspace(1.0, 10.0, 5)


def far_loss(p):
    """A quadratic whose minimum (x = 100, y = -50) is ~130 away from the start at 0."""
    return 0.5 * jnp.sum(CURVATURES * (p["x"] - 100.0) ** 2) + 0.5 * jnp.sum((p["y"] + 50.0) ** 2)


def best_loss(tx, steps):
    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(far_loss)(p), s, p)
        p = gradtx.apply_updates(p, u)
        return (p, s), far_loss(p)

    params = {"x": jnp.zeros(5), "y": jnp.zeros((2, 2))}
    (_, state), losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps))(params)
    return float(far_loss(params)), float(jnp.min(losses)), state


# (optimizer, steps, factor): defaults throughout, d_0 = 1e-6 against a distance of ~130.
# Reached on CPU in float32: dadapt_adamw 1e-6 of the initial loss at step 113, prodigy at 109.
CONVERGENCE = [("dadapt_adamw", 200, 1e-7), ("prodigy", 200, 1e-7)]


@pytest.mark.parametrize("name,steps,factor", CONVERGENCE)
def test_converges_from_far_away_without_tuning(name, steps, factor):
    initial, best, state = best_loss(BUILD[name][0](), steps)
    assert best < factor * initial, (initial, best)
    assert float(state.estim_lr) > 10.0  # d grew from 1e-6 to the scale of the distance


@pytest.mark.parametrize("name", sorted(BUILD))
def test_converges_on_the_benchmark_quadratic(name):
    initial, final, _ = run_problem(BUILD[name][0](), "quadratic", 100)
    assert initial / final > 1e5, (initial, final)  # reached 2e6 (dadapt_adamw), 8e6 (prodigy)
