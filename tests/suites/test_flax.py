"""Flax accepts gradtx optimizers unchanged: NNX's Optimizer and linen's TrainState."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

flax = pytest.importorskip("flax")
from flax import linen, nnx  # noqa: E402
from flax.training import train_state  # noqa: E402

# a small, well-posed regression: y = x @ w_true + 0.5
KEY = jax.random.key(0)
X = jax.random.normal(KEY, (64, 4))
Y = X @ jnp.asarray([[1.0], [-2.0], [0.5], [3.0]]) + 0.5


class NnxModel(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)


def mse(pred):
    return jnp.mean((pred - Y) ** 2)


def nnx_train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: mse(m(X)))(model)
    optimizer.update(model, grads, value=loss)  # extra keyword arguments are forwarded and ignored
    return loss


def test_nnx_optimizer_trains():
    model = NnxModel(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gradtx.adam(0.05), wrt=nnx.Param)
    step = nnx.jit(nnx_train_step)
    first = float(step(model, optimizer))
    for _ in range(199):
        last = float(step(model, optimizer))
    assert last < first / 100, (first, last)
    # the state inside nnx.Optimizer is readable by name
    assert gradtx.hyperparams(optimizer.opt_state)["learning_rate"] == 0.05
    assert int(gradtx.step_count(optimizer.opt_state)) == 200


def test_nnx_optimizer_matches_a_hand_written_loop():
    model = NnxModel(nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, gradtx.adamw(0.05, weight_decay=1e-2), wrt=nnx.Param)
    step = nnx.jit(nnx_train_step)
    for _ in range(20):
        step(model, optimizer)

    tx = gradtx.adamw(0.05, weight_decay=1e-2)
    state = tx.init(params)
    loss_fn = lambda p: mse(X @ p["linear"]["kernel"] + p["linear"]["bias"])  # noqa: E731
    for _ in range(20):
        updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
        params = gradtx.apply_updates(params, updates)
    final = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), final, params)


class LinenModel(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(x)


def test_linen_train_state_trains():
    model = LinenModel()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(KEY, X)["params"], tx=gradtx.sgd(0.1, momentum=0.9)
    )

    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(lambda p: mse(state.apply_fn({"params": p}, X)))(state.params)
        return state.apply_gradients(grads=grads), loss

    state, first = train_step(state)
    for _ in range(100):
        state, last = train_step(state)
    assert float(last) < float(first) / 100
    assert int(gradtx.step_count(state.opt_state)) == 101
