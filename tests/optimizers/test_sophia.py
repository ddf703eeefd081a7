"""Sophia-H (Liu et al. 2023); Hutchinson's estimator has its tests in tests/transforms/test_curvature.py.

Sophia runs step by step against the NumPy reference of Algorithm 1 (tests/references/sophia.py)
on a separable quartic loss over three leaves: its Hessian is diagonal, so Hutchinson's estimate
with Rademacher vectors is exact and the reference uses the true diagonal.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.sophia import SophiaState, scale_by_sophia, sophia

import references as R
from references.sophia import ref_sophia

STEPS = 12

# f(theta) = sum over leaves of a/2 theta^2 + c/4 theta^4: curvatures from 0.05 to 300
A = {"b": np.array([100.0, 200.0, 50.0, 300.0]), "s": np.array(0.05), "w": np.linspace(0.5, 20.0, 12).reshape(3, 4)}
C = {"b": 2.0, "s": 0.1, "w": 0.5}


def np_grad(theta):
    return {n: A[n] * x + C[n] * x**3 for n, x in theta.items()}


def np_hess(theta):
    return {n: A[n] + 3 * C[n] * x**2 for n, x in theta.items()}


def loss(params):
    return sum(jnp.sum(A[n] / 2 * x**2 + C[n] / 4 * x**4) for n, x in params.items())


def start(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "b": np.asarray(0.1 * rng.standard_normal(4), dtype),
        "s": np.asarray(2.0, dtype),
        "w": np.asarray(rng.standard_normal((3, 4)), dtype),
    }


def run(tx, dtype, mode, steps=STEPS, params=None):
    """``tx`` for ``steps`` steps on ``loss`` from ``start``: the parameters after each step, and the state."""
    params = jax.tree.map(jnp.asarray, start(dtype) if params is None else params)
    state = tx.init(params)

    def step(p, s):  # eagerly, or the whole step under jax.jit
        u, s = tx.update(jax.grad(loss)(p), s, p, obj_fn=loss)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step) if mode == "jit" else step
    history = []
    for _ in range(steps):
        params, state = step(params, state)
        history.append(params)
    return history, state


def assert_matches(history, reference, rtol):
    """Each step's parameters within ``rtol`` of the reference, relative to the leaf's largest magnitude so
    far. float32 gets the harness's 2e-5: where m crosses 0, m / (gamma h) multiplies m's rounding
    (~1e-7 of the gradients summed into it) by 1 / (gamma h), up to 1e2 here."""
    scales = [0.0] * 3
    for step, (got, want) in enumerate(zip(history, reference.history, strict=True), start=1):
        want_leaves = [want[n] for n in sorted(want)]
        scales = [max(s, float(np.max(np.abs(x)))) for s, x in zip(scales, want_leaves)]
        R.assert_close_per_leaf(jax.tree.leaves(got), want_leaves, scales, rtol, f"step {step}", sorted(want))


MASK = {"b": False, "s": True, "w": True}
CASES = {  # gradtx/reference keyword arguments
    "defaults": dict(learning_rate=0.01),
    "unclipped_regime": dict(learning_rate=0.05, gamma=1.0, update_interval=3),
    "optax_variant": dict(
        learning_rate=0.05, gamma=1.0, update_interval=3, bias_correction_mu=True, lagged_hessian=True
    ),
    "no_clip_every_step": dict(learning_rate=0.02, gamma=2.0, clip_threshold=None, update_interval=1, b2=0.9),
    "schedule_mask_decay": dict(
        learning_rate=lambda t: 0.05 / (1.0 + t), weight_decay=0.5, weight_decay_mask=MASK, clip_threshold=0.3, b1=0.5
    ),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_sophia_matches_reference(case, dtype):
    kwargs = CASES[case]
    reference = ref_sophia(start(), np_grad, np_hess, STEPS, **kwargs)
    with R.precision(dtype):
        history, state = run(sophia(**kwargs), R.DTYPES[dtype], "jit")
    assert_matches(history, reference, R.RTOL[dtype])
    assert isinstance(state[0], SophiaState) and int(state[0].count) == STEPS
    if case == "unclipped_regime":  # both branches of the clip are exercised
        assert reference.clipped > 0 and reference.unclipped > 0, (reference.clipped, reference.unclipped)


def test_sophia_equals_optax_with_its_two_switches():
    optax = pytest.importorskip("optax")
    kwargs = dict(learning_rate=0.05, gamma=1.0, update_interval=3, weight_decay=0.1)
    ours, _ = run(sophia(**kwargs, bias_correction_mu=True, lagged_hessian=True), np.float32, "jit")
    theirs, _ = run(optax.contrib.sophia(**kwargs), np.float32, "jit")
    assert_matches(
        ours, ref_sophia(start(), np_grad, np_hess, STEPS, **kwargs, bias_correction_mu=True, lagged_hessian=True), 1e-5
    )
    for a, b in zip(ours, theirs):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    paper, _ = run(sophia(**kwargs), np.float32, "jit")  # the paper's steps differ from Optax's
    assert not np.allclose(paper[-1]["w"], theirs[-1]["w"], rtol=1e-3)


def test_hyperparams_readable_and_settable():
    tx = sophia(0.05, gamma=0.01, update_interval=3)
    params = jax.tree.map(jnp.asarray, start(np.float32))
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.965,
        "b2": 0.99,
        "eps": 1e-8,
        "gamma": 0.01,
        "clip_threshold": 1.0,
        "update_interval": 3.0,
        "weight_decay": 1e-4,
        "learning_rate": 0.05,
    }
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=loss))
    history = []
    for step in range(8):
        if step == 3:  # from the 4th step on: gamma 1, a new estimate every 2 steps
            state = gradtx.set_hyperparams(state, gamma=1.0, update_interval=2)
        u, state = update(jax.grad(loss)(params), state, params)
        params = gradtx.apply_updates(params, u)
        history.append(params)
    changed = dict(gamma=lambda c: 0.01 if c < 3 else 1.0, update_interval=lambda c: 3 if c < 3 else 2)
    reference = ref_sophia(start(), np_grad, np_hess, 8, 0.05, **changed)
    assert_matches(history, reference, 1e-5)
    unchanged = ref_sophia(start(), np_grad, np_hess, 8, 0.05, update_interval=3)
    assert not np.allclose(unchanged.history[-1]["w"], reference.history[-1]["w"], rtol=1e-3)


def test_jit_equals_eager():
    kwargs = dict(learning_rate=0.05, gamma=1.0, update_interval=2)
    eager, s1 = run(sophia(**kwargs), np.float32, "eager", steps=3)  # estimates at steps 1 and 3
    jitted, s2 = run(sophia(**kwargs), np.float32, "jit", steps=3)
    for a, b in zip(eager, jitted):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert jax.tree.structure(s1) == jax.tree.structure(s2)


def test_estimator_runs_only_every_update_interval_steps():
    def counting():  # an estimator that returns the true diagonal and counts its calls
        def update(updates, state, params=None, obj_fn=None, **extra):
            return _jnp_hess(params), state + 1

        return gradtx.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)

    kwargs = dict(learning_rate=0.05, gamma=1.0, update_interval=5)
    history, state = run(sophia(**kwargs, hessian_diagonal_fn=counting()), np.float32, "jit")
    reference = ref_sophia(start(), np_grad, np_hess, STEPS, **kwargs)
    assert int(state[0].hessian_fn_state) == reference.estimates == 3  # steps 1, 6 and 11
    assert_matches(history, reference, 1e-5)


def _jnp_hess(params):
    return {n: A[n] + 3 * C[n] * x**2 for n, x in params.items()}


def test_sophia_converges_on_a_badly_conditioned_quadratic():
    # f = 1/2 sum lambda_i x_i^2, lambda log-spaced over [1, 1e4] (condition number 1e4), from x = 1
    lam = jnp.logspace(0, 4, 8)
    f = lambda x: 0.5 * jnp.sum(lam * x**2)  # noqa: E731
    budget = 400

    def final_loss(tx):
        def body(carry, _):
            x, s = carry
            u, s = tx.update(jax.grad(f)(x), s, x, obj_fn=f)
            return (gradtx.apply_updates(x, u), s), None

        (x, _), _ = jax.lax.scan(body, (jnp.ones(8), tx.init(jnp.ones(8))), None, budget)
        return float(f(x))

    tx = sophia(0.02, b1=0.9, weight_decay=0.0, update_interval=1)
    assert final_loss(tx) < 1e-8  # from f(x_0) = 6.8e3
    # gradient descent at its largest stable step 1.9 / lambda_max barely moves x_1 in the same budget
    sgd = gradtx.sgd(1.9e-4)
    assert final_loss(gradtx.GradientTransformation(sgd.init, lambda u, s, p, **kw: sgd.update(u, s, p))) > 0.4


def test_dtypes_vmap_and_complex():
    bf16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), start(np.float32))
    tx = sophia(0.01, mu_dtype=jnp.float32)
    state = tx.init(bf16)
    assert state[0].mu["w"].dtype == jnp.float32 and state[0].nu["w"].dtype == jnp.bfloat16
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, obj_fn=loss))
    params = bf16
    for _ in range(3):
        u, new_state = step(params, state)
        assert R.state_signature(new_state) == R.state_signature(state)
        params, state = gradtx.apply_updates(params, u), new_state
        assert all(p.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    # vmap over three starting points equals three separate runs
    tx = sophia(0.05, gamma=1.0, update_interval=2)
    starts = [jax.tree.map(lambda x, i=i: jnp.asarray(x * (1 + 0.5 * i), jnp.float32), start()) for i in range(3)]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *starts)
    one = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, obj_fn=loss))
    u, _ = jax.jit(jax.vmap(one))(batched, jax.vmap(tx.init)(batched))
    for i, p in enumerate(starts):
        single, _ = one(p, tx.init(p))
        np.testing.assert_allclose(u["w"][i], single["w"], rtol=1e-6)
    with pytest.raises(TypeError, match="sophia does not support complex parameters: 'z' is complex64"):
        sophia(0.1).init({"z": jnp.ones(2, jnp.complex64)})


def test_construction_and_update_errors():
    for kwargs, match in [
        (dict(b1=1.0), "^b1 must be in"),
        (dict(b2=-0.1), "^b2 must be in"),
        (dict(eps=0.0), "^eps must be in"),
        (dict(gamma=-1.0), "^gamma must be in"),
        (dict(clip_threshold=0.0), "^clip_threshold must be in"),
        (dict(update_interval=0), "^update_interval must be an integer >= 1"),
        (dict(update_interval=2.5), "^update_interval must be an integer >= 1"),
        (dict(weight_decay=-1.0), "^weight_decay must be in"),
        (dict(learning_rate=-1.0), "^learning_rate must be in"),
        (dict(print_win_rate_every_n_steps=-1), "^print_win_rate_every_n_steps must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            sophia(**{"learning_rate": 0.1, **kwargs})
    with pytest.raises(TypeError, match="learning_rate"):
        sophia(None)
    with pytest.raises(TypeError, match="b1 must be a number or an array"):
        sophia(0.1, b1=lambda t: 0.9)
    tx = sophia(0.1)
    w = jnp.ones(3)
    with pytest.raises(ValueError, match="sophia needs the loss function.*obj_fn=loss"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(ValueError, match="sophia needs the parameters"):
        tx.update(w, tx.init(w), obj_fn=loss)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": w}), {"w": jnp.ones(2)}, obj_fn=loss)


def test_win_rate_is_printed(capfd):
    tx = scale_by_sophia(gamma=1.0, verbose=True, print_win_rate_every_n_steps=2)
    w = jnp.array([0.01, 10.0])  # ratios 3.5 w at step 1, 0.1 w at step 3: one of two clipped
    f = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    update = jax.jit(lambda g, s: tx.update(g, s, w, obj_fn=f))
    state = tx.init(w)
    for _ in range(3):
        _, state = update(w, state)
    jax.effects_barrier()
    lines = [line for line in capfd.readouterr().out.splitlines() if "win rate" in line]
    assert lines == ["sophia: step 0, win rate 0.5", "sophia: step 2, win rate 0.5"], lines
