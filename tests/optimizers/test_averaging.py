"""Averaged SGD: 12 steps against a NumPy transcription of torch.optim.ASGD's algorithm, and convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import run_problem
from references.averaging import TorchASGD

CONFIGS = {
    "defaults": dict(),
    "averaging_from_step_5": dict(learning_rate=0.05, lambd=0.05, alpha=0.75, t0=3.0, weight_decay=0.01),
    "fast_decay": dict(learning_rate=0.2, lambd=0.5, alpha=1.0, t0=0.0, weight_decay=0.0),
}


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_asgd_matches_torch_algorithm_for_12_steps(config, mode):
    kwargs = CONFIGS[config]
    tx = gradtx.asgd(**kwargs)
    ref = TorchASGD(**{("lr" if k == "learning_rate" else k): v for k, v in kwargs.items()})
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    ref.init(R.leaves64(params))
    state = tx.init(params)
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    for grads in R.grad_trees(np.float32, steps=R.STEPS):
        updates, state = update(jax.tree.map(jnp.asarray, grads), state, params)
        params = gradtx.apply_updates(params, updates)
        ref.step(R.leaves64(grads))
        for got, want in zip(R.leaves64(params), ref.params):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
        for got, want in zip(R.leaves64(gradtx.tree.get(state, "ax")), ref.ax):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    averaging = ref.mu < 1
    assert averaging == (config != "defaults")
    if averaging:  # the average really differs from the last iterate
        assert not np.allclose(R.leaves64(gradtx.tree.get(state, "ax"))[0], ref.params[0])


def test_state_is_readable_and_steerable_by_name():
    tx = gradtx.asgd()
    state = tx.init({"w": jnp.ones(2)})
    assert gradtx.hyperparams(state) == {
        "weight_decay": 0.0,
        "learning_rate": 0.01,
        "lambd": 1e-4,
        "alpha": 0.75,
        "t0": 1e6,
    }
    state = gradtx.set_hyperparams(state, learning_rate=0.5)
    updates, state = tx.update({"w": jnp.ones(2)}, state, {"w": jnp.zeros(2)})
    np.testing.assert_allclose(updates["w"], -0.5)
    np.testing.assert_allclose(gradtx.tree.get(state, "ax")["w"], -0.5)
    assert int(gradtx.step_count(state)) == 1


def test_a_scheduled_learning_rate_enters_the_eta_formula():
    schedule = lambda t: 0.1 / (1.0 + t)  # noqa: E731
    tx = gradtx.scale_by_asgd(learning_rate=schedule, lambd=1.0, alpha=1.0)
    params, state = jnp.zeros(1), tx.init(jnp.zeros(1))
    for t in range(4):
        updates, state = tx.update(jnp.ones(1), state, params)
        lr = schedule(t)
        np.testing.assert_allclose(updates, -lr / (1 + lr * t), rtol=1e-6)


@pytest.mark.parametrize(
    "problem, learning_rate, steps, factor",
    [("quadratic", 1e-2, 1000, 1e-8), ("rosenbrock", 1e-3, 5000, 1e-3), ("digits", 0.5, 500, 0.1)],
)
def test_convergence_factor_within_budget(problem, learning_rate, steps, factor):
    initial, final, _ = run_problem(gradtx.asgd(learning_rate), problem, steps)
    assert final <= factor * initial, (problem, initial, final)


def test_the_average_converges_too():
    scales = jnp.logspace(0.0, 2.0, 10)
    loss = lambda w: 0.5 * jnp.sum(scales * w**2)  # noqa: E731 - the benchmark's quadratic
    tx = gradtx.asgd(1e-2, t0=100.0)

    def step(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return (gradtx.apply_updates(w, updates), state), None

    w0 = jnp.ones(10)
    (w, state), _ = jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), None, length=1500))(w0)
    ax = gradtx.tree.get(state, "ax")
    assert float(loss(ax)) <= 1e-3 * float(loss(w0))
    assert float(loss(w)) < float(loss(ax))  # on a noiseless problem the last iterate is ahead


def test_edge_cases_stay_finite():
    tx = gradtx.asgd(learning_rate=0.1, lambd=0.01, t0=0.0)
    params = {"one": jnp.array([1.0]), "scalar": jnp.asarray(2.0)}
    state = tx.init(params)
    for g in [0.0, 1e-30, 1e30, 0.0]:
        grads = jax.tree.map(lambda p: jnp.full(p.shape, g, jnp.float32), params)  # noqa: B023 (used at once)
        updates, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((params, state)))


@pytest.mark.parametrize("argument", ["learning_rate", "lambd", "alpha", "t0", "weight_decay"])
def test_negative_hyperparameters_are_rejected(argument):
    with pytest.raises(ValueError, match=f"^{argument} must be in"):
        gradtx.asgd(**{argument: -1.0})
