"""inject_hyperparams and inject_stateful_hyperparams: schedules for any numeric argument, and
Optax's ``state.hyperparams`` dict (the values the last update used), which both Optax's idiom
(assigning to the dict) and gradtx.set_hyperparams change for the next update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
GRADS = {"w": jnp.full((2, 2), 0.5), "b": jnp.full(2, -1.0)}


def test_inject_hyperparams_equals_setting_the_values_by_hand_each_step():
    lr = lambda t: 0.1 / (1.0 + t)  # noqa: E731
    b1 = lambda t: 0.5 + 0.04 * t  # noqa: E731
    injected = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=lr, b1=b1, b2=0.99)
    plain = gradtx.adam(1.0, b1=0.5, b2=0.99)
    s_inj, s_plain = injected.init(PARAMS), plain.init(PARAMS)
    step = jax.jit(injected.update)
    for t in range(6):
        grads = jax.tree.map(lambda g: g * (t + 1.0), GRADS)  # noqa: B023 (used at once)
        assert gradtx.hyperparams(s_inj)["learning_rate"] == pytest.approx(lr(t), rel=1e-6)
        u_inj, s_inj = step(grads, s_inj, PARAMS)
        s_plain = gradtx.set_hyperparams(s_plain, learning_rate=lr(t), b1=b1(t))
        u_plain, s_plain = plain.update(grads, s_plain, PARAMS)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u_inj, u_plain)
    assert int(gradtx.step_count(s_inj)) == 6


def test_injected_state_keeps_its_structure_and_refuses_hand_setting_of_schedules():
    tx = gradtx.inject_hyperparams(gradtx.adamw, static_args="mask")(
        learning_rate=lambda t: 1e-3 * t, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    )
    state = tx.init(PARAMS)
    structure = jax.tree.structure(state)
    _, state = tx.update(GRADS, state, PARAMS)
    assert jax.tree.structure(state) == structure
    with pytest.raises(ValueError, match="follows a schedule"):
        gradtx.set_hyperparams(state, learning_rate=0.5)
    state = gradtx.set_hyperparams(state, weight_decay=0.2)
    assert gradtx.hyperparams(state)["weight_decay"] == pytest.approx(0.2)


def test_inject_names_what_the_state_does_not_keep():
    with pytest.raises(ValueError, match="no hyperparameter named \\['decay'\\]; it keeps \\['momentum'\\]"):
        gradtx.inject_hyperparams(gradtx.trace)(decay=lambda t: 0.9).init(PARAMS)


@pytest.mark.parametrize(
    "wrap, inner_steps",
    [
        (lambda tx: tx, 4),
        (lambda tx: gradtx.chain(gradtx.clip_by_global_norm(1.0), tx), 4),
        (lambda tx: gradtx.MultiSteps(tx, every_k_schedule=2).gradient_transformation(), 2),
        (lambda tx: gradtx.apply_if_finite(tx, max_consecutive_errors=3), 4),
        (lambda tx: gradtx.masked(tx, {"w": True, "b": False}), 4),
        (lambda tx: gradtx.partition({"a": tx, "b": gradtx.set_to_zero()}, {"w": "a", "b": "b"}), 4),
        (lambda tx: gradtx.conditionally_transform(tx, lambda step: step % 2 == 0), 2),
        (lambda tx: gradtx.flatten(tx), 4),
    ],
    ids=["plain", "chain", "multisteps", "apply_if_finite", "masked", "partition", "conditional", "flatten"],
)
def test_hyperparams_are_found_and_set_through_every_wrapper(wrap, inner_steps):
    tx = wrap(gradtx.inject_hyperparams(gradtx.adamw)(learning_rate=lambda t: 0.1 / (1 + t), weight_decay=0.01))
    state = tx.init(PARAMS)
    assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(0.1)
    state = gradtx.set_hyperparams(state, weight_decay=0.02)
    step = jax.jit(tx.update)
    for _ in range(4):
        _, state = step(GRADS, state, PARAMS)
    hp = gradtx.hyperparams(state)
    assert hp["weight_decay"] == pytest.approx(0.02) and hp["b1"] == pytest.approx(0.9)
    assert hp["learning_rate"] == pytest.approx(0.1 / (1 + inner_steps))  # the value for the next inner step


def test_the_optax_hyperparams_field_holds_the_values_the_last_update_used():
    lr = lambda t: 0.1 / (1.0 + t)  # noqa: E731
    tx = gradtx.inject_hyperparams(gradtx.adamw)(learning_rate=lr, weight_decay=1e-2)
    state = tx.init(PARAMS)
    assert isinstance(state, gradtx.InjectStatefulHyperparamsState)
    assert state._fields == ("count", "hyperparams", "hyperparams_states", "inner_state")
    # every numeric argument, defaults included, as in Optax
    assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(lr(0))
    for t in range(3):
        _, state = tx.update(GRADS, state, PARAMS)
        assert float(state.hyperparams["learning_rate"]) == pytest.approx(lr(t))
        assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(lr(t + 1))
        assert int(state.hyperparams_states["learning_rate"].count) == t + 1


@pytest.mark.parametrize("how", ["optax_idiom", "set_hyperparams"])
def test_changing_a_hyperparameter_changes_the_next_update(how):
    tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1, momentum=0.9)
    plain = gradtx.sgd(0.1, momentum=0.9)
    state, reference = tx.init(PARAMS), plain.init(PARAMS)
    step = jax.jit(tx.update)
    for t in range(4):
        if t == 2:
            if how == "optax_idiom":
                state.hyperparams["learning_rate"] = 0.01
            else:
                state = gradtx.set_hyperparams(state, learning_rate=0.01)
            reference = gradtx.set_hyperparams(reference, learning_rate=0.01)
        updates, state = step(GRADS, state, PARAMS)
        expected, reference = plain.update(GRADS, reference, PARAMS)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
    assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(0.01)
    assert state.hyperparams["learning_rate"].dtype == jnp.float32


def test_a_stateful_schedule_reacts_to_the_extra_arguments():
    class HalveOnIncrease:
        """Halves the value whenever the loss rose since the last step."""

        def init(self):
            return {"lr": jnp.asarray(1.0), "last": jnp.asarray(jnp.inf)}

        def update(self, state, value=None, **extra):
            lr = jnp.where(value > state["last"], state["lr"] / 2, state["lr"])
            return {"lr": lr, "last": jnp.asarray(value, jnp.float32)}

        def __call__(self, state, **extra):
            return state["lr"]

    assert isinstance(HalveOnIncrease(), gradtx.StatefulSchedule)
    tx = gradtx.inject_stateful_hyperparams(gradtx.sgd)(learning_rate=HalveOnIncrease())
    state = tx.init(jnp.zeros(1))
    used = []
    for loss in [3.0, 2.0, 2.5, 1.0, 4.0]:
        updates, state = tx.update(jnp.ones(1), state, value=jnp.asarray(loss))
        used.append(-float(updates[0]))
    assert used == [1.0, 1.0, 1.0, 0.5, 0.5]  # the value for a step is set by the losses before it
    assert float(state.hyperparams_states["learning_rate"]["lr"]) == 0.25


def test_wrapped_schedule_counts_its_steps():
    schedule = gradtx.WrappedSchedule(lambda t: 2.0 * t)
    state = schedule.init()
    for t in range(3):
        assert float(schedule(state)) == 2.0 * t
        state = schedule.update(state)
    assert int(state.count) == 3
