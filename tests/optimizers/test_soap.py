"""SOAP (Vyas et al. 2024) step by step against the NumPy reference of ``references/soap.py``,
written from the paper's algorithm box and the authors' special cases: the first step only takes the
eigenbases (numpy.linalg.eigh), every ``precondition_frequency`` steps the bases are refreshed by
one power-iteration step and a QR decomposition, with the second moment reordered along.

The trees hold a matrix, a matrix with one axis over ``max_precond_dim`` (identity basis there),
1-D leaves (rotated or not), a 0-d leaf and a rank-3 leaf; 12 steps with a refresh every 3. Each
first-step statistic has at most a one-dimensional null space, so the eigenbases are fixed up to
the signs of their columns, which leave the updates unchanged: the comparison is of updates and
parameters, never of bases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.soap import ScaleBySoapState, scale_by_soap, soap

import references as R
from helpers import run_problem
from references.soap import SOAP, eigenbasis, merged, ref_soap

F32_RTOL = 2e-5  # references.RTOL; eigh, QR and the rotations in float32 differ by at most 1.2e-6 here

SHAPES = {"w": (3, 4), "wide": (3, 7), "b": (2,), "long": (8,), "s": (), "t": (2, 3, 2)}
SMALL = {"w": (3, 4), "b": (2,), "s": ()}  # for the eager runs, which compile every operation anew
MERGE_SHAPES = {"k": (3, 2, 6), "w": (3, 4), "b": (2,), "s": ()}  # k merges into (6, 6)


def trees(shapes):
    def params(dtype, seed=0):
        rng = np.random.default_rng(seed)
        return {k: np.asarray(rng.standard_normal(s) + 0.5, dtype) for k, s in shapes.items()}

    def grads(dtype, steps, seed=1, zero_until=0):
        rng = np.random.default_rng(seed)
        return [
            {
                k: np.asarray(np.exp(0.5 * rng.standard_normal()) * rng.standard_normal(s), dtype)
                for k, s in shapes.items()
            }
            for _ in range(steps)
        ]

    return params, grads


def schedule(step):
    return 0.02 / (1 + 0.1 * step)


BASE = dict(precondition_frequency=3, max_precond_dim=6)
# (factory, id, kwargs, tree, the runs: dtype/mode pairs); every row compiles anew, so the
# options share rows and the eager runs are kept to the named optimizer's default row
BOTH = [("float32", "jit"), ("float64", "jit")]
CASES = [
    ("scale_by_soap", "default", dict(BASE), SHAPES, BOTH),
    (
        "scale_by_soap",
        "merge_1d_betas",
        dict(BASE, merge_dims=True, precondition_1d=True, b1=0.9, b2=0.99, shampoo_beta=0.8, eps=1e-6),
        MERGE_SHAPES,
        BOTH[:1],
    ),
    ("scale_by_soap", "normalize_no_bias", dict(BASE, normalize_grads=True, correct_bias=False), SHAPES, BOTH[:1]),
    ("soap", "default", dict(BASE, learning_rate=0.01), SHAPES, BOTH[:1]),
    ("soap", "small_eager", dict(BASE, learning_rate=0.01), SMALL, [("float32", "eager")]),
    (
        "soap",
        "schedule_1d",
        dict(BASE, learning_rate=schedule, weight_decay=0.1, precondition_1d=True),
        SHAPES,
        BOTH[:1],
    ),
]


def make(name, kwargs):
    if name == "soap":
        return soap(**kwargs), ref_soap(**kwargs)
    return scale_by_soap(**kwargs), SOAP(**kwargs)


@pytest.mark.parametrize(
    "name,kwargs,shapes,dtype,mode",
    [pytest.param(n, kw, s, d, m, id=f"{n}-{label}-{d}-{m}") for n, label, kw, s, runs in CASES for d, m in runs],
)
def test_matches_reference(name, kwargs, shapes, dtype, mode):
    tx, ref = make(name, kwargs)
    rtol = F32_RTOL if dtype == "float32" else None  # float64: references.RTOL, 1e-10
    ref = R.run_against_reference(tx, ref, dtype, mode, rtol=rtol, trees=trees(shapes))
    assert R.find(ref, SOAP).refreshes == 3  # steps 3, 6 and 9 of 0..11 refreshed the bases


def test_merged_shapes_follow_the_reference():
    assert merged((3, 2, 6), 6) == (6, 6)
    assert merged((2, 3, 5, 7), 30) == (30, 7)
    assert merged((20000, 3), 10000) == (20000, 3)
    tx = scale_by_soap(max_precond_dim=6, merge_dims=True)
    state = tx.init({"k": jnp.zeros((3, 2, 6)), "big": jnp.zeros((7, 2))})
    assert [x.shape for x in state.GG["k"]] == [(6, 6), (6, 6)]
    assert [x.shape for x in state.Q["big"]] == [(), (2, 2)]  # 7 > 6: no basis on that axis


def test_state_fields_and_placeholders():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(4), "s": jnp.asarray(1.0), "h": jnp.ones((2, 2), jnp.bfloat16)}
    state = scale_by_soap().init(params)
    assert isinstance(state, ScaleBySoapState)
    assert state._fields == ("count", "mu", "nu", "GG", "Q", "hyperparams")
    assert [x.shape for x in state.GG["w"]] == [(2, 2), (3, 3)] and state.GG["s"] == ()
    assert [x.shape for x in state.Q["b"]] == [()]  # 1-D without precondition_1d: plain Adam
    np.testing.assert_array_equal(state.Q["w"][1], np.eye(3))
    assert state.mu["h"].dtype == jnp.bfloat16 and state.nu["h"].dtype == jnp.bfloat16
    assert state.GG["h"][0].dtype == jnp.float32  # statistics and bases in at least float32


def test_first_step_moves_nothing_and_takes_the_eigenbasis():
    g = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    tx = scale_by_soap(b2=0.5)
    state = tx.init(jnp.zeros((2, 3)))
    u, state = tx.update(g, state)
    np.testing.assert_array_equal(u, 0.0)
    np.testing.assert_array_equal(state.mu, 0.0)
    np.testing.assert_array_equal(state.nu, 0.0)
    np.testing.assert_allclose(state.GG[0], 0.5 * g @ g.T)  # shampoo_beta = -1: b2
    np.testing.assert_allclose(np.abs(state.Q[0]), np.eye(2), atol=1e-6)  # eigenvalues 2 > 0.5
    # the named optimizer leaves the parameters alone on the first step, weight decay included
    opt, w = soap(1.0, weight_decay=0.5), jnp.ones((2, 3))
    u, _ = opt.update(g, opt.init(w), w)
    np.testing.assert_array_equal(u, 0.0)


def test_refresh_reorders_the_second_moment():
    # diagonal gradients whose large entry moves: the refresh must sort the basis and v with it
    tx = scale_by_soap(b1=0.0, b2=0.5, precondition_frequency=1)
    state = tx.init(jnp.zeros(2 * (2,)))
    for g in [jnp.diag(jnp.array([3.0, 1.0])), jnp.diag(jnp.array([0.1, 4.0])), jnp.diag(jnp.array([0.1, 5.0]))]:
        _, state = tx.update(g, state)
    ref = SOAP(b1=0.0, b2=0.5, precondition_frequency=1)
    ref.init([np.zeros((2, 2))])
    for g in [np.diag([3.0, 1.0]), np.diag([0.1, 4.0]), np.diag([0.1, 5.0])]:
        ref.update([g], None)
    # the bases are signed permutations here; v (reordered with them) must agree exactly in place
    np.testing.assert_allclose(state.nu, ref.v[0], rtol=1e-5)
    np.testing.assert_allclose(np.abs(state.Q[0]), np.abs(ref.Q[0][0]), atol=1e-6)
    assert abs(float(state.Q[0][1, 0])) > 0.99  # the second axis now leads


def test_hyperparams_are_readable_and_settable():
    shapes = {"w": (3, 4), "b": (2,)}
    make_params, make_grads = trees(shapes)
    params = jax.tree.map(jnp.asarray, make_params(np.float32))
    grads = make_grads(np.float32, 5)
    kwargs = dict(precondition_frequency=2, precondition_1d=True)
    tx = soap(0.1, **kwargs)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == pytest.approx(
        {"b1": 0.95, "b2": 0.95, "shampoo_beta": -1.0, "eps": 1e-8, "precondition_frequency": 2.0,
         "weight_decay": 0.01, "learning_rate": 0.1}
    )  # fmt: skip
    update = jax.jit(tx.update)
    for g in grads[:3]:
        _, state = update(jax.tree.map(jnp.asarray, g), state, params)
    state = gradtx.set_hyperparams(state, b1=0.5, shampoo_beta=0.3, learning_rate=0.3, precondition_frequency=1)
    got = []  # the frequency and shampoo_beta act after the update: the second one shows them
    for g in grads[3:]:
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        got.append(u)

    ref = ref_soap(0.1, **kwargs)
    leaves = R.leaves64
    ref.init(leaves(params))
    for g in grads[:3]:
        ref.update(leaves(g), leaves(params))
    soap_ref = R.find(ref, SOAP)
    soap_ref.b1, soap_ref.shampoo_beta, soap_ref.frequency = 0.5, 0.3, 1
    ref.refs[2].fn = lambda count: -0.3  # the learning rate of the reference's ScaleBySchedule
    for u, g in zip(got, grads[3:]):
        want = ref.update(leaves(g), leaves(params))
        for a, b in zip(leaves(u), want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert soap_ref.refreshes == 3  # after step 2 (every 2), then 3 and 4 (every 1)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\)"):
        scale_by_soap(b1=1.0)
    with pytest.raises(ValueError, match=r"^b2 must be in"):
        soap(b2=-0.1)
    with pytest.raises(ValueError, match=r"^shampoo_beta must be in \[0, 1\), or negative to use b2, got 1.5"):
        soap(shampoo_beta=1.5)
    with pytest.raises(ValueError, match=r"^eps must be in \(0.0, inf\)"):
        scale_by_soap(eps=0.0)
    with pytest.raises(ValueError, match="^precondition_frequency must be in"):
        scale_by_soap(precondition_frequency=0)
    with pytest.raises(TypeError, match="^precondition_frequency must be an int, got 2.5"):
        scale_by_soap(precondition_frequency=2.5)
    with pytest.raises(TypeError, match="^max_precond_dim must be an int"):
        soap(max_precond_dim=None)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        soap(weight_decay=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        soap(-1.0)
    with pytest.raises(TypeError, match="^b1 must be a number or an array"):
        scale_by_soap(b1=lambda t: 0.9)


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones((2, 3))}
    tx = soap()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones((3, 2))}, state, params)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, state)
    tx.update(params, state, params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


def test_jit_equals_eager():
    tx = soap(0.02, precondition_frequency=2, precondition_1d=True, merge_dims=True, max_precond_dim=6)
    make_params, make_grads = trees({"w": (3, 4), "b": (2,)})
    params = jax.tree.map(jnp.asarray, make_params(np.float32))
    s_eager = s_jit = tx.init(params)
    update = jax.jit(tx.update)
    for g in make_grads(np.float32, 4):
        g = jax.tree.map(jnp.asarray, g)
        u_eager, s_eager = tx.update(g, s_eager, params)
        u_jit, s_jit = update(g, s_jit, params)
        for a, b in zip(jax.tree.leaves(u_eager), jax.tree.leaves(u_jit)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.max(np.abs(a), initial=0.0))


def test_bfloat16_empty_tree_and_none_leaves():
    tx = soap(0.01, precondition_frequency=2, precondition_1d=True)
    params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(2, jnp.bfloat16)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in trees({"w": (2, 3), "b": (2,)})[1](np.float32, 4):
        updates, state = update(jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), g), state, params)
        params = gradtx.apply_updates(params, updates)
    assert all(p.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    assert state[0].mu["w"].dtype == jnp.bfloat16 and state[0].Q["w"][0].dtype == jnp.float32
    R.check_empty_tree(soap(), "jit")
    params = {"a": jnp.ones((2, 2)), "b": None}
    tx = soap(precondition_frequency=1)
    state = tx.init(params)
    for _ in range(2):
        u, state = jax.jit(tx.update)({"a": jnp.ones((2, 2)), "b": None}, state, params)
    assert u["b"] is None and bool(jnp.all(jnp.isfinite(u["a"])))


def test_complex_parameters_with_zero_imaginary_parts_step_as_real_ones():
    make_params, make_grads = trees({"w": (3, 4)})
    runs = []
    for dtype in (np.float32, np.complex64):
        tx = scale_by_soap(precondition_frequency=2)
        update = jax.jit(tx.update)
        params = jax.tree.map(lambda x: jnp.asarray(x, dtype), make_params(np.float32))  # noqa: B023
        state, out = tx.init(params), []
        for g in make_grads(np.float32, 5):
            u, state = update(jax.tree.map(lambda x: jnp.asarray(x, dtype), g), state)  # noqa: B023
            out.append(u)
        runs.append(out)
    for real, cplx in zip(*runs):
        for a, b in zip(jax.tree.leaves(real), jax.tree.leaves(cplx)):
            assert b.dtype == jnp.complex64
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 1e-30])
def test_zero_and_tiny_gradients_stay_finite(scale):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "s": jnp.asarray(0.5), "z": jnp.zeros((2, 2))}
    tx = soap(0.1, precondition_frequency=1, precondition_1d=True)
    update, state = jax.jit(tx.update), tx.init(params)
    for sign in (1.0, -0.5, 1.0):
        grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
        updates, state = update(grads, state, params)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((updates, state))), (scale, updates)


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100) as one rotated 10-vector,
    # 200 steps with a decaying rate: reduced 1.2e5 times on CPU in float32
    lr = lambda t: 0.3 * 0.97**t  # noqa: E731
    initial, final, _ = run_problem(soap(lr, weight_decay=0.0, precondition_1d=True), "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e4, (initial, final, initial / final)


def test_null_space_bases_are_canonical():
    # G^T G of a (2, 5) kernel has a 3-dimensional null space, where eigh's basis is set by rounding:
    # gradtx fills it with a basis that a 1e-7 change of G does not move, the reference's (built
    # another way); with every column signed, the whole basis matches
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2, 5))
    tx = scale_by_soap()
    update, state = jax.jit(tx.update), tx.init(jnp.zeros((2, 5)))
    bases = [np.asarray(update(jnp.asarray(g * f, jnp.float32), state)[1].Q[1]) for f in (1.0, 1 + 1e-7 * g)]
    np.testing.assert_allclose(bases[1], bases[0], atol=2e-6)
    np.testing.assert_allclose(bases[0], eigenbasis(0.05 * g.T @ g), atol=2e-6)
    # a full-rank statistic keeps eigh's basis, up to the signs; a zero one gives the identity
    h = rng.standard_normal((4, 4))
    q = np.asarray(
        jax.jit(scale_by_soap().update)(jnp.asarray(h, jnp.float32), scale_by_soap().init(jnp.zeros((4, 4))))[1].Q[0]
    )
    np.testing.assert_allclose(np.abs(q.T @ np.linalg.eigh(h @ h.T)[1][:, ::-1]), np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(update(jnp.zeros((2, 5)), state)[1].Q[1], np.eye(5))
    # the refresh's QR of a rank-2 statistic of a 6-vector: 4 dependent columns, filled the same way
    kwargs = dict(precondition_frequency=1, precondition_1d=True)
    tx, ref = scale_by_soap(**kwargs), SOAP(**kwargs)
    state = tx.init(jnp.zeros(6))
    ref.init([np.zeros(6)])
    for g in rng.standard_normal((2, 6)):
        state = jax.jit(tx.update)(jnp.asarray(g, jnp.float32), state)[1]
        ref.update([g], None)
    np.testing.assert_allclose(np.asarray(state.Q[0]), ref.Q[0][0], atol=2e-5)
