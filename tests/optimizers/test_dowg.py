"""DoWG (scale_by_dowg, dowg) against the NumPy reference written from Khaled, Mishchenko & Jin
(2023), Algorithm 1: 12 steps on a three-leaf tree, the parameters and both scalar estimates
(:math:`\\bar r_t^2`, :math:`v_t`) after each step, eagerly and under ``jax.jit``, float32 and
float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.step_size import DoWGState, dowg, scale_by_dowg

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem, step
from references.step_size import ref_dowg

STEPS = 12
SHAPES = {"w": (3, 4), "b": (4,), "s": ()}
MASK = {"w": True, "b": False, "s": True}


def tree(dtype, seed=0, scale=0.1):
    """Parameters of size ~0.1: the first steps move them by r_eps = 1e-2, which float32
    parameters of size ~1 would resolve only to ~6e-8 / 1e-2 (then |x_t - x_0|, and every
    step after, is known to ~1e-5 in float32, however it is computed)."""
    rng = np.random.default_rng(seed)
    return {k: np.asarray(scale * (rng.standard_normal(s) + 0.3), dtype) for k, s in SHAPES.items()}


def grad_sequence(dtype, steps=STEPS, seed=1):
    """Random gradients whose overall magnitude changes from step to step."""
    rng = np.random.default_rng(seed)
    return [
        {k: np.asarray(np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


def as64(t):
    return {k: np.asarray(v, np.complex128 if np.iscomplexobj(v) else np.float64) for k, v in t.items()}


def loss(params):
    """A fixed loss, minimised at 1, for the runs whose gradients follow the parameters."""
    return sum(jnp.sum((x - 1.0) ** 2) for x in jax.tree.leaves(params))


def loss_grad_np(params):
    return {k: 2.0 * (v - 1.0) for k, v in params.items()}


def dowg_state(state):
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, DoWGState)) if isinstance(s, DoWGState)]
    assert len(found) == 1
    return found[0]


def run(tx, params, grads, mode="eager", steps=STEPS, state=None):
    """``steps`` updates; returns the parameters and the DoWG state after each. ``grads`` is a
    list of trees or ``"loss"``."""
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params) if state is None else state
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    history = []
    for t in range(steps):
        g = jax.grad(loss)(params) if grads == "loss" else jax.tree.map(jnp.asarray, grads[t])
        updates, state = update(g, state, params)
        params = gradtx.apply_updates(params, updates)
        history.append((params, dowg_state(state)))
    return history


def assert_matches(history, reference, rtol):
    """Every step: the parameters (relative to the largest magnitude each leaf has had) and the
    two estimates (relative to themselves); returns the largest relative difference."""
    worst, scales = 0.0, {}
    for t, ((params, state), ref) in enumerate(zip(history, reference), start=1):
        for k, want in ref["params"].items():
            scales[k] = max(scales.get(k, 1e-30), float(np.max(np.abs(want))))  # the largest seen so far
            err = float(np.max(np.abs(np.asarray(params[k]) - want))) / scales[k]
            worst = max(worst, err)
            assert err <= rtol, f"step {t}: params[{k!r}] differ by {err:.3g} of their scale"
        for field, key in (("estim_sq_dist", "rbar_sq"), ("weighted_sq_norm_grads", "v")):
            got = float(getattr(state, field))
            err = abs(got - ref[key]) / abs(ref[key])
            worst = max(worst, err)
            assert err <= rtol, f"step {t}: {field} = {got}, the reference has {ref[key]}"
    return worst


CASES = [
    ("default", dict()),
    ("init_estim_sq_dist", dict(init_estim_sq_dist=0.3)),
    ("optax_eps_in_step", dict(eps=1e-3, eps_in_step=True)),
    ("decay_mask_schedule", dict(weight_decay=0.1, mask=MASK, learning_rate=lambda t: 1.0 / (1.0 + 0.1 * t))),
]
RTOL = {"float32": 1e-5, "float64": 1e-12}
RUNS = [
    pytest.param(kw, dtype, "jit", id=f"{label}-{dtype}") for label, kw in CASES for dtype in ("float32", "float64")
] + [pytest.param(dict(), "float32", "eager", id="default-float32-eager")]


@pytest.mark.parametrize("kwargs,dtype,mode", RUNS)
def test_dowg_matches_reference(kwargs, dtype, mode):
    with R.precision(dtype):
        np_dtype = R.DTYPES[dtype]
        grads = grad_sequence(np_dtype)
        history = run(dowg(**kwargs), tree(np_dtype), grads, mode)
        reference = ref_dowg(as64(tree(np_dtype)), [as64(g) for g in grads], STEPS, **kwargs)
        assert_matches(history, reference, RTOL[dtype])
    # the distance travelled overtook the initial estimate r_eps
    assert reference[-1]["rbar_sq"] > reference[0]["rbar_sq"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dowg_on_a_fixed_loss_matches_reference(dtype):
    with R.precision(dtype):
        history = run(dowg(), tree(R.DTYPES[dtype]), "loss", "jit", steps=15)
        reference = ref_dowg(as64(tree(R.DTYPES[dtype])), loss_grad_np, 15)
        assert_matches(history, reference, RTOL[dtype])


def test_complex_parameters_follow_the_reference():
    rng = np.random.default_rng(3)
    params = {
        "z": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
        "x": np.ones(2, np.float32),
    }
    grads = [
        {
            "z": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
            "x": rng.standard_normal(2).astype(np.float32),
        }
        for _ in range(STEPS)
    ]
    history = run(dowg(init_estim_sq_dist=0.1), params, grads, "jit")
    assert (
        history[-1][0]["z"].dtype == jnp.complex64
        and dowg_state(history[-1][1]).init_params["z"].dtype == jnp.complex64
    )
    assert_matches(history, ref_dowg(as64(params), [as64(g) for g in grads], STEPS, init_estim_sq_dist=0.1), 1e-5)


def test_first_step_has_length_r_eps():
    # v_0 = r_eps^2 |g_0|^2, so eta_0 |g_0| = r_eps: the paper's first step, whatever the gradient
    w = {"a": jnp.array([1.0, -2.0]), "m": jnp.ones((2, 2))}
    for g_scale in (1e-3, 1.0, 1e3):
        g = {"a": g_scale * jnp.array([3.0, 0.0]), "m": g_scale * jnp.full((2, 2), 2.0)}  # |g| = 5 g_scale
        u, state = scale_by_dowg(init_estim_sq_dist=0.04).update(g, scale_by_dowg(init_estim_sq_dist=0.04).init(w), w)
        assert float(gradtx.tree.norm(u)) == pytest.approx(0.2, rel=1e-6)
        assert float(state.estim_sq_dist) == pytest.approx(0.04) and float(
            state.weighted_sq_norm_grads
        ) == pytest.approx(0.04 * 25 * g_scale**2, rel=1e-6)
    # Optax's eps in the step shortens a small first step: sqrt(v_0) = 0.2 * 5e-3 = 1e-3, + eps = 2e-3
    small = {"a": jnp.array([3e-3, 0.0]), "m": jnp.full((2, 2), 2e-3)}  # |g| = 5e-3
    tx = scale_by_dowg(0.04, eps=1e-3, eps_in_step=True)
    u, _ = tx.update(small, tx.init(w), w)
    assert float(gradtx.tree.norm(u)) == pytest.approx(0.04 / 2e-3 * 5e-3, rel=1e-5)  # 0.1, not 0.2
    state = scale_by_dowg().init(w)
    assert float(state.estim_sq_dist) == pytest.approx(1e-4) and float(state.weighted_sq_norm_grads) == 0.0


def test_hyperparams_are_readable_and_settable():
    params = tree(np.float32)
    tx = dowg(eps_in_step=True)
    state = tx.init(jax.tree.map(jnp.asarray, params))
    assert gradtx.hyperparams(state) == {"init_estim_sq_dist": 1e-4, "eps": 1e-4, "learning_rate": 1.0}
    # set before the first update, r_eps^2 and eps act as if given at construction
    state = gradtx.set_hyperparams(state, init_estim_sq_dist=0.5, eps=1e-2)
    grads = grad_sequence(np.float32)
    history = run(tx, params, grads, "jit", state=state)
    reference = ref_dowg(
        as64(params), [as64(g) for g in grads], STEPS, init_estim_sq_dist=0.5, eps=1e-2, eps_in_step=True
    )
    assert_matches(history, reference, 1e-5)
    default = ref_dowg(as64(params), [as64(g) for g in grads], STEPS, eps_in_step=True)
    assert not np.allclose(np.asarray(history[0][0]["w"]), default[0]["params"]["w"], rtol=1e-3)


def test_construction_and_update_errors():
    with pytest.raises(ValueError, match=r"^eps must be in \(0.0"):
        dowg(eps=0.0)  # eps is then r_eps^2
    dowg(init_estim_sq_dist=1.0, eps=0.0)  # fine: eps is then only Optax's term in the step
    with pytest.raises(ValueError, match="^init_estim_sq_dist must be in"):
        dowg(init_estim_sq_dist=0.0)
    with pytest.raises(ValueError, match="^eps must be in"):
        scale_by_dowg(1.0, eps=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        dowg(learning_rate=-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        dowg(weight_decay=-1.0)
    with pytest.raises(TypeError, match="init_estim_sq_dist must be a number or an array"):
        dowg(init_estim_sq_dist=lambda t: 1.0)
    w = {"a": jnp.ones(3)}
    tx = dowg()
    with pytest.raises(ValueError, match="scale_by_dowg needs the parameters"):
        tx.update(w, tx.init(w))
    with pytest.raises(ValueError, match="'a' has shape"):
        tx.update({"a": jnp.ones(4)}, tx.init(w), {"a": jnp.ones(4)})


def test_jit_equals_eager_and_extra_arguments_are_ignored():
    tx = dowg(weight_decay=0.05, learning_rate=lambda t: 1.0 / (1 + t))
    params = jax.tree.map(jnp.asarray, tree(np.float32))
    eager_p = jit_p = params
    eager_s, jit_s = tx.init(params), tx.init(params)
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p))
    for g in grad_sequence(np.float32):
        g = jax.tree.map(jnp.asarray, g)
        u, eager_s = step(tx, g, eager_s, eager_p)
        eager_p = gradtx.apply_updates(eager_p, u)
        u, jit_s = jitted(g, jit_s, jit_p)
        jit_p = gradtx.apply_updates(jit_p, u)
    for k in SHAPES:
        np.testing.assert_allclose(eager_p[k], jit_p[k], rtol=1e-6, atol=1e-7)


def test_dtypes_empty_tree_none_leaf_and_vmap():
    R.check_bfloat16(dowg(), "jit")
    R.check_empty_tree(dowg(), "jit")
    s = dowg_state(dowg().init({"h": jnp.ones(3, jnp.bfloat16)}))
    assert s.init_params["h"].dtype == jnp.bfloat16 and s.estim_sq_dist.dtype == jnp.float32
    with R.precision("float64"):
        s = dowg_state(dowg().init({"x": jnp.ones(2)}))
        assert {leaf.dtype for leaf in jax.tree.leaves(s)} == {jnp.dtype("float64")}
    params = {"a": jnp.ones(3), "b": None}
    tx = dowg()
    u, _ = tx.update({"a": jnp.ones(3), "b": None}, tx.init(params), params)
    assert u["b"] is None and bool(jnp.all(jnp.isfinite(u["a"])))
    ws, gs = jnp.stack([jnp.ones(3), -jnp.ones(3)]), jnp.stack([jnp.arange(3.0), 2 * jnp.ones(3)])
    us, _ = jax.vmap(lambda g, w: tx.update(g, tx.init(w), w))(gs, ws)
    for i in range(2):
        np.testing.assert_allclose(us[i], tx.update(gs[i], tx.init(ws[i]), ws[i])[0], rtol=1e-6)


@pytest.mark.parametrize("scale", EDGE_SCALES)
def test_edge_gradients_stay_finite(scale):
    updates = check_edge_cases(dowg, scale)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


def test_matches_optax_with_eps_in_step():
    optax = pytest.importorskip("optax")
    contrib = pytest.importorskip("optax.contrib")

    kwargs = dict(init_estim_sq_dist=0.2, eps=1e-3, weight_decay=0.05)
    ours = run(dowg(0.5, eps_in_step=True, **kwargs), tree(np.float32), grad_sequence(np.float32), "jit")
    theirs = contrib.dowg(0.5, **kwargs)
    params = jax.tree.map(jnp.asarray, tree(np.float32))
    state = theirs.init(params)
    for (mine, _), g in zip(ours, grad_sequence(np.float32)):
        updates, state = theirs.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
        for k in SHAPES:
            np.testing.assert_allclose(mine[k], params[k], rtol=1e-5, atol=1e-6)


# Convergence with the defaults (no learning rate to tune); what was reached on CPU in float32 is noted.
CONVERGENCE = [
    ("quadratic", 200, 1e5),  # reached 2.9e5
    ("rosenbrock", 1000, 20.0),  # reached 67.7
    ("digits", 200, 3.0),  # reached 5.0
]


@pytest.mark.parametrize("problem,steps,factor", CONVERGENCE)
def test_convergence(problem, steps, factor):
    initial, final, _ = run_problem(dowg(), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)


def test_half_squared_norm_falls_below_1e_3_in_50_steps():
    tx = dowg()
    params = {"a": jnp.ones((3, 4)), "b": jnp.full(5, -2.0)}  # f = 16 at the start
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(50):
        updates, state = update(params, state, params)  # the gradient of 0.5 |x|^2 is x
        params = gradtx.apply_updates(params, updates)
    value = 0.5 * sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(params))
    assert value < 1e-3, value  # reached 1.1e-13
