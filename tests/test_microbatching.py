"""microbatch equals the full-batch computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def loss(params, batch):
    hidden = jnp.tanh(batch["x"] @ params["w1"])
    return jnp.mean((hidden @ params["w2"] - batch["y"]) ** 2)


PARAMS = {"w1": jnp.linspace(-1, 1, 12).reshape(4, 3), "w2": jnp.linspace(0, 1, 3)}
BATCH = {"x": jax.random.normal(jax.random.key(0), (32, 4)), "y": jax.random.normal(jax.random.key(1), (32,))}


@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_mean_over_microbatches_equals_the_full_batch(n):
    value, grads = jax.jit(gradtx.microbatch(jax.value_and_grad(loss), n))(PARAMS, BATCH)
    full_value, full_grads = jax.value_and_grad(loss)(PARAMS, BATCH)
    np.testing.assert_allclose(value, full_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, full_grads)


def test_sum_and_errors():
    count = gradtx.microbatch(lambda b: jnp.sum(b["y"] * 0 + 1), 4, batch_argnums=0, reduce="sum")(BATCH)
    assert float(count) == 32
    with pytest.raises(ValueError, match="leading size 32, which 5 microbatches do not divide"):
        gradtx.microbatch(jax.value_and_grad(loss), 5)(PARAMS, BATCH)
    with pytest.raises(ValueError, match="reduce must be"):
        gradtx.microbatch(loss, 2, reduce="max")
