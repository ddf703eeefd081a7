"""COCOB-Backprop (scale_by_cocob, cocob) against the NumPy reference written from Orabona &
Tommasi (2017), Algorithm 2: 12 steps on a three-leaf tree, the parameters and every state
field after each step, eagerly and under ``jax.jit``, float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.coin_betting import COCOBState, cocob, scale_by_cocob

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem, step
from references.coin_betting import ref_cocob

STEPS = 12
SHAPES = {"w": (3, 4), "b": (4,), "s": ()}
MASK = {"w": True, "b": False, "s": True}


def tree(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(scale * (rng.standard_normal(s) + 0.3), dtype) for k, s in SHAPES.items()}


def grad_sequence(dtype, steps=STEPS, seed=1):
    """Random gradients of changing magnitude; the first entry of ``b`` is 0 for three steps
    (the coordinate then bets nothing: the eps-scale special case)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        g = {k: np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(s) for k, s in SHAPES.items()}
        if t < 3:
            g["b"][0] = 0.0
        out.append({k: np.asarray(v, dtype) for k, v in g.items()})
    return out


def as64(t):
    return {k: np.asarray(v, np.float64) for k, v in t.items()}


def loss(params):
    """A fixed loss, minimised at 1: its gradient 2 (x - 1) drives the second kind of run."""
    return sum(jnp.sum((x - 1.0) ** 2) for x in jax.tree.leaves(params))


def loss_grad_np(params):
    return {k: 2.0 * (v - 1.0) for k, v in params.items()}


def cocob_state(state):
    found = [
        s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, COCOBState)) if isinstance(s, COCOBState)
    ]
    assert len(found) == 1
    return found[0]


def run(tx, dtype, grads, mode="eager", steps=STEPS, params=None, between=None):
    """``steps`` updates of ``tx``; returns the parameters and the COCOB state after each.
    ``grads`` is a list of trees or ``"loss"``; ``between(t, state)`` may edit the state."""
    params = jax.tree.map(jnp.asarray, tree(dtype) if params is None else params)
    state = tx.init(params)
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    history = []
    for t in range(steps):
        if between is not None:
            state = between(t, state)
        g = jax.grad(loss)(params) if grads == "loss" else jax.tree.map(jnp.asarray, grads[t])
        updates, state = update(g, state, params)
        params = gradtx.apply_updates(params, updates)
        history.append((params, cocob_state(state)))
    return history


def assert_matches(history, reference, rtol):
    """Every step: the parameters and L, G, Reward, theta, relative to the largest magnitude each
    leaf has had so far; returns the largest relative difference."""
    worst, scales = 0.0, {}
    for t, ((params, state), ref) in enumerate(zip(history, reference), start=1):
        pairs = [
            ("params", params, ref["params"]),
            ("scale", state.scale, ref["L"]),
            ("subgradients", state.subgradients, ref["G"]),
            ("reward", state.reward, ref["reward"]),
            ("cumulative_gradients", state.cumulative_gradients, ref["theta"]),
        ]
        for what, got, want in pairs:
            for k in SHAPES:
                g, w = np.asarray(got[k], np.float64), want[k]
                scale = scales[what, k] = max(scales.get((what, k), 1e-30), float(np.max(np.abs(w))))
                err = float(np.max(np.abs(g - w))) / scale
                worst = max(worst, err)
                assert err <= rtol, f"step {t}: {what}[{k!r}] differs by {err:.3g} of its scale"
    return worst


# (id, cocob kwargs); the reference takes the same keywords
CASES = [
    ("default", dict()),
    ("alpha_eps", dict(alpha=10.0, eps=1e-3)),
    ("decay_mask", dict(weight_decay=0.1, mask=MASK)),
    ("learning_rate_schedule", dict(learning_rate=lambda t: 1.0 / (1.0 + 0.2 * t))),
    ("optax_gradient_scaling", dict(learning_rate=lambda t: 1.0 / (1.0 + 0.2 * t), scale_gradients=True)),
    ("constant_learning_rate", dict(learning_rate=0.5)),
]
RTOL = {"float32": 1e-5, "float64": 1e-12}


# every case under jit in both dtypes, and the default eagerly (test_jit_equals_eager covers the rest)
RUNS = [
    pytest.param(kw, dtype, "jit", id=f"{label}-{dtype}") for label, kw in CASES for dtype in ("float32", "float64")
] + [pytest.param(dict(), "float32", "eager", id="default-float32-eager")]


