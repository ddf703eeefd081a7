"""Sharpness-aware minimization (Foret et al. 2021) and ``normalize``.

SAM with ``adv_optimizer = chain(normalize(), sgd(rho))`` and ``optimizer = sgd(eta)`` runs
against the NumPy reference of the paper's Algorithm 1 (tests/references/sam.py), in both modes:
the default one, where the loop alternates adversarial and outer updates, and the opaque one,
where ``update`` calls ``grad_fn`` itself. The loss couples its three leaves and is not quadratic.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.sam import NormalizeState, SAMState, normalize, sam

import references as R
from references.sam import ref_sam

OUTER_STEPS = 10
A = {"b": np.array([3.0, 1.0, 0.5, 2.0]), "s": np.array(0.7), "w": np.linspace(0.2, 2.0, 12).reshape(3, 4)}
C = {"b": 0.5, "s": 1.0, "w": 0.2}


def np_grad(w):
    g = {n: A[n] * x + C[n] * x**3 for n, x in w.items()}
    g["w"] = g["w"] + 0.3 * np.sum(w["b"])  # the coupling 0.3 sum(w) sum(b)
    g["b"] = g["b"] + 0.3 * np.sum(w["w"])
    return g


def loss(p):
    local = sum(jnp.sum(A[n] / 2 * x**2 + C[n] / 4 * x**4) for n, x in p.items())
    return local + 0.3 * jnp.sum(p["w"]) * jnp.sum(p["b"])


def grad_fn(params, i):
    return jax.grad(loss)(params)


def start(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "b": np.asarray(rng.standard_normal(4), dtype),
        "s": np.asarray(1.5, dtype),
        "w": np.asarray(rng.standard_normal((3, 4)), dtype),
    }


def paper_sam(rho, lr, **kwargs):
    return sam(gradtx.sgd(lr), gradtx.chain(normalize(), gradtx.sgd(rho)), **kwargs)


def run(tx, dtype, mode, outer_steps, sync_period, opaque, params=None):
    """The parameters after every update, and the state."""
    params = jax.tree.map(jnp.asarray, start(dtype) if params is None else params)
    state = tx.init(params)

    def step(p, s):
        extra = dict(grad_fn=grad_fn) if opaque else {}
        u, s = tx.update(jax.grad(loss)(p), s, p, **extra)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step) if mode == "jit" else step
    history = []
    for _ in range(outer_steps * (1 if opaque else sync_period)):
        params, state = step(params, state)
        history.append(params)
    return history, state


def check(got, want, rtol, what):
    for n in sorted(want):
        scale = float(np.max(np.abs(want[n])))
        np.testing.assert_allclose(got[n], want[n], rtol=rtol, atol=rtol * scale, err_msg=f"{what} at {n}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opaque", [False, True], ids=["loop", "opaque"])
@pytest.mark.parametrize("sync_period", [2, 3])
def test_sam_matches_the_papers_algorithm(sync_period, opaque, dtype):
    rho, lr = 0.05, 0.1
    want, adversarial = ref_sam(start(), np_grad, OUTER_STEPS, rho, lr, ascent_steps=sync_period - 1)
    with R.precision(dtype):
        history, state = run(
            paper_sam(rho, lr, sync_period=sync_period, opaque_mode=opaque),
            R.DTYPES[dtype],
            "jit",
            OUTER_STEPS,
            sync_period,
            opaque,
        )
    rtol = 1e-5 if dtype == "float32" else 1e-10
    outer = history if opaque else history[sync_period - 1 :: sync_period]
    assert len(outer) == OUTER_STEPS
    for t, (got, w) in enumerate(zip(outer, want), start=1):
        check(got, w, rtol, f"outer step {t}")
    if not opaque:  # the loop sees the adversarial points themselves
        for t in range(OUTER_STEPS):
            for i in range(sync_period - 1):
                check(history[t * sync_period + i], adversarial[t][i], rtol, f"cycle {t}, adversarial step {i}")
        assert int(state.steps_since_sync) == 0
    else:
        assert state.cache is None


@pytest.mark.parametrize("reset_state", [True, False])
def test_stateful_optimizers_both_modes_agree_and_equal_optax(reset_state):
    def ours(opaque):
        adv = gradtx.chain(normalize(), gradtx.sgd(0.05, momentum=0.9))
        return sam(gradtx.adam(0.05), adv, 3, reset_state, opaque)

    loop, state = run(ours(False), np.float32, "jit", 6, 3, False)
    opaque, _ = run(ours(True), np.float32, "jit", 6, 3, True)
    for a, b in zip(loop[2::3], opaque):
        check(a, b, 1e-5, "loop vs opaque")
    momentum = jax.tree.leaves(state.adv_state)
    assert all(float(jnp.max(jnp.abs(m))) == 0 for m in momentum if m.ndim > 0) == reset_state
    optax = pytest.importorskip("optax")
    adv = optax.chain(optax.contrib.normalize(), optax.sgd(0.05, momentum=0.9))
    theirs, _ = run(optax.contrib.sam(optax.adam(0.05), adv, 3, reset_state), np.float32, "jit", 6, 3, False)
    for a, b in zip(loop, theirs):
        check(a, b, 1e-5, "gradtx vs optax")


def test_hyperparams_of_both_optimizers_readable_and_settable():
    tx = paper_sam(0.05, 0.1)
    params = jax.tree.map(jnp.asarray, start(np.float32))
    state = tx.init(params)
    names = gradtx.hyperparams(state)
    assert sorted(names.values()) == [0.05, 0.1] and len(names) == 2, names
    outer_lr = next(k for k, v in names.items() if v == 0.1)
    assert outer_lr.startswith("opt_state/"), outer_lr
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    history = []
    for update in range(8):
        if update == 4:  # after two outer steps: the outer learning rate becomes 0.3
            state = gradtx.set_hyperparams(state, **{outer_lr: 0.3})
        u, state = step(params, state)
        params = gradtx.apply_updates(params, u)
        history.append(params)
    first, _ = ref_sam(start(), np_grad, 2, 0.05, 0.1)
    then, _ = ref_sam(first[-1], np_grad, 2, 0.05, 0.3)
    for got, want in zip(history[1::2], first + then):
        check(got, want, 1e-5, "after set_hyperparams")


def test_jit_equals_eager_in_both_modes():
    for opaque in (False, True):
        eager, _ = run(paper_sam(0.05, 0.1, sync_period=2, opaque_mode=opaque), np.float32, "eager", 2, 2, opaque)
        jitted, _ = run(paper_sam(0.05, 0.1, sync_period=2, opaque_mode=opaque), np.float32, "jit", 2, 2, opaque)
        for a, b in zip(eager, jitted):
            check(a, b, 1e-6, f"eager vs jit, opaque={opaque}")


def test_sam_converges_on_a_quadratic():
    # f = 1/2 sum lambda_i x_i^2, lambda = 1, 2, 4, from x = 1 (f = 3.5): within 30 outer steps
    # SAM reaches 1e-4; the rho-ball keeps it at a distance O(rho) of the minimum (f ~ 9e-5)
    lam = jnp.array([1.0, 2.0, 4.0])
    f = lambda x: 0.5 * jnp.sum(lam * x**2)  # noqa: E731

    def final_loss(opaque):
        tx = paper_sam(0.01, 0.2, opaque_mode=opaque)
        extra = dict(grad_fn=lambda p, i: jax.grad(f)(p)) if opaque else {}
        step = jax.jit(lambda x, s: tx.update(jax.grad(f)(x), s, x, **extra))
        x, state = jnp.ones(3), tx.init(jnp.ones(3))
        for _ in range(30 * (1 if opaque else 2)):
            u, state = step(x, state)
            x = gradtx.apply_updates(x, u)
        return float(f(x))

    for opaque in (False, True):
        assert 1e-5 < final_loss(opaque) < 1e-4, opaque


def test_batch_axis_name_averages_the_outer_gradient_only():
    curvatures = jnp.array([[1.0, 3.0], [2.0, 0.5]])  # one loss per mapped device
    tx = paper_sam(0.05, 0.1, opaque_mode=True, batch_axis_name="batch")

    def one(a, w):
        f = lambda p: 0.5 * jnp.sum(a * p**2)  # noqa: E731
        u, _ = tx.update(jax.grad(f)(w), tx.init(w), w, grad_fn=lambda p, i: jax.grad(f)(p))
        return w + u

    got = jax.vmap(one, axis_name="batch", in_axes=(0, None))(curvatures, jnp.ones(2))
    a, w = np.asarray(curvatures), np.ones(2)
    g = a * w
    w_adv = w + 0.05 * g / np.linalg.norm(g, axis=1, keepdims=True)  # each device its own ascent
    want = w - 0.1 * np.mean(a * w_adv, axis=0)  # the outer gradient averaged over devices
    np.testing.assert_allclose(got, np.stack([want, want]), rtol=1e-6)


def test_normalize():
    tx = normalize()
    assert tx.init({"a": jnp.ones(2)}) == NormalizeState()
    tree = {"a": jnp.array([3.0, 0.0]), "b": jnp.array(4.0)}
    u, _ = jax.jit(tx.update)(tree, tx.init(tree))
    np.testing.assert_allclose(u["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u["b"], 0.8, rtol=1e-6)
    zero, _ = tx.update(jnp.zeros(3), tx.init(None))
    np.testing.assert_array_equal(zero, np.zeros(3))  # no 0/0
    tiny, _ = tx.update(jnp.array([3e-30, 4e-30]), tx.init(None))
    np.testing.assert_allclose(tiny, [0.6, 0.8], rtol=1e-6)
    low, _ = tx.update(jnp.array([3.0, 4.0], jnp.bfloat16), tx.init(None))
    assert low.dtype == jnp.bfloat16
    complex_, _ = tx.update(jnp.array([3j, 4.0], jnp.complex64), tx.init(None))
    np.testing.assert_allclose(complex_, [0.6j, 0.8], rtol=1e-6)


def test_bfloat16_state_is_stable_in_both_modes():
    def check_mode(opaque):
        tx = paper_sam(0.05, 0.1, opaque_mode=opaque)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), start(np.float32))
        state = tx.init(params)
        extra = dict(grad_fn=grad_fn) if opaque else {}
        step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, **extra))
        for _ in range(3):
            u, new_state = step(params, state)
            assert R.state_signature(new_state) == R.state_signature(state)
            params, state = gradtx.apply_updates(params, u), new_state
            assert all(p.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))

    check_mode(False)
    check_mode(True)


def test_errors():
    sgd = gradtx.sgd(0.1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="^sync_period must be an integer >= 1"):
            sam(sgd, sgd, sync_period=bad)
    with pytest.raises(TypeError, match="^reset_state must be True or False"):
        sam(sgd, sgd, reset_state="yes")
    with pytest.raises(ValueError, match="batch_axis_name is used in opaque mode only"):
        sam(sgd, sgd, batch_axis_name="batch")
    w = jnp.ones(2)
    tx = sam(sgd, sgd, opaque_mode=True)
    with pytest.raises(ValueError, match="needs the gradient function.*grad_fn=grad_fn"):
        tx.update(w, tx.init(w), w)
    tx = sam(sgd, sgd)
    with pytest.raises(ValueError, match="sam needs the parameters"):
        tx.update(w, tx.init(w))
    # sync_period=1: every update is an outer step, the optimizer alone
    tx = sam(sgd, sgd, sync_period=1)
    u, state = tx.update(w, tx.init(w), w, value=1.0, grad=w)  # extra arguments are passed along
    np.testing.assert_allclose(u, -0.1 * w, rtol=1e-6)
    assert isinstance(state, SAMState)
