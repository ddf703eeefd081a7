"""GaLore (Zhao et al. 2024): scale_by_galore and galore against the NumPy reference of
Algorithm 2 (numpy SVD, Adam in the projected space), 12 steps with update_proj_gap = 4 so that
the projector is renewed twice; hyperparameters, errors, jit, complex leaves, convergence.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.galore import GaLoreDimensionNumbers, GaLoreState, galore, scale_by_galore

import references as R
from references.galore import GaLore, ref_galore, ref_scale_by_galore

D = GaLoreDimensionNumbers
SHAPES = {"w": (4, 6), "v": (7, 3), "t": (2, 3, 4), "b": (5,)}


def params_tree(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.standard_normal(s) + 0.5, dtype) for k, s in SHAPES.items()}


def grads_trees(dtype, steps=R.STEPS, seed=1, zero_until=0):
    rng = np.random.default_rng(seed)
    return [
        {k: np.asarray(np.exp(0.5 * rng.standard_normal()) * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


TREES = (params_tree, grads_trees)
ORDER = sorted(SHAPES)  # the flattening order of a dict: b, t, v, w


def ref_dims(spec):
    """The reference's per-leaf (rows, cols) for a dict of gradtx dimension numbers."""
    out = []
    for k in ORDER:
        d = spec.get(k) if spec is not None else (D() if len(SHAPES[k]) == 2 else None)
        out.append(None if d is None else (tuple(np.atleast_1d(d.reduction_axis)), tuple(np.atleast_1d(d.output_axis))))
    return out


# (id, kwargs shared by gradtx and the reference, weight_dimension_numbers)
CASES = [
    ("default_dims", dict(rank=2, update_proj_gap=4, scale=0.5), None),
    ("larger_side", dict(rank=2, update_proj_gap=4, scale=0.5, projection_side="larger"), None),
    (
        "tensor_dims_full_rank",
        dict(rank=5, update_proj_gap=4, b1=0.8, b2=0.99, eps=1e-6),
        {"w": D(1, 0), "v": None, "t": D((0, 2), 1), "b": None},
    ),
]


# eager runs are slow (op by op): one case eagerly, every case jitted
RUNS = [("default_dims", "float32", "eager")] + [(c[0], d, "jit") for c in CASES for d in ("float32", "float64")]


@pytest.mark.parametrize("label,dtype,mode", RUNS)
def test_scale_by_galore_matches_reference(label, dtype, mode):
    kwargs, spec = next((kw, sp) for lab, kw, sp in CASES if lab == label)
    tx = gradtx.chain(scale_by_galore(weight_dimension_numbers=spec, **kwargs), gradtx.scale(-1.0))
    ref_kwargs = {k: v for k, v in kwargs.items()}
    ref = R.Chain(ref_scale_by_galore(dims=ref_dims(spec), **ref_kwargs), R.Scale(-1.0))
    ref = R.run_against_reference(tx, ref, dtype, mode, trees=TREES, rtol=None)
    assert R.find(ref, GaLore).renewals == 2 * sum(a is not None for a in R.find(ref, GaLore).axes)


def test_galore_matches_reference():
    kwargs = dict(rank=2, update_proj_gap=4, scale=0.25)
    tx = galore(0.05, weight_decay=0.1, **kwargs)
    R.run_against_reference(tx, ref_galore(0.05, weight_decay=0.1, **kwargs), "float32", "jit", trees=TREES)


def test_state_shapes_follow_the_projection_side():
    params = jax.tree.map(jnp.asarray, params_tree(np.float32))
    state = scale_by_galore(rank=2).init(params)
    assert isinstance(state, GaLoreState)
    shapes = jax.tree.map(jnp.shape, (state.projector, state.base_optimizer_state.mu))
    assert shapes[0] == {"w": (4, 2), "v": (3, 2), "t": (), "b": ()}
    assert shapes[1] == {"w": (2, 6), "v": (7, 2), "t": (2, 3, 4), "b": (5,)}
    state = scale_by_galore(rank=2, projection_side="larger").init(params)
    assert jax.tree.map(jnp.shape, state.projector)["w"] == (6, 2)


