"""The protocol: identity, stateless, apply_updates, and guarantees every optimizer keeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

from helpers import OPTIMIZERS
from helpers import step as update_with_extras

PARAMS = {"layer": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, "scale": jnp.asarray(2.0)}


def grads_like(params, value=0.5):
    return jax.tree.map(lambda p: jnp.full(jnp.shape(p), value, jnp.result_type(p)), params)


def test_identity_and_stateless_and_set_to_zero():
    g = grads_like(PARAMS, 0.25)
    for tx, expected in [
        (gradtx.identity(), 0.25),
        (gradtx.stateless(lambda u, p: jax.tree.map(lambda x, y: x * y, u, p)), None),
        (gradtx.set_to_zero(), 0.0),
    ]:
        state = tx.init(PARAMS)
        assert state == gradtx.EmptyState()
        out, new_state = tx.update(g, state, PARAMS)
        assert new_state == state
        want = jax.tree.map(lambda x, p: x * p, g, PARAMS) if expected is None else grads_like(PARAMS, expected)
        jax.tree.map(np.testing.assert_array_equal, out, want)


def test_apply_updates_keeps_each_parameter_dtype_and_none_leaves():
    params = {"half": jnp.ones(3, jnp.bfloat16), "full": jnp.ones(3), "missing": None}
    updates = {"half": jnp.full(3, 0.5, jnp.float32), "full": jnp.full(3, 0.5), "missing": None}
    new = gradtx.apply_updates(params, updates)
    assert new["half"].dtype == jnp.bfloat16 and new["full"].dtype == jnp.float32
    assert new["missing"] is None
    np.testing.assert_array_equal(np.asarray(new["full"]), np.full(3, 1.5))


def test_apply_updates_names_the_first_differing_path():
    with pytest.raises(ValueError, match="'layer/w' is missing from updates"):
        gradtx.apply_updates(PARAMS, {"layer": {"b": jnp.zeros(3)}, "scale": jnp.asarray(0.0)})


def test_incremental_and_periodic_update_closed_forms():
    new, old = jnp.full(2, 4.0), jnp.full(2, 2.0)
    np.testing.assert_allclose(gradtx.incremental_update(new, old, 0.25), 0.25 * 4 + 0.75 * 2)
    for step in range(7):
        out = gradtx.periodic_update(new, old, jnp.asarray(step), 3)
        np.testing.assert_array_equal(out, new if step % 3 == 0 else old)
    with pytest.raises(ValueError, match="update_period"):
        gradtx.periodic_update(new, old, jnp.asarray(0), 0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_is_stable_with_bfloat16_params_and_float32_grads(name):
    tx = OPTIMIZERS[name]()
    params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.zeros(2, jnp.bfloat16), "s": jnp.asarray(1.0)}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.3, jnp.float32), params)
    state = tx.init(params)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves), "no Python scalars in the state"
    structure, dtypes = jax.tree.structure(state), [x.dtype for x in leaves]
    step = jax.jit(lambda g, s, p: update_with_extras(tx, g, s, p))
    for _ in range(3):
        updates, state = step(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        assert jax.tree.structure(state) == structure
        assert [x.dtype for x in jax.tree.leaves(state)] == dtypes
        assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda g: g.dtype, grads)
    assert params["w"].dtype == jnp.bfloat16 and params["s"].dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_ignores_extra_arguments(name):
    tx = OPTIMIZERS[name]()
    state = tx.init(PARAMS)
    plain, _ = update_with_extras(tx, grads_like(PARAMS), state, PARAMS)
    extra, _ = update_with_extras(tx, grads_like(PARAMS), state, PARAMS, key=jax.random.key(0), unused=[1, 2])
    jax.tree.map(np.testing.assert_array_equal, plain, extra)


@pytest.mark.parametrize("name", sorted(set(OPTIMIZERS) - {"sgd"}))
def test_mismatched_gradients_name_the_first_differing_path(name):
    tx = OPTIMIZERS[name]()
    state = tx.init(PARAMS)
    wrong = {"layer": {"w": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "scale": jnp.asarray(1.0)}
    with pytest.raises(ValueError, match="'layer/b'"):
        update_with_extras(tx, wrong, state, PARAMS)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_saturated_step_counter_keeps_working(name):
    tx = OPTIMIZERS[name]()
    state = tx.init(PARAMS)
    top = jnp.iinfo(jnp.int32).max
    for path, _ in gradtx.tree.get_all_with_path(state, "count"):
        state = gradtx.tree.set(state, **{"/" + gradtx.tree.path_str(path): top})
    for _ in range(2):
        updates, state = update_with_extras(tx, grads_like(PARAMS), state, PARAMS)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    assert int(gradtx.step_count(state)) == top


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_empty_tree_and_none_leaves(name):
    tx = OPTIMIZERS[name]()
    updates, _ = update_with_extras(tx, {}, tx.init({}), {})
    assert updates == {}
    params = {"a": jnp.ones(2), "b": None}
    step = jax.jit(lambda g, s, p: update_with_extras(tx, g, s, p))
    updates, _ = step({"a": jnp.ones(2), "b": None}, tx.init(params), params)
    assert updates["b"] is None and updates["a"].shape == (2,)
