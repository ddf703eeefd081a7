"""NorMuon (scale_by_normuon, normuon; Li et al. 2025, arXiv 2510.05491) step by step against the
NumPy reference NorMuonRef of tests/references/muon.py (the paper's Algorithm 1, and the authors'
code's rescale with ``consistent_rms=None``), 12 steps on a tree with wide and tall matrices, a
3-D leaf with a batch axis and Adam's vector leaf; and the Polar Express preset of the
Newton-Schulz iteration (Amsel et al. 2025, arXiv 2505.16932) against the published coefficients
and against numpy's SVD.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.muon import muon
from gradtx.optimizers.normuon import NorMuonState, normuon, scale_by_normuon
from gradtx.transforms.orthogonalization import MuonDimensionNumbers, newton_schulz

import references as R
from helpers import run_problem
from references.muon import NorMuonRef, polar_express_coeffs
from references.muon import newton_schulz as ref_newton_schulz

D = MuonDimensionNumbers
SHAPES = {"b": (4,), "k": (2, 3, 4), "t": (6, 3), "w": (4, 6)}  # leaves in this (sorted) order
DIMS = {"b": None, "k": D(1, 2), "t": D(), "w": D()}  # k: batch axis 0, a 3 x 4 matrix per slice
REF_DIMS = [None, ((1,), (2,)), ((0,), (1,)), ((0,), (1,))]
PLAIN_DIMS = [None, None, ((0,), (1,)), ((0,), (1,))]  # normuon's default: the 2-D leaves


def params_tree(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.standard_normal(s) + 0.3, dtype) for k, s in SHAPES.items()}


def grads_trees(dtype, steps=R.STEPS, seed=1, zero_until=0):
    rng = np.random.default_rng(seed)
    return [
        {k: np.asarray(np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


TREES = (params_tree, grads_trees)
MATRICES = {k: v for k, v in SHAPES.items() if k != "b"}


def matrices_params(dtype, seed=0):
    return {k: v for k, v in params_tree(dtype, seed).items() if k != "b"}


def matrices_grads(dtype, steps=R.STEPS, seed=1, zero_until=0):
    return [{k: v for k, v in g.items() if k != "b"} for g in grads_trees(dtype, steps, seed)]


def schedule(count):
    return 0.05 / (1 + 0.1 * count)


# (id, make gradtx, make the reference); the reference takes the same hyperparameters
CASES = [
    (
        "scale_by_normuon-3d",
        lambda: scale_by_normuon(weight_dimension_numbers={k: v for k, v in DIMS.items() if k != "b"}),
        lambda: NorMuonRef(1.0, REF_DIMS[1:], muon_only=True),
        (matrices_params, matrices_grads),
    ),
    (
        "scale_by_normuon-authors-polar",
        lambda: scale_by_normuon(
            "polar_express", 6, beta=0.8, beta2=0.5, nesterov=False, consistent_rms=None, weight_dimension_numbers=D()
        ),
        lambda: NorMuonRef(
            1.0,
            [((0,), (1,))] * 2,
            beta=0.8,
            beta2=0.5,
            nesterov=False,
            rms=None,
            muon_only=True,
            coeffs=polar_express_coeffs(6),
            steps=6,
        ),  # fmt: skip
        (
            lambda d, seed=0: {k: v for k, v in params_tree(d).items() if k in "tw"},
            lambda d, steps=R.STEPS, zero_until=0: [{k: g[k] for k in "tw"} for g in grads_trees(d, steps)],
        ),  # fmt: skip
    ),
    ("normuon-default", lambda: normuon(0.05), lambda: NorMuonRef(0.05, PLAIN_DIMS), TREES),
    (
        "normuon-3d-decay-schedule",
        lambda: normuon(
            schedule,
            beta2=0.9,
            weight_decay=0.1,
            weight_decay_mask={"k": True, "t": False, "w": True, "b": True},
            muon_weight_dimension_numbers=DIMS,
            adam_learning_rate=0.01,
            adam_weight_decay=0.2,
            consistent_rms=0.3,
        ),
        lambda: NorMuonRef(
            schedule,
            REF_DIMS,
            beta2=0.9,
            weight_decay=0.1,
            decay=[True, True, False, True],
            adam_learning_rate=0.01,
            adam_weight_decay=0.2,
            rms=0.3,
        ),
        TREES,
    ),  # fmt: skip
]


# every case under jit in float32 and float64; the fullest one eager too (test_jit_equals_eager holds the rest)
RUNS = [(c, d, "jit") for c in CASES for d in ("float32", "float64")] + [(CASES[-1], "float32", "eager")]


@pytest.mark.parametrize("case,dtype,mode", [pytest.param(c, d, m, id=f"{c[0]}-{m}-{d}") for c, d, m in RUNS])
def test_matches_reference(case, dtype, mode):
    _, make, make_ref, trees = case
    R.run_against_reference(make(), make_ref(), dtype, mode, trees=trees)


def test_first_step_normalizes_each_neuron():
    """Step 1: v_1 = (1 - beta2) mean_in(O^2), so every output neuron (column) of O_hat has the
    same RMS, and the whole update the RMS 0.2; Muon's O had columns of different norms."""
    g = jnp.asarray(np.random.default_rng(3).standard_normal((8, 3)) * np.array([1.0, 5.0, 0.1]), jnp.float32)
    tx = scale_by_normuon()
    u, state = tx.update(g, tx.init(jnp.zeros((8, 3))))
    assert state.v.shape == (1, 3)
    o = newton_schulz(0.05 * g)  # (1 - beta) g then Nesterov: (1 - beta) g + beta (1 - beta) g
    np.testing.assert_allclose(state.v, 0.05 * jnp.mean(o**2, axis=0, keepdims=True), rtol=1e-5)
    col_rms = jnp.sqrt(jnp.mean(u**2, axis=0))
    np.testing.assert_allclose(col_rms, 0.2, rtol=1e-5)
    assert float(jnp.std(jnp.sqrt(jnp.mean(o**2, axis=0)))) > 1e-3  # O's neurons were unequal