def test_one_dimension_number_for_all_matrices_and_a_function():
    params = {"w": jnp.ones((4, 6)), "b": jnp.ones(3)}
    for spec in (D(1, 0), lambda p: jax.tree.map(lambda x: D(1, 0) if x.ndim == 2 else None, p)):
        state = scale_by_galore(rank=2, weight_dimension_numbers=spec).init(params)
        # rows are axis 1 (6), columns axis 0 (4): the short side, 4, is projected: R = G Q is 6x2
        assert state.base_optimizer_state.mu["w"].shape == (6, 2) and state.projector["w"].shape == (4, 2)
        assert state.projector["b"].shape == ()


def test_hyperparams_are_readable_and_settable():
    kwargs = dict(rank=2, update_proj_gap=4, scale=0.5)
    tx = scale_by_galore(**kwargs)
    params = jax.tree.map(jnp.asarray, params_tree(np.float32))
    grads = grads_trees(np.float32, 8)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "scale": 0.5,
        "update_proj_gap": 4.0,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_root": 0.0,
    }
    ref = ref_scale_by_galore(**kwargs)
    ref.init(R.leaves64(params))
    update = jax.jit(tx.update)
    for step, g in enumerate(grads):
        if step == 3:  # step 3 would reuse the projector of step 0: renew it now, and double alpha
            state = gradtx.set_hyperparams(state, scale=1.0, update_proj_gap=3)
            ref.alpha, ref.gap = 1.0, 3
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        want = ref.update(R.leaves64(g), R.leaves64(params))
        for got, w in zip(jax.tree.leaves(u), want):
            np.testing.assert_allclose(got, w, rtol=2e-5, atol=2e-5 * np.max(np.abs(w)))
    assert ref.renewals == 2 * 2  # at steps 3 and 6, for w and v
    assert gradtx.hyperparams(state)["scale"] == 1.0


def test_construction_errors():
    with pytest.raises(ValueError, match="^rank must be a positive int"):
        scale_by_galore(rank=0)
    with pytest.raises(ValueError, match="^rank must be a positive int"):
        galore(rank=2.5)
    with pytest.raises(TypeError, match="^update_proj_gap must be an int"):
        scale_by_galore(update_proj_gap=2.5)
    with pytest.raises(ValueError, match="^update_proj_gap must be in"):
        galore(update_proj_gap=0)
    with pytest.raises(ValueError, match="^scale must be in"):
        scale_by_galore(scale=-1.0)
    with pytest.raises(ValueError, match="^projection_side must be one of"):
        galore(projection_side="left")
    with pytest.raises(ValueError, match="^b1 must be in"):
        galore(b1=1.0)
    with pytest.raises(ValueError, match="b2 set the default Adam"):
        scale_by_galore(base_optimizer=gradtx.scale_by_adam(), b2=0.9)
    with pytest.raises(TypeError, match="^base_optimizer must be a GradientTransformation"):
        scale_by_galore(base_optimizer=gradtx.adam)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        galore(-1.0)


def test_dimension_number_errors_name_the_leaf():
    params = {"w": jnp.ones((4, 6)), "t": jnp.ones((2, 3, 4))}
    with pytest.raises(ValueError, match="do not fit 't' of shape \\(2, 3, 4\\)"):
        scale_by_galore(weight_dimension_numbers={"w": D(), "t": D(0, 1)}).init(params)
    with pytest.raises(ValueError, match="do not fit 'w'"):
        scale_by_galore(weight_dimension_numbers={"w": D(0, 0), "t": None}).init(params)
    with pytest.raises(ValueError, match="weight_dimension_numbers must be a tree shaped like the parameters"):
        scale_by_galore(weight_dimension_numbers={"w": D()}).init(params)


def test_update_errors_and_extra_arguments():
    params = {"w": jnp.ones((4, 6))}
    tx = galore(rank=2)
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, state)
    with pytest.raises(ValueError, match="'x'"):
        scale_by_galore().update({"x": jnp.ones((4, 6))}, scale_by_galore().init(params))
    u, _ = tx.update(params, state, params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)
    assert u["w"].shape == (4, 6)


