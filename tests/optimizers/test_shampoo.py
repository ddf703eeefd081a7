"""Shampoo (Gupta et al. 2018; Anil et al. 2020) step by step against the float64 NumPy reference
of ``references/shampoo.py``, written from the paper's Algorithm 1 with the reference
implementation's options, its roots by numpy's eigh whatever method gradtx uses.

12 steps on a tree of a blocked matrix, a 1-D leaf (blocked too), a 0-d leaf (grafted only) and a
rank-3 leaf, with refresh steps and reuse steps of the roots, a late start of preconditioning and
every graft type.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.shampoo import ShampooState, merge_small_dims, scale_by_shampoo, shampoo

import references as R
from helpers import run_problem
from references.shampoo import Shampoo, inverse_root, ref_shampoo, shampoo_grads, shampoo_params

TREES = (shampoo_params, shampoo_grads)
FACTORIES = {"scale_by_shampoo": (scale_by_shampoo, Shampoo), "shampoo": (shampoo, ref_shampoo)}
BASE = dict(block_size=3, start_preconditioning_step=3, preconditioning_compute_steps=3, matrix_epsilon=1e-4)


def schedule(step):
    return 0.05 / (1 + 0.1 * step)


# (factory, id, kwargs): every graft type, both root methods, refresh/reuse and late starts
CASES = [
    ("scale_by_shampoo", "sgd-newton-rank3", dict(BASE, best_effort_shape_interpretation=False)),
    ("scale_by_shampoo", "adagrad-eigh-merged", dict(BASE, graft_type="adagrad", inverse_root_method="eigh")),
    (
        "scale_by_shampoo",
        "rmsprop-stats-every-2",
        dict(BASE, graft_type="rmsprop", beta2=0.9, statistics_compute_steps=2, nesterov=False),
    ),
    (
        "scale_by_shampoo",
        "rmsprop_normalized-moving-average",
        dict(BASE, graft_type="rmsprop_normalized", moving_average_for_momentum=True, exponent_override=2),
    ),
    ("scale_by_shampoo", "sqrt_n-skip-large", dict(BASE, graft_type="sqrt_n", skip_preconditioning_dim_size_gt=4)),
    (
        "scale_by_shampoo",
        "adagrad_normalized-sum",
        dict(
            BASE,
            graft_type="adagrad_normalized",
            beta2=1.0,
            best_effort_shape_interpretation=False,
            inverse_root_method="eigh",
        ),
    ),
    (
        "shampoo",
        "schedule-weight-decay",
        dict(
            BASE, learning_rate=schedule, weight_decay=0.1, graft_type="rmsprop", beta1=0.5, inverse_root_method="eigh"
        ),
    ),
]
# float32: the roots' rounding (eigenvalues down to 1e-4 of the largest, raised to -1/4 or -1/6);
# float64: the Newton iteration stops at an error of 1e-6 in X^p A (eigh: 1e-10)
F32_RTOL = 1e-4  # the largest difference seen: 1.8e-5 (rmsprop-stats-every-2)
F64_RTOL_NEWTON = 1e-6


# every case in float32, three in float64 (each case compiles its own roots: the budget of this file);
# the Newton iteration's cases are the slowest to compile, so five of the nine runs use eigh
FLOAT64 = {"sgd-newton-rank3", "adagrad-eigh-merged", "schedule-weight-decay"}
ROWS = [
    pytest.param(n, kw, dtype, id=f"{n}-{label}-{dtype}")
    for n, label, kw in CASES
    for dtype in ("float32", "float64")
    if dtype == "float32" or label in FLOAT64
]


@pytest.mark.parametrize("name,kwargs,dtype", ROWS)
def test_matches_reference(name, kwargs, dtype):
    """Under jit; refresh and reuse steps, grafted and preconditioned steps all occur."""
    make, make_ref = FACTORIES[name]
    newton = kwargs.get("inverse_root_method", "newton") == "newton"
    rtol = F32_RTOL if dtype == "float32" else F64_RTOL_NEWTON if newton else 1e-10
    ref = R.run_against_reference(make(**kwargs), make_ref(**kwargs), dtype, "jit", rtol=rtol, trees=TREES)
    inner = R.find(ref, Shampoo)
    assert inner.refreshes > 0 and inner.reuses > 0 and inner.grafted_steps == 3
    assert inner.blocked_leaves >= 1


def test_matches_reference_eagerly():
    kwargs = dict(BASE, graft_type="adagrad", best_effort_shape_interpretation=False, inverse_root_method="eigh")
    R.run_against_reference(
        scale_by_shampoo(**kwargs), Shampoo(**kwargs), "float32", "eager", steps=10, rtol=F32_RTOL, trees=TREES
    )


def test_state_layout():
    params = {"w": jnp.zeros((5, 3)), "b": jnp.zeros(4), "s": jnp.zeros(()), "t": jnp.zeros((2, 3, 2))}
    state = scale_by_shampoo(block_size=3, best_effort_shape_interpretation=False, graft_type="adagrad").init(params)
    assert isinstance(state, ShampooState)
    assert state._fields == (
        "count",
        "statistics",
        "preconditioners",
        "diagonal_statistics",
        "diagonal_momentum",
        "momentum",
        "hyperparams",
    )
    shapes = {k: [s.shape for s in v] for k, v in state.statistics.items()}
    assert shapes == {
        "w": [(3, 3), (3, 3), (2, 2), (3, 3)],  # blocks (3, 3) and (2, 3), two factors each
        "b": [(3, 3), (1, 1)],  # a vector: one factor per block
        "s": [],  # 0-d: grafted only
        "t": [(2, 2), (3, 3), (2, 2)],
    }
    np.testing.assert_allclose(state.statistics["w"][0], 1e-6 * np.eye(3), rtol=1e-6)
    np.testing.assert_array_equal(state.preconditioners["t"][1], np.eye(3))
    assert state.momentum["w"].shape == state.diagonal_statistics["w"].shape == (5, 3)
    assert scale_by_shampoo().init(params).diagonal_statistics is None  # sgd grafting keeps none
    merged = scale_by_shampoo(block_size=4).init(params).statistics["t"]
    assert [s.shape for s in merged] == [(4, 4)] * 3  # (2, 3, 2) -> (12,), cut into 3 blocks
    assert merge_small_dims((1, 2, 768, 1, 2048), 1024) == (2, 768, 2048)
    assert merge_small_dims((1, 1), 8) == (1,) and merge_small_dims((), 8) == ()


def test_roots_are_reused_between_refreshes_and_both_methods_agree():
    tx = scale_by_shampoo(block_size=8, preconditioning_compute_steps=3, start_preconditioning_step=0)
    params = {"w": jnp.zeros((3, 2))}
    state = tx.init(params)
    update = jax.jit(tx.update)
    roots = []
    rng = np.random.default_rng(0)
    for _ in range(4):
        _, state = update({"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32)}, state)
        roots.append(np.asarray(state.preconditioners["w"][0]))
    np.testing.assert_array_equal(roots[1], roots[0])
    np.testing.assert_array_equal(roots[2], roots[0])
    assert not np.allclose(roots[3], roots[0])  # step 3 refreshes
    g = jnp.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    for method in ("newton", "eigh"):
        tx = scale_by_shampoo(block_size=8, best_effort_shape_interpretation=False, inverse_root_method=method)
        s = tx.update({"w": g}, tx.init(params))[1]
        for stat, root in zip(s.statistics["w"], s.preconditioners["w"]):
            want = inverse_root(np.asarray(stat, np.float64), 4, 1e-6)
            np.testing.assert_allclose(root, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_failed_roots_keep_the_previous_ones():
    tx = scale_by_shampoo(block_size=8, start_preconditioning_step=0)
    params = {"w": jnp.zeros((2, 2))}
    _, state = tx.update({"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}, tx.init(params))
    good = [np.asarray(p) for p in state.preconditioners["w"]]
    updates, state = tx.update({"w": jnp.array([[jnp.nan, 0.0], [0.0, 1.0]])}, state)
    for p, q in zip(state.preconditioners["w"], good):
        np.testing.assert_array_equal(p, q)  # the NaN statistics gave no new root
    # a threshold nothing meets: every refresh is dropped, the initial identities stay
    tx = scale_by_shampoo(block_size=8, best_effort_shape_interpretation=False, inverse_failure_threshold=1e-30)
    _, state = tx.update({"w": jnp.array([[1.0, 3.0], [0.0, 2.0]])}, tx.init(params))
    for p in state.preconditioners["w"]:
        np.testing.assert_array_equal(p, np.eye(2))


def test_hyperparams_are_readable_and_settable():
    params = shampoo_params(np.float32)
    grads = shampoo_grads(np.float32, 6)
    kwargs = dict(BASE, graft_type="adagrad")
    tx = shampoo(0.1, **kwargs)
    state = tx.init(jax.tree.map(jnp.asarray, params))
    got_hp = gradtx.hyperparams(state)
    assert set(got_hp) == {
        "beta1",
        "beta2",
        "diagonal_epsilon",
        "matrix_epsilon",
        "start_preconditioning_step",
        "preconditioning_compute_steps",
        "statistics_compute_steps",
        "inverse_failure_threshold",
        "weight_decay",
        "learning_rate",
    }
    assert got_hp["start_preconditioning_step"] == 3 and got_hp["learning_rate"] == pytest.approx(0.1)
    update = jax.jit(tx.update)
    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref = Shampoo(**kwargs)
    ref.init(leaves(params))
    p = jax.tree.map(jnp.asarray, params)
    for g in grads[:3]:
        _, state = update(jax.tree.map(jnp.asarray, g), state, p)
        ref.update(leaves(g), leaves(params))
    state = gradtx.set_hyperparams(state, beta1=0.5, preconditioning_compute_steps=1, learning_rate=0.3)
    ref.b1, ref.every_p = 0.5, 1
    for g in grads[3:]:
        got, state = update(jax.tree.map(jnp.asarray, g), state, p)
        want = [-0.3 * u for u in ref.update(leaves(g), leaves(params))]
        for a, b in zip(leaves(got), want):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.max(np.abs(b)))


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^beta1 must be in \[0.0, 1.0\)"):
        shampoo(0.1, beta1=1.0)
    with pytest.raises(ValueError, match=r"^beta2 must be in \[0.0, 1.0\], got 1.5"):
        scale_by_shampoo(beta2=1.5)
    with pytest.raises(ValueError, match="^block_size must be an integer >= 1, got 0"):
        scale_by_shampoo(block_size=0)
    with pytest.raises(ValueError, match="^graft_type must be one of 'sgd', 'adagrad'"):
        scale_by_shampoo(graft_type="adam")
    with pytest.raises(ValueError, match="^inverse_root_method must be one of 'newton', 'eigh'"):
        scale_by_shampoo(inverse_root_method="svd")
    with pytest.raises(ValueError, match="^preconditioning_compute_steps must be an integer >= 1, got 0"):
        scale_by_shampoo(preconditioning_compute_steps=0)
    with pytest.raises(ValueError, match="^start_preconditioning_step must be an integer >= 0, got 1.5"):
        scale_by_shampoo(start_preconditioning_step=1.5)
    with pytest.raises(ValueError, match="^exponent_override must be an integer >= 0"):
        scale_by_shampoo(exponent_override=-1)
    with pytest.raises(ValueError, match=r"^matrix_epsilon must be in \[0.0, inf\)"):
        scale_by_shampoo(matrix_epsilon=-1e-6)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        shampoo(0.1, weight_decay=-1.0)
    with pytest.raises(TypeError, match="^beta1 must be a number or an array"):
        scale_by_shampoo(beta1=lambda t: 0.9)


def test_update_time_errors():
    params = {"w": jnp.ones((2, 3))}
    tx = shampoo(0.1)
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones((3, 2))}, state, params)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, state)
    with pytest.raises(TypeError, match=r"scale_by_shampoo does not support complex parameters: 'z' is complex64"):
        tx.init({"z": jnp.ones(2, jnp.complex64)})
    tx.update(params, state, params, value=1.0, grad=params)  # extra arguments are ignored


def test_jit_equals_eager():
    tx = shampoo(0.05, **dict(BASE, graft_type="rmsprop"))
    params = jax.tree.map(jnp.asarray, shampoo_params(np.float32))
    s_eager = s_jit = tx.init(params)
    update = jax.jit(tx.update)
    for g in shampoo_grads(np.float32, 6):
        g = jax.tree.map(jnp.asarray, g)
        u_eager, s_eager = tx.update(g, s_eager, params)
        u_jit, s_jit = update(g, s_jit, params)
        for a, b in zip(jax.tree.leaves((u_eager, s_eager)), jax.tree.leaves((u_jit, s_jit))):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.max(np.abs(a), initial=0.0))


def test_bfloat16_and_empty_tree():
    tx = shampoo(0.01, start_preconditioning_step=1)
    R.check_bfloat16(tx, "jit", steps=4)
    R.check_empty_tree(shampoo(0.1), "jit")
    state = scale_by_shampoo().init({"w": jnp.ones((2, 3), jnp.bfloat16)})
    assert state.momentum["w"].dtype == jnp.bfloat16 and state.statistics["w"][0].dtype == jnp.float32


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100): a 10-vector, so one 10x10 factor
    # L^(-1/2) (full-matrix AdaGrad) with AdaGrad grafting; 200 steps reduced the loss 2.9e22x on CPU
    # in float32 (100 steps: 4.4e10x)
    tx = shampoo(0.5, graft_type="adagrad", start_preconditioning_step=1, beta2=1.0)
    initial, final, _ = run_problem(tx, "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e12, (initial, final, initial / final)