def test_state_layout_and_dtypes():
    params = {"k": jnp.zeros((2, 3, 4)), "w": jnp.zeros((4, 6), jnp.bfloat16)}
    tx = scale_by_normuon(weight_dimension_numbers={"k": D(1, 2), "w": D()})
    state = tx.init(params)
    assert isinstance(state, NorMuonState)
    assert state._fields == ("count", "mu", "v", "ns_coeffs", "hyperparams")
    assert state.v["k"].shape == (2, 1, 4) and state.v["w"].shape == (1, 6)
    assert state.v["w"].dtype == jnp.bfloat16 and state.mu["w"].dtype == jnp.bfloat16
    state = scale_by_normuon(mu_dtype=jnp.float32).init({"w": jnp.zeros((4, 6), jnp.bfloat16)})
    assert state.mu["w"].dtype == jnp.float32
    with jax.enable_x64(True):
        state = scale_by_normuon().init({"w": jnp.zeros((4, 6), jnp.float64)})
        assert state.v["w"].dtype == jnp.float64


def test_bfloat16_and_empty_tree():
    R.check_bfloat16(normuon(0.01), "jit", steps=3)
    R.check_empty_tree(normuon(0.01), "jit")


def test_hyperparams_are_readable_and_settable():
    params = {k: jnp.asarray(v) for k, v in params_tree(np.float32).items()}
    grads = [{k: jnp.asarray(v) for k, v in g.items()} for g in grads_trees(np.float32, 3)]
    tx = normuon(0.1)
    state = tx.init(params)
    got = gradtx.hyperparams(state)
    assert {k: got[k] for k in ("beta", "beta2", "eps", "consistent_rms", "learning_rate")} == pytest.approx(
        {"beta": 0.95, "beta2": 0.95, "eps": 1e-8, "consistent_rms": 0.2, "learning_rate": 0.1}
    )
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, beta2=0.5, consistent_rms=0.4, learning_rate=0.3)
    out, _ = update(grads[2], state, params)

    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref = NorMuonRef(0.1, PLAIN_DIMS)
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    ref.beta2, ref.rms, ref.learning_rate = 0.5, 0.4, 0.3
    want = ref.update(leaves(grads[2]), leaves(params))
    for g, w in zip(leaves(out), want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    moved = NorMuonRef(0.3, PLAIN_DIMS)  # the change made a difference
    moved.init(leaves(params))
    for g in grads:
        last = moved.update(leaves(g), leaves(params))
    assert np.max(np.abs(last[3] - want[3])) > 1e-3


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^beta2 must be in \[0.0, 1.0\)"):
        normuon(0.1, beta2=1.0)
    with pytest.raises(ValueError, match=r"^beta must be in"):
        scale_by_normuon(beta=-0.1)
    with pytest.raises(ValueError, match=r"^consistent_rms must be in \(0.0, inf\)"):
        scale_by_normuon(consistent_rms=0.0)
    with pytest.raises(ValueError, match="^eps must be"):
        scale_by_normuon(eps=-1.0)
    with pytest.raises(ValueError, match="^ns_coeffs must be one of"):
        normuon(0.1, ns_coeffs="polar")
    with pytest.raises(ValueError, match="^preconditioning must be one of"):
        scale_by_normuon(preconditioning="qr")
    with pytest.raises(TypeError, match="^ns_steps must be a non-negative integer"):
        scale_by_normuon(ns_steps=-1)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        normuon(-1.0)
    with pytest.raises(ValueError, match="^adam_b2 must be in"):
        normuon(0.1, adam_b2=1.5)


def test_update_time_errors():
    with pytest.raises(ValueError, match=r"^scale_by_normuon: the leaf 'b' has shape \(3,\).*use normuon, which"):
        scale_by_normuon().init({"b": jnp.zeros(3), "w": jnp.zeros((2, 3))})
    tx = normuon(0.1)
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones((3, 2)), "b": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match="weight_dimension_numbers at 'w': axes 2 do not fit"):
        scale_by_normuon(weight_dimension_numbers=D(0, 2)).init({"w": jnp.zeros((2, 3))})


