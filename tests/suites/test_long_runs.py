"""Long runs: every optimizer of ``helpers.OPTIMIZERS`` takes 100,000 steps on a small quadratic.

The whole run is one jitted ``jax.lax.scan``; its carry holds a flag "every parameter
and state entry finite so far" and the first step where that failed. Each run must
stay finite at every step, end near the minimum (within a radius stated per
optimizer below, with its reason), and leave every step counter at 100,000. A
second run takes 2,000 steps, moves every counter to 1,000 below the int32
maximum, and takes 2,000 more: the counters saturate and nothing becomes NaN.

Marked slow: ``python3 dev.py test --slow`` runs this file (about half a minute on
two cores, almost all of it XLA compilation).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import tree as gtree

from helpers import OPTIMIZERS

pytestmark = pytest.mark.slow

STEPS = 100_000

# f(x) = 1/2 sum_i d_i (x_i - c_i)^2: nine parameters in a matrix and a vector (so that
# Adafactor factors and SM3 keeps row and column accumulators), curvatures d in
# [0.5, 2] (condition number 4), minimum 0 at c; the run starts at x = 0, a distance
# of max|c| = 2 from it.
SCALE = {"w": jnp.array([[0.5, 1.0, 2.0], [1.5, 0.75, 1.25]]), "b": jnp.array([1.0, 0.6, 1.8])}
TARGET = {"w": jnp.array([[1.0, -0.5, 0.25], [-1.5, 0.75, 2.0]]), "b": jnp.array([-0.25, 1.25, 0.5])}
LEAF_NORM = max(float(jnp.linalg.norm(x)) for x in jax.tree.leaves(TARGET))  # 2.85, the larger leaf


def loss(params):
    terms = jax.tree.map(lambda x, d, c: jnp.sum(d * jnp.square(x - c)), params, SCALE, TARGET)
    return 0.5 * sum(jax.tree.leaves(terms))


# How far from the minimum (max |x - c|) each run may end. The default, 1e-3, is one
# step of the usual adaptive learning rate and 0.05% of the starting distance: methods
# whose steps shrink with the gradient (SGD and momentum, the Adam family, RMSProp,
# Rprop, Polyak, DoG, L-BFGS, ...) end far closer, most at float32 resolution. The
# others, with the neighbourhood they oscillate in, computed from their own
# hyperparameters ``h`` (the registry's defaults):
DEFAULT_RADIUS = 1e-3
RADIUS = {
    # Sign methods step by the learning rate whatever the gradient's size: sign SGD ends
    # within one step of the minimum; with a momentum of memory 1 / (1 - beta) steps, the
    # sign lags and the run overshoots by up to that many steps.
    "sign_sgd": lambda h: h["learning_rate"],  # 1e-3
    "signum": lambda h: h["learning_rate"] / (1 - h["beta"]),  # 1e-2
    "lion": lambda h: h["learning_rate"] / (1 - h["b2"]),  # 1e-2 (its momentum is the b2 average)
    # MARS-Lion steps by the sign of its one momentum, the b1 average of the corrected gradients
    "mars_lion": lambda h: h["learning_rate"] / (1 - h["b1"]),  # 0.06 (it ends at 4e-3)
    # Centred RMSProp divides by the gradient's spread, which vanishes with the gradient, so
    # its steps stay near the learning rate; momentum adds up 1 / (1 - momentum) of them.
    "rmsprop_centered_momentum": lambda h: h["learning_rate"] / (1 - h["momentum"]),  # 0.1
    # Schedule-free AdamW's z takes Adam's normalized steps, near the learning rate however small the
    # gradient; the parameters y = (1 - b1) z + b1 x carry 1 - b1 of them (the average x converges).
    "schedule_free_adamw": lambda h: h["learning_rate"] * (1 - h["b1"]),  # 0.01
    # NovoGrad divides by the leaf's gradient norm: steps of lr, summed by its momentum.
    "novograd": lambda h: h["learning_rate"] / (1 - h["b1"]),  # 1e-2
    # Layer-wise trust ratios move a whole leaf by lr * trust * ||leaf|| per step (LARS and
    # LAMB through a momentum of 1 / (1 - beta) steps).
    "fromage": lambda h: h["learning_rate"] * LEAF_NORM,  # 0.029
    "lars": lambda h: h["learning_rate"] * h["trust_coefficient"] * LEAF_NORM / (1 - h["momentum"]),  # 0.029
    "lamb": lambda h: h["learning_rate"] * h["trust_coefficient"] * LEAF_NORM / (1 - h["b1"]),  # 0.029
    # AdaGrad (and SM3, which keeps the same sums here) stalls in float32: its step
    # lr * d * |x - c| / sqrt(S) rounds away once below half an ulp of x, i.e. at
    # |x - c| = ulp(c) sqrt(S) / (2 lr d). The sums S this run accumulates (up to 1.6e4,
    # from the early, large gradients) put that at up to 1.2e-3 (it ends at 6e-4).
    "adagrad": lambda h: 2e-3,
    "sm3": lambda h: 2e-3,
    # Adafactor's weight decay is added after the learning rate, so 1e-4 * x per step pulls
    # against steps of at most lr * RMS(w) = 1.5e-2, and it has no fixed point: it circles
    # the minimum at 1e-4 to 5e-4 (10,000 to 300,000 steps). No closed form; 10x that.
    "adafactor_momentum_decay": lambda h: 5e-3,
}


def _finite(tree):
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def _counts(state):
    """Every step counter in a state (a leaf named ``count``, not a hyperparameter), by path."""
    return {
        gtree.path_str(path): leaf
        for path, leaf in gtree.leaves_with_path(state)
        if gtree.key_name(path[-1]) == "count" and "hyperparams" not in gtree.path_str(path)
    }


@functools.partial(jax.jit, static_argnums=(0, 3))
def run(tx, params, state, steps):
    """``steps`` updates in one scan, with the extra arguments of ``helpers.step`` (the
    loss ``value``, its gradient ``grad`` and ``value_fn``) for this problem's loss.
    Returns the parameters, the state, whether every step stayed finite, and the first
    step that did not (-1 if none)."""

    def body(carry, t):
        params, state, finite, first_bad = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(
            grads,
            state,
            params,
            value=value,
            grad=grads,
            value_fn=loss,
            obj_fn=loss,
            grad_fn=lambda p, i: jax.grad(loss)(p),
        )
        params = gradtx.apply_updates(params, updates)
        ok = _finite(params) & _finite(state)
        first_bad = jnp.where(finite & ~ok, t, first_bad)
        return (params, state, finite & ok, first_bad), None

    carry = (params, state, jnp.asarray(True), jnp.asarray(-1))
    (params, state, finite, first_bad), _ = jax.lax.scan(body, carry, jnp.arange(steps))
    return params, state, finite, first_bad


def start():
    return jax.tree.map(jnp.zeros_like, TARGET)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_100k_steps_stay_finite_and_end_near_the_minimum(name):
    tx = OPTIMIZERS[name]()
    params = start()
    state = tx.init(params)
    radius = RADIUS.get(name, lambda h: DEFAULT_RADIUS)(gradtx.hyperparams(state))
    params, state, finite, first_bad = run(tx, params, state, STEPS)
    assert bool(finite), f"{name}: a NaN or Inf first at step {int(first_bad)}"
    distance = max(float(jnp.max(jnp.abs(x - c))) for x, c in zip(jax.tree.leaves(params), jax.tree.leaves(TARGET)))
    assert distance <= radius, f"{name}: ended {distance:.3g} from the minimum, allowed {radius:.3g}"
    assert int(gradtx.step_count(state)) == STEPS
    counts = {path: int(c) for path, c in _counts(state).items()}
    assert counts and all(c == STEPS for c in counts.values()), counts


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_counters_saturate_at_the_int32_maximum_without_nan(name):
    tx = OPTIMIZERS[name]()
    top = np.iinfo(np.int32).max
    params, state, finite, _ = run(tx, start(), tx.init(start()), 2000)  # a state that has been used
    assert bool(finite)
    before = float(loss(params))
    counts = _counts(state)
    state = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(top - 1000, leaf.dtype) if gtree.path_str(path) in counts else leaf, state
    )
    params, state, finite, first_bad = run(tx, params, state, 2000)  # past the maximum
    assert bool(finite), f"{name}: a NaN or Inf first at step {int(first_bad)} after the jump"
    assert all(int(c) == top for c in _counts(state).values()), _counts(state)
    # it keeps descending, or stays in the neighbourhood it oscillates in (a loss of
    # 1e-4 of the start's is a distance of about 1e-2 here)
    assert float(loss(params)) <= max(before, 1e-4 * float(loss(start()))), (before, float(loss(params)))
