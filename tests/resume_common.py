"""What the resume test and its worker process share: the run, step by step."""

import jax
import jax.numpy as jnp

import gradtx
from conftest import OPTIMIZERS

PARAMS = {"dense": {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}, "scale": jnp.asarray(1.5)}
STOP_AT, TOTAL_STEPS = 4, 9

EXTRA = {
    # a schedule half-way through and gradient accumulation mid-cycle
    "warmup_cosine_adamw": lambda: gradtx.adamw(gradtx.warmup_cosine_decay_schedule(0.0, 0.1, 3, 20)),
    "multisteps_adam": lambda: gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=3).gradient_transformation(),
}


def build(name):
    return (OPTIMIZERS.get(name) or EXTRA[name])()


def loss(params):
    return jnp.sum(jnp.sin(params["dense"]["w"]) ** 2) + jnp.sum((params["dense"]["b"] - 1) ** 2) + params["scale"] ** 4


def run_steps(tx, params, state, start, stop):
    step = jax.jit(lambda p, s: _step(tx, p, s))
    for _ in range(start, stop):
        params, state = step(params, state)
    return params, state


def _step(tx, params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grads, state, params, value=value, grad=grads, value_fn=loss)
    return gradtx.apply_updates(params, updates), state