def test_jit_equals_eager():
    tx = galore(0.1, rank=2, update_proj_gap=3, weight_decay=0.01)
    params = jax.tree.map(jnp.asarray, params_tree(np.float32))
    runs = []
    for update in (tx.update, jax.jit(tx.update)):
        p, state = params, tx.init(params)
        for g in grads_trees(np.float32, 7):
            u, state = update(jax.tree.map(jnp.asarray, g), state, p)
            p = gradtx.apply_updates(p, u)
        runs.append(p)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_complex_leaf_matches_reference():
    rng = np.random.default_rng(3)
    shape = (3, 5)
    p0 = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    grads = [(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64) for _ in range(10)]
    tx = scale_by_galore(rank=2, update_proj_gap=4)
    ref = ref_scale_by_galore(rank=2, update_proj_gap=4)
    state, p = tx.init({"z": jnp.asarray(p0)}), {"z": jnp.asarray(p0)}
    ref.init([p0.astype(np.complex128)])
    for g in grads:
        u, state = tx.update({"z": jnp.asarray(g)}, state, p)
        (want,) = ref.update([g.astype(np.complex128)], None)
        assert u["z"].dtype == jnp.complex64 and state.projector["z"].dtype == jnp.complex64
        np.testing.assert_allclose(u["z"], want, rtol=2e-5, atol=2e-5 * np.max(np.abs(want)))
    assert ref.renewals == 2


def test_bfloat16_and_empty_tree():
    R.check_bfloat16(galore(0.01, rank=2, update_proj_gap=2), "jit")
    R.check_empty_tree(galore(0.01, rank=2), "jit")
    state = galore(rank=2).init({"w": jnp.ones((4, 6), jnp.bfloat16)})
    assert state[0].projector["w"].dtype == jnp.bfloat16
    assert state[0].base_optimizer_state.mu["w"].dtype == jnp.bfloat16


def test_vmap_over_a_batch_of_problems():
    tx = scale_by_galore(rank=1, update_proj_gap=2)
    params = {"w": jnp.ones((3, 4, 5))}  # three independent 4x5 problems
    grads = {"w": jax.random.normal(jax.random.key(0), (3, 4, 5))}
    states = jax.jit(jax.vmap(tx.init))(params)
    u, _ = jax.jit(jax.vmap(tx.update))(grads, states, params)
    update = jax.jit(tx.update)
    for i in range(3):
        one, _ = update({"w": grads["w"][i]}, tx.init({"w": params["w"][i]}), {"w": params["w"][i]})
        np.testing.assert_allclose(u["w"][i], one["w"], rtol=1e-5, atol=1e-6)


def test_against_optax_on_the_larger_side():
    optax = pytest.importorskip("optax")
    contrib = pytest.importorskip("optax.contrib")
    params = jax.tree.map(jnp.asarray, params_tree(np.float32))
    ours = galore(0.1, rank=2, update_proj_gap=100, scale=0.5, weight_decay=0.01, projection_side="larger")
    theirs = contrib.galore(0.1, rank=2, update_proj_gap=100, scale=0.5, weight_decay=0.01)
    pa, pb, sa, sb = params, params, ours.init(params), theirs.init(params)
    step_a, step_b = jax.jit(ours.update), jax.jit(theirs.update)
    for g in grads_trees(np.float32, 10):  # one projector: its signs do not matter
        g = jax.tree.map(jnp.asarray, g)
        ua, sa = step_a(g, sa, pa)
        ub, sb = step_b(g, sb, pb)
        pa, pb = gradtx.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_converges_on_a_low_rank_quadratic():
    """0.5 |W - A|^2 with a rank-2 A, 4x6: < 1e-3 within 100 steps (reached 1.9e-4)."""
    a = np.outer([1.0, -2.0, 0.5, 3.0], np.linspace(-1, 1, 6)) + np.outer([0.3, 0.1, -1.0, 0.2], np.ones(6))
    loss = lambda w: 0.5 * jnp.sum((w["w"] - a) ** 2)  # noqa: E731
    tx = galore(0.1, rank=2, update_proj_gap=20)
    w = {"w": jnp.zeros((4, 6))}
    state, step = tx.init(w), jax.jit(tx.update)
    for _ in range(100):
        u, state = step(jax.grad(loss)(w), state, w)
        w = gradtx.apply_updates(w, u)
    assert float(loss(w)) < 1e-3, float(loss(w))
