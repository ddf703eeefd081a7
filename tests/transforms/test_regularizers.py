"""The regularizers: decoupled weight decay (add_decayed_weights: u + wd * p, optionally masked,
wd possibly a schedule), gradient centralization, annealed gradient noise (add_noise),
non-negative parameters and NaN zeroing.

Step-by-step agreement with NumPy references written from the papers (Loshchilov & Hutter
2019; Yong et al. 2020; Neelakantan et al. 2015), 12 steps on the nested tree of
``references``, eagerly and under ``jax.jit``, float32 and float64. The noise references draw
their noise with ``jax.random`` from the same key, in the documented order; everything else is
NumPy. noisy_sgd, the optimizer built on add_noise, is tested with sgd.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases
from references.regularizers import AddNoise, Centralize, KeepNonnegative

DTYPES = ["float32", "float64"]
MODES = R.MODES


# ------------------------------------------------------------------ weight decay


def schedule(step):
    """Called with 0 on the first update."""
    return 0.3 / (1 + step)


DECAY_CASES = [
    ("add_decayed_weights", "constant", dict(weight_decay=0.1), None),
    ("add_decayed_weights", "zero", dict(weight_decay=0.0), None),
    ("add_decayed_weights", "mask_tree", dict(weight_decay=0.3, mask=R.MASK_TREE), None),
    ("add_decayed_weights", "mask_fn", dict(weight_decay=0.3, mask=R.mask_matrices), None),
    ("add_decayed_weights", "schedule", dict(weight_decay=schedule), None),
    ("add_decayed_weights", "schedule_mask", dict(weight_decay=schedule, mask=R.MASK_TREE), None),
]


@pytest.mark.parametrize("mode", R.MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(DECAY_CASES))
def test_add_decayed_weights_matches_reference(name, kwargs, f32_tol, dtype, mode):
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


@pytest.mark.parametrize("mode", R.MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_decoupled_decay_in_a_chain(dtype, mode):
    """p <- p - lr * (g + wd * p), wd applied to the params before the step."""
    tx = gradtx.chain(gradtx.add_decayed_weights(0.5, mask=R.mask_matrices), gradtx.scale(-0.1))
    ref = R.Chain(R.AddDecayedWeights(0.5, mask=R.mask_matrices), R.Scale(-0.1))
    R.run_against_reference(tx, ref, dtype, mode)


def test_masks_are_discriminating():
    """The test masks differ from each other and from "everything"."""
    by_tree = jax.tree.leaves(R.MASK_TREE)
    by_fn = jax.tree.leaves(R.mask_matrices(R.param_tree(np.float64)))
    assert by_tree != by_fn and not all(by_tree) and not all(by_fn) and any(by_fn)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_keeps_dtypes(mode):
    R.check_bfloat16(gradtx.add_decayed_weights(0.1), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_stays_finite(mode):
    R.check_bfloat16(gradtx.add_decayed_weights(0.1), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
def test_empty_tree(mode):
    R.check_empty_tree(gradtx.add_decayed_weights(0.1), mode)


@pytest.mark.parametrize("mode", MODES)
def test_none_leaf(mode):
    R.check_none_leaf(gradtx.add_decayed_weights(0.1), R.AddDecayedWeights(0.1), mode)


# ------------------------------------- centralization, noise, non-negative parameters, NaN

REGULARIZER_CASES = [
    (
        "centralize",
        "default",
        lambda: gradtx.chain(gradtx.centralize(), gradtx.scale(-0.1)),
        lambda dtype: R.Chain(Centralize(), R.Scale(-0.1)),
    ),
    (
        "keep_params_nonnegative",
        "after_sgd",
        lambda: gradtx.chain(gradtx.scale(-0.3), gradtx.keep_params_nonnegative()),
        lambda dtype: R.Chain(R.Scale(-0.3), KeepNonnegative()),
    ),
    (
        "add_noise",
        "default",
        lambda: gradtx.chain(gradtx.add_noise(0.01, 0.55, jax.random.key(7)), gradtx.scale(-0.1)),
        lambda dtype: R.Chain(AddNoise(0.01, 0.55, jax.random.key(7), dtype), R.Scale(-0.1)),
    ),
    (
        "add_noise",
        "loud_schedules",
        lambda: gradtx.chain(
            gradtx.add_noise(lambda t: 1.0 + t, lambda t: 0.1 * t, jax.random.PRNGKey(3)), gradtx.scale(-0.1)
        ),
        lambda dtype: R.Chain(
            AddNoise(lambda t: 1.0 + t, lambda t: 0.1 * t, jax.random.PRNGKey(3), dtype), R.Scale(-0.1)
        ),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,ref", [pytest.param(m, r, id=f"{n}-{label}") for n, label, m, r in REGULARIZER_CASES])
def test_centralize_noise_and_nonnegative_match_reference(make, ref, dtype, mode):
    R.run_against_reference(make(), ref(R.DTYPES[dtype]), dtype, mode)


def test_noise_is_really_there_and_anneals():
    """The noise has the stated variance: eta / (1 + t)^gamma, checked on 20000 draws."""
    tx = gradtx.add_noise(eta=0.5, gamma=1.0, key=jax.random.key(0))
    params = jnp.zeros(20000)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(3):
        u, state = update(params, state)
        assert float(jnp.var(u)) == pytest.approx(0.5 / (1 + t), rel=0.05)
        assert abs(float(jnp.mean(u))) < 0.03
    assert int(state.count) == 3


def test_keys_of_every_kind_give_the_same_stream_and_the_state_keeps_raw_key_data():
    params = {"a": jnp.zeros(4), "b": jnp.zeros((2, 2))}
    outs = []
    for kw in [dict(key=jax.random.key(11)), dict(key=jax.random.PRNGKey(11)), dict(key=11), dict(seed=11)]:
        tx = gradtx.add_noise(1.0, 0.0, **kw)
        state = tx.init(params)
        assert state.rng_key.dtype == jnp.uint32  # plain data: checkpointable, tree-mappable
        u1, state = tx.update(params, state)
        u2, state = tx.update(params, state)
        outs.append((u1, u2))
    for other in outs[1:]:
        jax.tree.map(np.testing.assert_array_equal, outs[0], other)
    assert not np.allclose(outs[0][0]["a"], outs[0][1]["a"])  # a fresh draw every step
    with pytest.raises(ValueError, match="needs a PRNG key"):
        gradtx.add_noise(0.01, 0.55)
    with pytest.raises(ValueError, match="key or seed, not both"):
        gradtx.noisy_sgd(key=1, seed=1)
    with pytest.raises(ValueError, match="^eta must be in"):
        gradtx.add_noise(-1.0, 0.55, key=0)


def test_keep_params_nonnegative_stops_at_zero():
    tx = gradtx.chain(gradtx.sgd(0.5), gradtx.keep_params_nonnegative())
    params = {"w": jnp.array([1.0, 0.2, 3.0]), "s": jnp.asarray(0.1)}
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update({"w": jnp.array([1.0, 1.0, -1.0]), "s": jnp.asarray(1.0)}, state, params)
        params = gradtx.apply_updates(params, updates)
        assert all(bool(jnp.all(p >= 0)) for p in jax.tree.leaves(params))
    np.testing.assert_array_equal(params["w"], [0.0, 0.0, 5.5])
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, state)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_nans_matches_reference(dtype, mode):
    tx = gradtx.zero_nans()
    rng = np.random.default_rng(0)
    with R.precision(dtype):
        params = jax.tree.map(jnp.asarray, R.param_tree(R.DTYPES[dtype]))
        state = tx.init(params)
        signature = R.state_signature(state)
        update = jax.jit(tx.update) if mode == "jit" else tx.update
        for step, g_np in enumerate(R.grad_trees(R.DTYPES[dtype])):
            leaves, treedef = jax.tree.flatten(g_np)
            leaves = [np.array(x) for x in leaves]
            for x in leaves:  # NaN in some leaves at some steps, +-inf left alone
                flat = x.reshape(-1)
                if rng.random() < 0.5:
                    flat[rng.integers(flat.size)] = np.nan
                if rng.random() < 0.2:
                    flat[rng.integers(flat.size)] = np.inf
            grads = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])
            updates, state = update(grads, state, params)
            assert R.state_signature(state) == signature
            for got, x, found in zip(jax.tree.leaves(updates), leaves, jax.tree.leaves(state.found_nan)):
                np.testing.assert_array_equal(np.asarray(got), np.where(np.isnan(x), 0, x))
                assert got.dtype == x.dtype
                assert bool(found) == bool(np.isnan(x).any()), f"step {step}"


TRANSFORMS = {
    "centralize": lambda: gradtx.centralize(),
    "add_noise": lambda: gradtx.add_noise(0.01, 0.55, key=jax.random.key(0)),
    "keep_params_nonnegative": lambda: gradtx.keep_params_nonnegative(),
    "zero_nans": lambda: gradtx.zero_nans(),
}
DIRECTIONS = {"centralize", "add_noise", "zero_nans"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=name not in DIRECTIONS)
    if scale == 0.0 and name in {"centralize", "zero_nans", "keep_params_nonnegative"}:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


def test_centralize_removes_the_fan_in_mean_of_a_4d_kernel():
    g = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 4, 8)) + 5.0, jnp.float32)  # HWIO
    tx = gradtx.centralize()
    u, _ = tx.update({"k": g, "b": g[0, 0, 0]}, tx.init({"k": g, "b": g[0, 0, 0]}))
    np.testing.assert_allclose(np.asarray(u["k"]).mean(axis=(0, 1, 2)), np.zeros(8), atol=1e-5)
    np.testing.assert_array_equal(u["b"], g[0, 0, 0])  # a vector passes unchanged


def test_centralize_with_the_output_axis_first():
    g = np.arange(24.0).reshape(2, 3, 4)
    tx = gradtx.centralize(fan_out_axis=0)
    out, _ = tx.update({"w": jnp.asarray(g), "b": jnp.ones(3)}, tx.init(None))
    np.testing.assert_allclose(out["w"], g - g.mean(axis=(1, 2), keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(out["b"], 1.0)
    default, _ = gradtx.centralize().update(jnp.asarray(g), None)
    np.testing.assert_allclose(default, g - g.mean(axis=(0, 1), keepdims=True), rtol=1e-6)
