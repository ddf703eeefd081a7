"""Training scripts written for Optax, run on gradtx with one change: ``import gradtx as optax``.

Each script below is code as Optax users write it (Flax linen with ``TrainState``, Flax NNX with
``nnx.Optimizer``, the idioms of Optax's example notebooks: losses, injected hyperparameters read
from the state, gradient accumulation, masks that are a prefix of the parameters, projected
gradient descent, L-BFGS with its line search). Each runs with ``optax`` bound to gradtx and must
reach the loss stated in it; when Optax is installed, the same script also runs on Optax, which
checks that the script is Optax code and not gradtx code.
"""

from __future__ import annotations

import textwrap

import pytest

import gradtx

LINEN = """
import jax, jax.numpy as jnp, numpy as np
import flax.linen as nn
from flax.training import train_state
from sklearn.datasets import load_digits

digits = load_digits()
x = jnp.asarray(digits.data[:512] / 16.0, jnp.float32)
y = jnp.asarray(digits.target[:512])

class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(64)(x)))

model = MLP()
schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 200)
tx = optax.chain(optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, weight_decay=1e-4))
state = train_state.TrainState.create(apply_fn=model.apply, params=model.init(jax.random.key(0), x[:1]), tx=tx)

@jax.jit
def train_step(state, x, y):
    def loss_fn(params):
        logits = state.apply_fn(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

for step in range(200):
    state, loss = train_step(state, x, y)
lr = state.opt_state[1].hyperparams["learning_rate"]
assert float(loss) < 0.1, float(loss)
assert 0 <= float(lr) < 1e-3, float(lr)
"""

NNX = """
import jax, jax.numpy as jnp
from flax import nnx

class Model(nnx.Module):
    def __init__(self, rngs):
        self.encoder = nnx.Linear(4, 16, rngs=rngs)
        self.head = nnx.Linear(16, 1, rngs=rngs)
    def __call__(self, x):
        return self.head(nnx.tanh(self.encoder(x)))

model = Model(nnx.Rngs(0))
x = jax.random.normal(jax.random.key(1), (64, 4))
y = jnp.sin(x.sum(axis=1, keepdims=True))
# weight decay on the encoder's kernel only
decay = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
tx = optax.chain(optax.adam(1e-2), optax.masked(optax.add_decayed_weights(1e-4), decay))
optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.l2_loss(model(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

for _ in range(300):
    loss = train_step(model, optimizer, x, y)
assert float(loss) < 0.01, float(loss)
"""

ACCUMULATION = """
import jax, jax.numpy as jnp

params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
target = jnp.array([1.0, -2.0, 0.5])
opt = optax.MultiSteps(optax.sgd(0.3, momentum=0.5), every_k_schedule=4)
opt_state = opt.init(params)

def loss(params, x):
    return optax.squared_error(x @ params["w"] + params["b"], x @ target + 1.0).mean()

@jax.jit
def step(params, opt_state, x):
    grads = jax.grad(loss)(params, x)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

key = jax.random.key(0)
for _ in range(400):
    key, sub = jax.random.split(key)
    params, opt_state = step(params, opt_state, jax.random.normal(sub, (8, 3)))
assert optax.tree.norm(optax.tree.sub(params["w"], target)) < 1e-2
"""

PROJECTED = """
import jax, jax.numpy as jnp

# the probability vector closest to a target under a cross-entropy, by projected gradient descent
target = jnp.array([0.1, 0.6, 0.3])
def objective(p):
    return optax.losses.kl_divergence(jnp.log(jnp.clip(p, 1e-6)), target)

p = jnp.ones(3) / 3
opt = optax.sgd(0.05)
state = opt.init(p)
for _ in range(500):
    updates, state = opt.update(jax.grad(objective)(p), state)
    p = optax.projections.projection_simplex(optax.apply_updates(p, updates))
assert jnp.allclose(p, target, atol=1e-3), p
"""

LBFGS = """
import jax, jax.numpy as jnp

def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

opt = optax.lbfgs()
params = jnp.zeros(5)
state = opt.init(params)
value_and_grad = optax.value_and_grad_from_state(rosenbrock)

@jax.jit
def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=rosenbrock)
    return optax.apply_updates(params, updates), state

for _ in range(100):
    params, state = step(params, state)
assert float(rosenbrock(params)) < 1e-8, float(rosenbrock(params))
"""

SCRIPTS = {"linen": LINEN, "nnx": NNX, "accumulation": ACCUMULATION, "projected": PROJECTED, "lbfgs": LBFGS}


def _run(script: str, library) -> None:
    exec(compile(textwrap.dedent(script), "<script>", "exec"), {"optax": library})


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_an_optax_script_runs_on_gradtx(name):
    _run(SCRIPTS[name], gradtx)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_script_is_optax_code(name):
    optax = pytest.importorskip("optax")
    _run(SCRIPTS[name], optax)
