"""chain, named_chain and masked against hand-built equivalents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"dense": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "norm": {"scale": jnp.ones(3)}, "none": None}
GRADS = jax.tree.map(lambda p: jnp.sin(p) + 0.3, PARAMS)


def run(tx, steps=4, jit=False):
    update = jax.jit(tx.update) if jit else tx.update
    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(steps):
        updates, state = update(GRADS, state, params)
        params = gradtx.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("jit", [False, True])
def test_chain_is_the_members_in_order(jit):
    chained = run(gradtx.chain(gradtx.clip(0.5), gradtx.scale_by_adam(), gradtx.scale(-0.1)), jit=jit)
    adam = gradtx.scale_by_adam()
    params, state = PARAMS, adam.init(PARAMS)
    for _ in range(4):
        clipped = jax.tree.map(lambda g: jnp.clip(g, -0.5, 0.5), GRADS)
        u, state = adam.update(clipped, state, params)
        params = gradtx.apply_updates(params, jax.tree.map(lambda x: -0.1 * x, u))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), chained, params)


def test_named_chain_equals_chain_and_names_its_state():
    named = gradtx.named_chain(("adam", gradtx.scale_by_adam()), ("lr", gradtx.scale(-0.1)))
    assert sorted(named.init(PARAMS)) == ["adam", "lr"]
    plain = gradtx.chain(gradtx.scale_by_adam(), gradtx.scale(-0.1))
    jax.tree.map(np.testing.assert_array_equal, run(named), run(plain))
    with pytest.raises(ValueError, match="unique"):
        gradtx.named_chain(("a", gradtx.identity()), ("a", gradtx.identity()))


def test_chain_rejects_what_is_not_a_transform():
    with pytest.raises(TypeError, match="chain member 1"):
        gradtx.chain(gradtx.identity(), lambda g: g)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("as_function", [False, True])
def test_masked_equals_running_the_inner_transform_on_the_subset(jit, as_function):
    mask = {"dense": {"w": True, "b": False}, "norm": {"scale": False}, "none": None}
    tx = gradtx.chain(gradtx.masked(gradtx.scale_by_adam(), (lambda p: mask) if as_function else mask), gradtx.scale(-0.1))
    got = run(tx, jit=jit)
    # by hand: Adam on w alone, plain -0.1 * g on the rest
    adam = gradtx.scale_by_adam()
    w, state = PARAMS["dense"]["w"], adam.init(PARAMS["dense"]["w"])
    for _ in range(4):
        u, state = adam.update(GRADS["dense"]["w"], state, w)
        w = w - 0.1 * u
    np.testing.assert_allclose(got["dense"]["w"], w, rtol=1e-6)
    np.testing.assert_allclose(got["dense"]["b"], PARAMS["dense"]["b"] - 0.4 * GRADS["dense"]["b"], rtol=1e-6)
    assert got["none"] is None
    inner = tx.init(PARAMS)[0].inner_state
    assert jax.tree.leaves(inner.mu) and len(jax.tree.leaves(inner.mu)) == 1


def test_masks_that_do_not_fit_name_the_path():
    with pytest.raises(ValueError, match="'norm/scale' is missing from the mask"):
        gradtx.masked(gradtx.identity(), {"dense": {"w": True, "b": False}, "none": None}).init(PARAMS)
    with pytest.raises(TypeError, match="at 'dense/w' got"):
        gradtx.masked(gradtx.identity(), {"dense": {"w": 1, "b": False}, "norm": {"scale": True}, "none": None}).init(PARAMS)
