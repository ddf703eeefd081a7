"""Masks and labels from path patterns, on dicts, Flax linen params and Flax NNX state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_path_mask_on_a_dict():
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "ln": {"scale": jnp.ones(2)}, "x": None}
    assert gradtx.path_mask("*bias")(params) == {
        "dense": {"bias": True, "kernel": False},
        "ln": {"scale": False},
        "x": None,
    }
    assert gradtx.path_mask(["*bias", "ln/*"], invert=True)(params) == {
        "dense": {"bias": False, "kernel": True},
        "ln": {"scale": False},
        "x": None,
    }
    with pytest.raises(ValueError, match="patterns must be non-empty strings"):
        gradtx.path_mask([])


def test_path_labels_first_match_wins_and_unmatched_paths_are_named():
    params = {"embed": jnp.ones((3, 2)), "head": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    labels = gradtx.path_labels([("*bias", "no_decay"), ("head/*", "head"), ("embed", "frozen")])(params)
    assert labels == {"embed": "frozen", "head": {"bias": "no_decay", "kernel": "head"}}
    with pytest.raises(ValueError, match="no rule matches the parameter 'head/kernel'"):
        gradtx.path_labels({"embed": "frozen", "*bias": "x"})(params)


def test_adamw_without_decay_on_biases_and_norm_scales_in_linen():
    linen = pytest.importorskip("flax.linen")

    class Model(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(2)(linen.LayerNorm()(linen.Dense(3)(x)))

    params = Model().init(jax.random.key(0), jnp.ones((1, 2)))["params"]
    mask = gradtx.path_mask(["*bias", "*LayerNorm*/scale"], invert=True)
    assert [gradtx.tree.path_str(p) for p, m in gradtx.tree.leaves_with_path(mask(params)) if m] == [
        "Dense_0/kernel",
        "Dense_1/kernel",
    ]
    tx = gradtx.adamw(0.1, weight_decay=0.5, mask=mask)
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    np.testing.assert_allclose(updates["Dense_0"]["kernel"], -0.1 * 0.5 * params["Dense_0"]["kernel"], rtol=1e-6)
    assert not np.any(np.asarray(updates["LayerNorm_0"]["scale"]))
    assert not np.any(np.asarray(updates["Dense_1"]["bias"]))


def test_rules_see_nnx_paths_without_the_variable_attribute():
    nnx = pytest.importorskip("flax.nnx")

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(2, 3, rngs=rngs)
            self.norm = nnx.LayerNorm(3, rngs=rngs)

    model = Model(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    mask = gradtx.path_mask(["*bias", "norm/scale"], invert=True)
    selected = [gradtx.tree.path_str(p) for p, m in gradtx.tree.leaves_with_path(mask(state)) if m]
    assert selected == ["linear/kernel/value"]
    # and the optimizer built with it trains inside nnx.Optimizer
    optimizer = nnx.Optimizer(model, gradtx.adamw(0.1, weight_decay=0.5, mask=mask), wrt=nnx.Param)
    bias_before = np.asarray(model.linear.bias[...])
    grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    optimizer.update(model, grads)
    np.testing.assert_array_equal(np.asarray(model.linear.bias[...]), bias_before)


# ------------------------------------------------------------ Optax's prefixes and extra arguments


NESTED = {"encoder": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "head": {"w": jnp.ones(3)}}


def test_a_mask_or_labels_may_be_a_prefix_of_the_parameters():
    tx = gradtx.masked(gradtx.scale(0.0), {"encoder": True, "head": False})
    updates, _ = tx.update(NESTED, tx.init(NESTED))
    assert all(np.all(x == 0) for x in jax.tree.leaves(updates["encoder"]))
    np.testing.assert_array_equal(updates["head"]["w"], 1.0)
    tx = gradtx.partition({"a": gradtx.scale(2.0), "b": gradtx.scale(-1.0)}, {"encoder": "a", "head": "b"})
    updates, _ = tx.update(NESTED, tx.init(NESTED))
    np.testing.assert_array_equal(updates["encoder"]["w"], 2.0)
    np.testing.assert_array_equal(updates["head"]["w"], -1.0)
    with pytest.raises(ValueError, match="the mask"):
        gradtx.masked(gradtx.scale(0.0), {"encoder": True, "other": False}).init(NESTED)


def _records_extra(seen):
    def update(updates, state, params=None, **extra_args):
        seen.append(extra_args)
        return updates, state

    return gradtx.GradientTransformation(lambda params: gradtx.EmptyState(), update)


@pytest.mark.parametrize("compatible", [False, True])
def test_mask_compatible_extra_args(compatible):
    per_param = jax.tree.map(lambda x: 10 * x, NESTED)
    seen = []
    tx = gradtx.masked(_records_extra(seen), {"encoder": True, "head": False}, mask_compatible_extra_args=compatible)
    tx.update(NESTED, tx.init(NESTED), per_param=per_param, scalar=1.0)
    assert seen[-1]["scalar"] == 1.0
    given = seen[-1]["per_param"]
    if compatible:
        assert isinstance(given["head"]["w"], gradtx.MaskedNode)
        np.testing.assert_array_equal(given["encoder"]["w"], 10.0)
    else:
        assert given is per_param
    seen.clear()
    tx = gradtx.partition(
        {"a": _records_extra(seen), "b": _records_extra(seen)},
        {"encoder": "a", "head": "b"},
        mask_compatible_extra_args=compatible,
    )
    tx.update(NESTED, tx.init(NESTED), per_param=per_param)
    assert len(seen) == 2
    if compatible:
        assert isinstance(seen[0]["per_param"]["head"]["w"], gradtx.MaskedNode)
        assert isinstance(seen[1]["per_param"]["encoder"]["w"], gradtx.MaskedNode)
    else:
        assert all(s["per_param"] is per_param for s in seen)
