"""Hyperparameters in the state: read, set, validated, and free of recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

from helpers import OPTIMIZERS
from helpers import step as update_with_extras

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
GRADS = {"w": jnp.full((2, 2), 0.5), "b": jnp.full(2, -1.0)}


def test_adam_reports_its_hyperparameters_by_the_papers_names():
    state = gradtx.adam(3e-4, b1=0.8, b2=0.99, eps=1e-6).init(PARAMS)
    assert gradtx.hyperparams(state) == {
        "b1": 0.8,
        "b2": 0.99,
        "eps": 1e-6,
        "eps_root": 0.0,
        "learning_rate": 3e-4,
    }


# Polyak's step size is computed from the loss at every step: it has no learning
# rate, only Optax's `scaling` multiplier and a `max_learning_rate` cap.
NO_LEARNING_RATE = {"polyak_sgd": "max_learning_rate"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_reports_its_learning_rate_and_step(name):
    tx = OPTIMIZERS[name]()
    state = tx.init(PARAMS)
    assert NO_LEARNING_RATE.get(name, "learning_rate") in gradtx.hyperparams(state)
    for step in range(3):
        assert int(gradtx.step_count(state)) == step
        _, state = update_with_extras(tx, GRADS, state, PARAMS)


def test_scheduled_learning_rate_is_the_value_the_next_update_uses():
    schedule = lambda t: 0.5 / (1.0 + t)  # noqa: E731
    tx = gradtx.sgd(schedule)
    state = tx.init(PARAMS)
    for t in range(5):
        assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(schedule(t), rel=1e-6)
        updates, state = tx.update(GRADS, state, PARAMS)
        np.testing.assert_allclose(updates["w"], -schedule(t) * 0.5, rtol=1e-6)


def test_set_hyperparams_changes_the_next_update_and_keeps_the_structure():
    tx = gradtx.sgd(0.1, momentum=0.9)
    state = tx.init(PARAMS)
    new = gradtx.set_hyperparams(state, learning_rate=0.01, momentum=0.5)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert [x.dtype for x in jax.tree.leaves(new)] == [x.dtype for x in jax.tree.leaves(state)]
    assert gradtx.hyperparams(new) == {"momentum": 0.5, "learning_rate": 0.01}
    _, new = tx.update(GRADS, new, PARAMS)
    updates, _ = tx.update(GRADS, new, PARAMS)
    # second step of momentum 0.5: b = g + 0.5 g = 1.5 g, scaled by -0.01
    np.testing.assert_allclose(updates["b"], -0.01 * 1.5 * -1.0, rtol=1e-6)


def test_set_hyperparams_in_a_jitted_step_does_not_recompile():
    tx = gradtx.adamw(1e-3)
    traces = []

    @jax.jit
    def train_step(params, state):
        traces.append(1)
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    for lr in [1e-3, 3e-4, 1e-4, 5e-2]:
        state = gradtx.set_hyperparams(state, learning_rate=lr, weight_decay=lr / 10, b1=0.8)
        params, state = train_step(params, state)
    assert len(traces) == 1


def test_a_learning_rate_sweep_reuses_one_compiled_step():
    tx = gradtx.adam()
    traces = []

    def run(lr):
        traces.append(1)
        state = gradtx.set_hyperparams(tx.init(PARAMS), learning_rate=lr)
        updates, _ = tx.update(GRADS, state, PARAMS)
        return updates["b"]

    lrs = jnp.asarray([1e-3, 1e-2, 1e-1])
    swept = jax.jit(jax.vmap(run))(lrs)
    assert len(traces) == 1
    # the first Adam step is -lr * sign(g) (up to eps)
    np.testing.assert_allclose(swept, np.asarray(lrs)[:, None] * np.ones((3, 2)), rtol=1e-5)


def test_a_name_found_twice_needs_a_path():
    tx = gradtx.chain(gradtx.scale_by_learning_rate(0.1), gradtx.scale_by_learning_rate(0.2))
    state = tx.init(PARAMS)
    assert gradtx.hyperparams(state) == {"0/learning_rate": 0.1, "1/learning_rate": 0.2}
    with pytest.raises(ValueError, match="ambiguous.*0/learning_rate.*1/learning_rate"):
        gradtx.set_hyperparams(state, learning_rate=0.3)
    state = gradtx.set_hyperparams(state, **{"1/learning_rate": 0.3})
    assert gradtx.hyperparams(state)["1/learning_rate"] == 0.3


def test_named_chain_paths_use_the_names():
    tx = gradtx.named_chain(("warm", gradtx.scale_by_learning_rate(0.1)), ("main", gradtx.scale_by_learning_rate(0.2)))
    state = gradtx.set_hyperparams(tx.init(PARAMS), **{"main/learning_rate": 0.5})
    assert gradtx.hyperparams(state) == {"main/learning_rate": 0.5, "warm/learning_rate": 0.1}


def test_setting_errors_name_what_is_wrong():
    state = gradtx.adam().init(PARAMS)
    with pytest.raises(KeyError, match="no hyperparameter 'lr'.*learning_rate"):
        gradtx.set_hyperparams(state, lr=0.1)
    with pytest.raises(ValueError, match="learning_rate must be a scalar"):
        gradtx.set_hyperparams(state, learning_rate=jnp.ones(2))
    scheduled = gradtx.adam(lambda t: 1e-3).init(PARAMS)
    with pytest.raises(ValueError, match="follows a schedule"):
        gradtx.set_hyperparams(scheduled, learning_rate=0.1)


def test_hyperparams_work_under_jit():
    tx = gradtx.adam(2e-3)
    lr = jax.jit(lambda s: gradtx.hyperparams(s)["learning_rate"])(tx.init(PARAMS))
    assert float(lr) == pytest.approx(2e-3)


@pytest.mark.parametrize(
    "build, argument, value",
    [
        (lambda v: gradtx.adam(b1=v), "b1", 1.0),
        (lambda v: gradtx.adam(b2=v), "b2", -0.1),
        (lambda v: gradtx.adam(eps=v), "eps", -1e-8),
        (lambda v: gradtx.adam(eps_root=v), "eps_root", float("nan")),
        (lambda v: gradtx.adam(learning_rate=v), "learning_rate", -1e-3),
        (lambda v: gradtx.adamw(weight_decay=v), "weight_decay", -0.1),
        (lambda v: gradtx.sgd(0.1, momentum=v), "decay", 1.5),
        (lambda v: gradtx.rmsprop(decay=v), "decay", 1.0),
        (lambda v: gradtx.adagrad(initial_accumulator_value=v), "initial_accumulator_value", -1.0),
        (lambda v: gradtx.adamax(b2=v), "b2", 2.0),
        (lambda v: gradtx.clip_by_global_norm(v), "max_norm", 0.0),
        (lambda v: gradtx.clip(v), "max_delta", -1.0),
        (lambda v: gradtx.ema(v), "decay", -0.5),
    ],
)
def test_invalid_hyperparameters_are_rejected_at_construction(build, argument, value):
    with pytest.raises(ValueError, match=f"^{argument} must be in .*got {value}"):
        build(value)


def test_schedules_are_refused_where_no_step_is_kept():
    with pytest.raises(TypeError, match="b1 must be a number"):
        gradtx.scale_by_adam(b1=lambda t: 0.9)


def test_a_schedule_returning_a_vector_is_an_error():
    tx = gradtx.sgd(lambda t: jnp.ones(2))
    with pytest.raises(ValueError, match="schedule for learning_rate must return a scalar"):
        tx.init(PARAMS)


def test_step_count_without_a_counter_is_an_error():
    with pytest.raises(ValueError, match="no step counter"):
        gradtx.step_count(gradtx.clip(1.0).init(PARAMS))


@pytest.mark.parametrize("given", [jnp.asarray(1.5), np.asarray(1.5), np.float32(1.5), jnp.asarray(1.5, jnp.bfloat16)])
def test_a_known_array_hyperparameter_is_range_checked_like_a_number(given):
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\), got 1.5$"):
        gradtx.adam(b1=given)
    with pytest.raises(ValueError, match=r"^learning_rate must be a real number, got \(1\+2j\)$"):
        gradtx.sgd(jnp.asarray(1 + 2j))
    assert float(gradtx.hyperparams(gradtx.adam(b1=jnp.asarray(0.5)).init(jnp.ones(2)))["b1"]) == 0.5


def test_a_traced_hyperparameter_is_not_checked_when_the_optimizer_is_built():
    # under jit the value is not known yet: the optimizer builds, and stores what it was given
    b1 = jax.jit(lambda b1: gradtx.hyperparams(gradtx.adam(b1=b1).init(jnp.ones(2)))["b1"])(1.5)
    assert float(b1) == 1.5


def test_a_wrapper_that_does_not_forward_keeps_its_names_beside_the_inner_ones():
    # mechanize has an eps of its own, and so has the Adam it wraps: both are listed and settable
    state = gradtx.mechanize(gradtx.adam(0.1)).init({"w": jnp.zeros(2)})
    listed = gradtx.hyperparams(state)
    assert listed["eps"] == 1e-8 and listed["base_optimizer_state/0/eps"] == 1e-8
    state = gradtx.set_hyperparams(state, eps=1e-4, **{"base_optimizer_state/0/eps": 1e-3})
    listed = gradtx.hyperparams(state)
    assert (listed["eps"], listed["base_optimizer_state/0/eps"]) == (1e-4, 1e-3)
    # inject_hyperparams forwards: its value is the one listed, and the inner one is not
    injected = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1).init({"w": jnp.zeros(2)})
    assert sorted(gradtx.hyperparams(injected)) == ["b1", "b2", "eps", "eps_root", "learning_rate"]