@pytest.mark.parametrize("kwargs,dtype,mode", RUNS)
def test_cocob_matches_reference(kwargs, dtype, mode):
    with R.precision(dtype):
        np_dtype = R.DTYPES[dtype]
        grads = grad_sequence(np_dtype)
        history = run(cocob(**kwargs), np_dtype, grads, mode)
        reference = ref_cocob(as64(tree(np_dtype)), [as64(g) for g in grads], STEPS, **kwargs)
        assert_matches(history, reference, RTOL[dtype])
    # the runs cross both branches of the reward's max(., 0), and the zero-gradient coordinate bet nothing
    rewards = np.stack([r["reward"]["w"] for r in reference])
    assert np.any(rewards > 0) and np.any((rewards[:-1] > 0) & (rewards[1:] == 0))
    assert reference[2]["params"]["b"][0] == as64(tree(np_dtype))["b"][0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cocob_on_a_fixed_loss_matches_reference(dtype):
    with R.precision(dtype):
        history = run(cocob(), R.DTYPES[dtype], "loss", "jit", steps=15)
        reference = ref_cocob(as64(tree(R.DTYPES[dtype])), loss_grad_np, 15)
        assert_matches(history, reference, RTOL[dtype])


def test_scale_by_cocob_first_step_is_minus_sign_over_alpha():
    # step 1: L = G = |g|, theta = -g, Reward = 0: w_2 - w_1 = -g / max(2|g|, alpha |g|) = -sign(g) / alpha
    tx = scale_by_cocob(alpha=20.0)
    w = {"a": jnp.array([1.0, -2.0, 3.0]), "z": jnp.zeros((2, 2))}
    g = {"a": jnp.array([0.5, -7.0, 0.0]), "z": jnp.full((2, 2), 1e-3)}
    u, state = tx.update(g, tx.init(w), w)
    np.testing.assert_allclose(u["a"], [-0.05, 0.05, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u["z"], np.full((2, 2), -0.05), rtol=1e-6)
    np.testing.assert_allclose(state.scale["a"], [0.5, 7.0, 1e-8], rtol=1e-6)
    # a small alpha: the bet is capped by G + L = 2 |g| instead
    u, _ = scale_by_cocob(alpha=1.0).update(g, scale_by_cocob(alpha=1.0).init(w), w)
    np.testing.assert_allclose(u["a"], [-0.5, 0.5, 0.0], rtol=1e-6)


def test_hyperparams_are_readable_and_settable():
    tx = cocob(weight_decay=0.01)
    state = tx.init(jax.tree.map(jnp.asarray, tree(np.float32)))
    assert gradtx.hyperparams(state) == {"weight_decay": 0.01, "alpha": 100.0, "eps": 1e-8, "learning_rate": 1.0}
    # alpha switched from 100 to 5 before the fourth update: the reference switches with it
    grads = grad_sequence(np.float32)
    history = run(tx, np.float32, grads, between=lambda t, s: gradtx.set_hyperparams(s, alpha=5.0) if t == 3 else s)
    start, grads64 = as64(tree(np.float32)), [as64(g) for g in grads]
    reference = ref_cocob(start, grads64, STEPS, alpha=lambda t: 100.0 if t < 3 else 5.0, weight_decay=0.01)
    assert_matches(history, reference, 1e-5)
    unchanged = ref_cocob(start, grads64, STEPS, weight_decay=0.01)
    assert not np.allclose(history[3][0]["w"], unchanged[3]["params"]["w"], rtol=1e-3)
    assert gradtx.hyperparams(gradtx.set_hyperparams(state, learning_rate=0.5))["learning_rate"] == 0.5


def test_construction_and_update_errors():
    with pytest.raises(ValueError, match="^alpha must be in"):
        cocob(alpha=0.0)
    with pytest.raises(ValueError, match="^alpha must be in"):
        scale_by_cocob(alpha=-1.0)
    with pytest.raises(ValueError, match="^eps must be in"):
        cocob(eps=-1e-8)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        cocob(learning_rate=-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        cocob(weight_decay=-0.1)
    with pytest.raises(TypeError, match="alpha must be a number or an array"):
        cocob(alpha=lambda t: 100.0)
    with pytest.raises(TypeError, match="learning_rate must be"):
        cocob(learning_rate=None)
    tx, w = cocob(), {"a": jnp.ones(3)}
    with pytest.raises(ValueError, match="scale_by_cocob needs the parameters"):
        scale_by_cocob().update(w, scale_by_cocob().init(w))
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(w, tx.init(w))
    with pytest.raises(ValueError, match="'a' has shape"):
        scale_by_cocob().update({"a": jnp.ones(4)}, scale_by_cocob().init(w), {"a": jnp.ones(4)})
    with pytest.raises(TypeError, match="scale_by_cocob does not support complex parameters: 'z' is complex64"):
        tx.init({"z": jnp.ones(2, jnp.complex64)})


def test_jit_equals_eager_and_extra_arguments_are_ignored():
    tx = cocob(weight_decay=0.05, learning_rate=lambda t: 1.0 / (1 + t))
    params = jax.tree.map(jnp.asarray, tree(np.float32))
    grads = grad_sequence(np.float32)
    eager_p, jit_p = params, params
    eager_s, jit_s = tx.init(params), tx.init(params)
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p))
    for g in grads:
        g = jax.tree.map(jnp.asarray, g)
        u, eager_s = step(tx, g, eager_s, eager_p)
        eager_p = gradtx.apply_updates(eager_p, u)
        u, jit_s = jitted(g, jit_s, jit_p)
        jit_p = gradtx.apply_updates(jit_p, u)
    for k in SHAPES:
        np.testing.assert_allclose(eager_p[k], jit_p[k], rtol=1e-6, atol=1e-7)


def test_dtypes_empty_tree_none_leaf_and_vmap():
    R.check_bfloat16(cocob(), "jit")
    R.check_empty_tree(cocob(), "jit")
    state = cocob().init({"h": jnp.ones(3, jnp.float16), "f": jnp.ones(2)})
    s = cocob_state(state)
    assert s.init_particles["h"].dtype == jnp.float16 and s.cumulative_gradients["h"].dtype == jnp.float16
    assert s.scale["h"].dtype == jnp.float32  # magnitudes of float16 leaves are kept in float32
    with R.precision("float64"):
        s = cocob_state(cocob().init({"x": jnp.ones(2)}))
        assert {leaf.dtype for leaf in jax.tree.leaves(s)} == {jnp.dtype("float64")}
    params = {"a": jnp.ones(3), "b": None}
    tx = cocob()
    u, _ = tx.update({"a": jnp.ones(3), "b": None}, tx.init(params), params)
    assert u["b"] is None and bool(jnp.all(jnp.isfinite(u["a"])))
    # vmap over independent problems equals running each alone
    ws, gs = jnp.stack([jnp.ones(3), -jnp.ones(3)]), jnp.stack([jnp.arange(3.0), jnp.ones(3)])
    us, _ = jax.vmap(lambda g, w: tx.update(g, tx.init(w), w))(gs, ws)
    for i in range(2):
        np.testing.assert_allclose(us[i], tx.update(gs[i], tx.init(ws[i]), ws[i])[0], rtol=1e-6)


@pytest.mark.parametrize("scale", EDGE_SCALES)
def test_edge_gradients_stay_finite(scale):
    updates = check_edge_cases(cocob, scale)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


def test_matches_optax_with_gradient_scaling():
    optax = pytest.importorskip("optax")
    contrib = pytest.importorskip("optax.contrib")

    kwargs = dict(alpha=30.0, weight_decay=0.05)
    schedule = optax.linear_schedule(1.0, 0.3, STEPS)
    ours = run(cocob(schedule, scale_gradients=True, **kwargs), np.float32, grad_sequence(np.float32))
    theirs = contrib.cocob(schedule, **kwargs)
    params = jax.tree.map(jnp.asarray, tree(np.float32))
    state = theirs.init(params)
    for (mine, _), g in zip(ours, grad_sequence(np.float32)):
        updates, state = theirs.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
        for k in SHAPES:
            np.testing.assert_allclose(mine[k], params[k], rtol=1e-5, atol=1e-6)


# Convergence with the defaults (COCOB has no learning rate to tune); what was reached on CPU in
# float32 is noted.
CONVERGENCE = [
    ("quadratic", 100, 1e10),  # reached 4.4e13
    ("rosenbrock", 2000, 100.0),  # reached 1.3e3 (2.97 after 1000 steps: the valley is slow)
    ("digits", 200, 10.0),  # reached 36.5
]


@pytest.mark.parametrize("problem,steps,factor", CONVERGENCE)
def test_convergence(problem, steps, factor):
    initial, final, _ = run_problem(cocob(), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)


def test_half_squared_norm_falls_below_1e_3_in_50_steps():
    tx = cocob()
    params = {"a": jnp.ones((3, 4)), "b": jnp.full(5, -2.0)}  # f = 16 at the start
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(50):
        updates, state = update(params, state, params)  # the gradient of 0.5 |x|^2 is x
        params = gradtx.apply_updates(params, updates)
    value = 0.5 * sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(params))
    assert value < 1e-3, value  # reached 9.6e-7