def test_jit_equals_eager():
    tx = normuon(0.05, muon_weight_dimension_numbers=DIMS, weight_decay=0.1)
    params = {k: jnp.asarray(v) for k, v in params_tree(np.float32).items()}
    s_eager = s_jit = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads_trees(np.float32, 4):
        g = {k: jnp.asarray(v) for k, v in g.items()}
        u_eager, s_eager = tx.update(g, s_eager, params)
        u_jit, s_jit = update(g, s_jit, params)
        for a, b in zip(jax.tree.leaves((u_eager, s_eager)), jax.tree.leaves((u_jit, s_jit))):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.max(np.abs(a), initial=0.0))


def test_zero_gradient_stays_zero():
    tx = scale_by_normuon()
    u, state = tx.update(jnp.zeros((3, 4)), tx.init(jnp.zeros((3, 4))))
    assert not np.any(np.asarray(u)) and not np.any(np.asarray(state.v))


def test_converges_on_digits():
    """Softmax regression on the 8x8 digits (a 64 x 10 matrix for NorMuon, the bias for Adam):
    within 100 steps the loss falls from log(10) = 2.30 below 0.35."""
    initial, final, _ = run_problem(normuon(lambda t: 0.1 * 0.98**t), "digits", 100)
    assert initial == pytest.approx(np.log(10.0), rel=1e-5)
    assert final < 0.35, final


# ------------------------------------------------------------------ Polar Express


@pytest.mark.parametrize("steps", [0, 3, 5, 8, 11])
def test_polar_express_preset_is_the_published_iteration(steps):
    """float64: newton_schulz with the preset is Algorithm 1's iteration with the published
    coefficients and their safety factor, the first ``steps`` (the eighth repeated past it)."""
    rng = np.random.default_rng(steps)
    with jax.enable_x64(True):
        for shape in [(5, 9), (9, 5)]:
            x = rng.standard_normal(shape)
            got = np.asarray(newton_schulz(jnp.asarray(x), "polar_express", steps))
            want = ref_newton_schulz(x, coeffs=np.reshape(polar_express_coeffs(steps), (-1, 3)), steps=steps)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        state = scale_by_normuon("polar_express", steps).init(jnp.zeros((2, 3)))
        assert state.ns_coeffs.shape == (steps, 3)


def test_polar_express_drives_singular_values_to_one_faster():
    """Random wide, tall and batched Gaussian matrices (singular values spread over about a factor
    of 5): after 5 iterations Polar Express leaves every singular value within 0.15 of 1 where the
    standard quintic leaves some 0.25 away or more (it plateaus, Jordan's is not convergent); after
    8, Polar Express is within 1e-6 in float64, measured against numpy's SVD."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for shape in [(16, 40), (48, 20), (3, 10, 30)]:
            x = jnp.asarray(rng.standard_normal(shape))
            err = {
                (name, steps): np.max(
                    np.abs(np.linalg.svd(np.asarray(newton_schulz(x, name, steps)), compute_uv=False) - 1)
                )
                for name in ("polar_express", "standard")
                for steps in (5, 8)
            }
            assert err["polar_express", 5] < 0.15 < 0.25 < err["standard", 5], err
            assert err["polar_express", 8] < 1e-6 < 0.25 < err["standard", 8], err


def test_polar_express_in_muon_and_normuon_states():
    published = polar_express_coeffs(5)
    for tx in (muon(0.1, ns_coeffs="polar_express"), normuon(0.1, ns_coeffs="polar_express")):
        leaves = [x for x in jax.tree.leaves(tx.init({"w": jnp.zeros((2, 3))})) if np.shape(x) == (5, 3)]
        assert len(leaves) == 1
        np.testing.assert_allclose(leaves[0], published, rtol=1e-6)
    state = scale_by_normuon("polar_express", 10).init(jnp.zeros((2, 3)))
    np.testing.assert_allclose(state.ns_coeffs[7:], [(1.875, -1.25, 0.375)] * 3, rtol=1e-7)


def test_newton_schulz_runs_once_per_matrix_shape():
    """Five equal layers and one of the transposed shape share one batched iteration (5 steps of 3
    products in the compiled step), and each leaf gets what the block gives it alone."""
    rng = np.random.default_rng(4)
    shapes = {f"layer{i}": (6, 10) for i in range(5)} | {"tall": (10, 6)}
    grads = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
    tx = scale_by_normuon(nesterov=False, beta=0.0)
    update = jax.jit(tx.update)
    together, _ = update(grads, tx.init(grads))
    for name, g in grads.items():
        alone, _ = update({name: g}, tx.init({name: g}))
        np.testing.assert_allclose(together[name], alone[name], rtol=1e-5, atol=1e-6, err_msg=name)
    text = update.lower(grads, tx.init(grads)).as_text()
    assert text.count("stablehlo.dot_general") == 15, text.count("stablehlo.dot_general")
