"""AdaHessian (Yao et al. 2020): step by step against the NumPy reference of Algorithm 1
(tests/references/adahessian.py), on the harness's test tree (a 4-D leaf among five) and an
objective with a known, non-diagonal Hessian: f(x) = x^T Q x / 2 + c/4 sum x^4, x the leaves
flattened in tree order. The coupling inside the 4-D leaf makes some Hutchinson estimates
negative, so the spatial average of their absolute values differs from the paper's plain mean.
The probe vectors are drawn here, from the estimator's documented key sequence, and handed to
the reference, which multiplies them by the exact Hessian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.adahessian import ScaleByAdaHessianState, adahessian, scale_by_adahessian

import references as R
from references.adahessian import AdaHessian, block_average

STEPS = 12
C = 0.02  # the quartic coefficient

# the leaves of R.param_tree in tree order: blocks/0 (2, 1, 3, 2), blocks/1/0 (), blocks/1/1 (5,),
# dense/b (4,), dense/w (3, 4)
SIZES = [12, 1, 5, 4, 12]
N = sum(SIZES)


def _q():
    """Q: curvatures from 0.5 to 40 per leaf; the 4-D leaf's entries coupled (about +-0.6 each, so
    z (Q z) is often negative where its diagonal is 1), the others diagonally dominant."""
    rng = np.random.default_rng(7)
    diag = np.concatenate([np.linspace(0.2, 4.0, 12), [2.0], np.full(5, 40.0), np.full(4, 0.5), np.linspace(1, 4, 12)])
    q = np.diag(diag)
    kernel = 0.8 * rng.standard_normal((12, 12))
    q[:12, :12] += np.triu(kernel, 1) + np.triu(kernel, 1).T
    w = 0.05 * rng.standard_normal((12, 12))  # dense/w: weakly coupled
    q[-12:, -12:] += np.triu(w, 1) + np.triu(w, 1).T
    return q


Q = _q()


def loss(params):
    x = jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree.leaves(params)])
    return 0.5 * x @ jnp.asarray(Q, x.dtype) @ x + C / 4 * jnp.sum(x**4)


def np_hvp(leaves, z):
    """H(x) z = Q z + 3 c x^2 z, on flat lists of leaves."""
    x = np.concatenate([np.reshape(p, -1) for p in leaves])
    zf = np.concatenate([np.reshape(v, -1) for v in z])
    hz = Q @ zf + 3 * C * x**2 * zf
    return [part.reshape(np.shape(p)) for part, p in zip(np.split(hz, np.cumsum(SIZES)[:-1]), leaves)]


def probes(dtype, n, seed=0):
    """The first ``n`` Rademacher vectors of the default estimator (seed 0): each estimate splits the
    key into the next key and the key that draws z, one key per leaf."""
    params = jax.tree.map(jnp.asarray, R.param_tree(dtype))  # the draws depend on the dtype
    key, out = jax.random.PRNGKey(seed), []
    for _ in range(n):
        key, draw = jax.random.split(key)
        out.append(
            [
                np.asarray(z, np.float64)
                for z in jax.tree.leaves(gradtx.tree.random_like(draw, params, jax.random.rademacher))
            ]
        )
    return out


def with_loss(tx):
    """``tx`` with the objective passed as ``obj_fn``, for the harness (which passes none)."""
    return gradtx.GradientTransformation(tx.init, lambda u, s, p=None: tx.update(u, s, p, obj_fn=loss))


MASK = {"dense": {"w": True, "b": False}, "blocks": [True, (False, True)]}
MASK_LIST = [True, False, True, False, True]  # MASK's leaves in tree order
CASES = {  # gradtx keyword arguments (weight_decay_mask=True: MASK)
    "defaults": dict(),
    "power_half_every_3_other_axes_decay_mask_schedule": dict(
        learning_rate=lambda t: 0.1 / (1.0 + 0.1 * t),
        b1=0.5,
        hessian_power=0.5,
        update_interval=3,
        spatial_axes=(1, 2),
        weight_decay=0.1,
        weight_decay_mask=True,
    ),
    "every_2_no_averaging": dict(learning_rate=0.05, b2=0.9, eps=1e-3, update_interval=2, spatial_axes=None),
}
# every case in float32 and float64 under jit; eager (a Hessian-vector product traced per step) once
RUNS = [(case, dtype, "jit") for case in CASES for dtype in ("float32", "float64")] + [("defaults", "float32", "eager")]


@pytest.mark.parametrize("case,dtype,mode", RUNS)
def test_adahessian_matches_reference(case, dtype, mode):
    kwargs = dict(CASES[case])
    masked = kwargs.pop("weight_decay_mask", False)
    tx = adahessian(**kwargs, **({"weight_decay_mask": MASK} if masked else {}))
    with R.precision(dtype):
        z = probes(R.DTYPES[dtype], STEPS)
    ref = AdaHessian(np_hvp, z, **kwargs, **({"weight_decay_mask": MASK_LIST} if masked else {}))
    ref = R.run_against_reference(with_loss(tx), ref, dtype, mode, steps=STEPS)
    interval = kwargs.get("update_interval", 1)
    assert ref.estimates == len(range(0, STEPS, interval))
    if kwargs.get("spatial_axes", (0, 1)) is not None:  # the absolute value changed some block averages
        assert ref.negative_in_blocks > 0


def test_state_holds_the_paper_quantities_and_spatial_blocks():
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    for axes in [(0, 1), (-3, -2)]:  # Flax's layout, and negative axes
        tx = scale_by_adahessian(spatial_axes=axes)
        state = tx.init(params)
        assert isinstance(state, ScaleByAdaHessianState) and state._fields[:4] == ("count", "m", "v", "D")
        _, state = tx.update(params, state, params, obj_fn=loss)
        kernel = np.asarray(state.D["blocks"][0])
        spread = np.ptp(kernel, axis=tuple(a % 4 for a in axes))
        assert np.all(spread == 0) and np.ptp(kernel) > 0, (axes, kernel)  # constant on each block only
        assert np.ptp(np.asarray(state.D["dense"]["w"])) > 0  # a matrix is not averaged
        z = probes(np.float32, 1)[0]
        hz = np_hvp(R.leaves64(R.param_tree(np.float32)), z)
        want = [block_average(a * b, axes) for a, b in zip(z, hz)]
        for got, expected in zip(jax.tree.leaves(state.D), want):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_hyperparams_readable_and_settable():
    tx = adahessian(0.1, update_interval=3)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-4,
        "hessian_power": 1.0,
        "update_interval": 3.0,
        "weight_decay": 0.0,
        "learning_rate": 0.1,
    }
    grads = R.grad_trees(np.float32, 10)
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=loss))
    p, s, history = params, state, []
    for step in range(10):
        if step == 4:  # from the 5th step on: k = 0.5, a new estimate every 2 steps (steps 5, 7, 9)
            s = gradtx.set_hyperparams(s, hessian_power=0.5, update_interval=2)
        u, s = update(jax.tree.map(jnp.asarray, grads[step]), s, p)
        p = gradtx.apply_updates(p, u)
        history.append(jax.tree.leaves(p))

    def reference(**change):
        ref, theta, out = (
            AdaHessian(np_hvp, probes(np.float32, 10), 0.1, **change),
            R.leaves64(R.param_tree(np.float32)),
            [],
        )
        ref.init(theta)
        for g in grads:
            theta = [a + b for a, b in zip(theta, ref.update(R.leaves64(g), theta))]
            out.append(theta)
        return out

    changed = reference(hessian_power=lambda c: 1.0 if c < 4 else 0.5, update_interval=lambda c: 3 if c < 4 else 2)
    scales = [0.0] * len(SIZES)
    for step, (got, want) in enumerate(zip(history, changed), start=1):
        scales = [max(a, float(np.max(np.abs(x)))) for a, x in zip(scales, want)]
        R.assert_close_per_leaf(got, want, scales, R.RTOL["float32"], f"step {step}", R.leaf_paths(params))
    unchanged = reference(update_interval=3)
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(changed[-1], unchanged[-1]))


def test_jit_equals_eager():
    tx = adahessian(0.1, update_interval=2)
    params = {"k": jnp.linspace(-1.0, 1.0, 16).reshape(2, 2, 2, 2), "b": jnp.array([0.5, -2.0])}
    f = lambda p: jnp.sum(jnp.cos(p["k"]) * p["k"] ** 2) + jnp.sum(p["b"] ** 4) + p["k"][0, 0, 0, 0] * p["b"][0]  # noqa: E731

    def run(update):
        p, s, out = params, tx.init(params), []
        for _ in range(3):  # estimates at steps 1 and 3
            u, s = update(jax.grad(f)(p), s, p)
            p = gradtx.apply_updates(p, u)
            out.append(p)
        return out, s

    eager, s1 = run(lambda g, s, p: tx.update(g, s, p, obj_fn=f))
    jitted, s2 = run(jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=f)))
    for a, b in zip(eager, jitted):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert R.state_signature(s1) == R.state_signature(s2)


def test_estimator_runs_every_update_interval_steps_and_v_reuses_its_estimate():
    def counting():  # returns the diagonal 2 everywhere, and counts its calls
        def update(updates, state, params=None, obj_fn=None, **extra):
            return jax.tree.map(lambda p: jnp.full_like(p, 2.0), params), state + 1

        return gradtx.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)

    tx = scale_by_adahessian(b2=0.5, eps=0.0, update_interval=5, hessian_diagonal_fn=counting())
    w = jnp.ones(3)
    state = tx.init(w)
    update = jax.jit(lambda g, s: tx.update(g, s, w, obj_fn=jnp.sum))
    for _ in range(12):
        u, state = update(w, state)
    assert int(state.hessian_fn_state) == 3  # steps 1, 6 and 11
    # v averaged D^2 = 4 at all 12 steps: v_12 = (1 - 0.5^12) 4, and the step is m_hat / 2 = 1 / 2
    np.testing.assert_allclose(state.v, (1 - 0.5**12) * 4.0, rtol=1e-6)
    np.testing.assert_allclose(u, 0.5, rtol=1e-6)


def test_adahessian_converges_on_a_badly_conditioned_quadratic():
    # f = 1/2 sum lambda_i x_i^2, lambda log-spaced over [1, 1e4] (condition number 1e4), from x = 1
    lam = jnp.logspace(0, 4, 8)
    f = lambda x: 0.5 * jnp.sum(lam * x**2)  # noqa: E731
    budget = 200

    def final_loss(tx):
        def body(carry, _):
            x, s = carry
            u, s = tx.update(jax.grad(f)(x), s, x, obj_fn=f)
            return (gradtx.apply_updates(x, u), s), None

        (x, _), _ = jax.lax.scan(body, (jnp.ones(8), tx.init(jnp.ones(8))), None, budget)
        return float(f(x))

    assert final_loss(adahessian()) < 1e-8  # the defaults, from f(x_0) = 6.8e3
    # the same with k = 0 (no curvature: Adam's momentum at a fixed step) is far from the minimum
    assert final_loss(adahessian(1e-4, hessian_power=0.0)) > 1.0
    # gradient descent at its largest stable step 1.9 / lambda_max barely moves x_1 in the same budget
    sgd = gradtx.sgd(1.9e-4)
    assert final_loss(gradtx.GradientTransformation(sgd.init, lambda u, s, p, **kw: sgd.update(u, s, p))) > 0.4


def test_dtypes_vmap_and_complex():
    bf16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), R.param_tree(np.float32))
    tx = adahessian(0.01, mu_dtype=jnp.float32)
    state = tx.init(bf16)
    assert state[0].m["dense"]["w"].dtype == jnp.float32 and state[0].v["dense"]["w"].dtype == jnp.bfloat16
    assert state[0].D["blocks"][0].dtype == jnp.bfloat16
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, obj_fn=loss))
    params = bf16
    for _ in range(3):
        u, new_state = step(params, state)
        assert R.state_signature(new_state) == R.state_signature(state)
        params, state = gradtx.apply_updates(params, u), new_state
        assert all(p.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    with jax.enable_x64(True):  # float64 parameters keep float64 state
        p64 = jax.tree.map(jnp.asarray, R.param_tree(np.float64))
        assert {x.dtype for x in jax.tree.leaves(adahessian().init(p64)[0][1:4])} == {jnp.dtype("float64")}
    # vmap over three starting points equals three separate runs
    tx = adahessian(0.05, update_interval=2)
    starts = [
        jax.tree.map(lambda x, i=i: jnp.asarray(x * (1 + 0.5 * i), jnp.float32), R.param_tree(np.float64))
        for i in range(3)
    ]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *starts)
    one = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, obj_fn=loss))
    u, _ = jax.jit(jax.vmap(one))(batched, jax.vmap(tx.init)(batched))
    for i, p in enumerate(starts):
        single, _ = one(p, tx.init(p))
        np.testing.assert_allclose(u["blocks"][0][i], single["blocks"][0], rtol=1e-5)
    with pytest.raises(TypeError, match="scale_by_adahessian does not support complex parameters: 'z' is complex64"):
        adahessian().init({"z": jnp.ones(2, jnp.complex64)})


def test_construction_and_update_errors():
    for kwargs, match in [
        (dict(b1=1.0), "^b1 must be in"),
        (dict(b2=-0.1), "^b2 must be in"),
        (dict(eps=-1e-4), "^eps must be in"),
        (dict(hessian_power=1.5), "^hessian_power must be in"),
        (dict(hessian_power=-0.5), "^hessian_power must be in"),
        (dict(update_interval=0), "^update_interval must be an integer >= 1"),
        (dict(update_interval=2.5), "^update_interval must be an integer >= 1"),
        (dict(weight_decay=-1.0), "^weight_decay must be in"),
        (dict(learning_rate=-1.0), "^learning_rate must be in"),
        (dict(spatial_axes=(0, 4)), "^spatial_axes must be None or a tuple of distinct axes"),
        (dict(spatial_axes=(0, -4)), "^spatial_axes must be None or a tuple of distinct axes"),
        (dict(spatial_axes=()), "^spatial_axes must be None or a tuple of distinct axes"),
        (dict(spatial_axes=0), "^spatial_axes must be None or a tuple of distinct axes"),
    ]:
        with pytest.raises(ValueError, match=match):
            adahessian(**kwargs)
    with pytest.raises(TypeError, match="learning_rate"):
        adahessian(None)
    with pytest.raises(TypeError, match="b1 must be a number or an array"):
        adahessian(b1=lambda t: 0.9)
    tx = adahessian()
    w = jnp.ones(3)
    with pytest.raises(ValueError, match="adahessian needs the loss function.*obj_fn=loss"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(TypeError, match="adahessian: obj_fn must be a function"):
        tx.update(w, tx.init(w), w, obj_fn=1.0)
    with pytest.raises(ValueError, match="adahessian needs the parameters"):
        tx.update(w, tx.init(w), obj_fn=jnp.sum)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": w}), {"w": jnp.ones(2)}, obj_fn=jnp.sum)
