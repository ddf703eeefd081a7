"""scale, scale_by_learning_rate and scale_by_schedule, step by step against NumPy references;
reduce_on_plateau against a plain-Python statement of the rule it documents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from references.scaling import reference_scales

DTYPES = ["float32", "float64"]
MODES = R.MODES


def schedule(step):
    """Called with 0 on the first update."""
    return 0.1 / (1 + step)


def linear(step):
    return 1.0 - 0.05 * step


SCALE_CASES = [
    ("scale", "half", dict(step_size=0.5), None),
    ("scale", "negative", dict(step_size=-2.0), None),
    ("scale_by_learning_rate", "constant", dict(learning_rate=0.1), None),
    ("scale_by_learning_rate", "no_flip", dict(learning_rate=0.1, flip_sign=False), None),
    ("scale_by_learning_rate", "schedule", dict(learning_rate=schedule), None),
    ("scale_by_learning_rate", "schedule_no_flip", dict(learning_rate=schedule, flip_sign=False), None),
    ("scale_by_schedule", "decaying", dict(step_size_fn=schedule), None),
    ("scale_by_schedule", "linear", dict(step_size_fn=linear), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(SCALE_CASES))
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


BASIC = {
    "scale": dict(step_size=0.5),
    "scale_by_learning_rate": dict(learning_rate=schedule),
    "scale_by_schedule": dict(step_size_fn=schedule),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_keeps_dtypes(name, mode):
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_stays_finite(name, mode):
    """With bfloat16 params and grads the params stay finite for 12 steps."""
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_empty_tree(name, mode):
    R.check_empty_tree(getattr(gradtx, name)(**BASIC[name]), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_none_leaf(name, mode):
    R.check_none_leaf(getattr(gradtx, name)(**BASIC[name]), R.REF_TRANSFORMS[name](**BASIC[name]), mode)


# ------------------------------------------------------------------ reduce_on_plateau


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(factor=0.5, patience=2, rtol=1e-4, atol=0.0, cooldown=0, accumulation_size=1, min_scale=0.0),
        dict(factor=0.1, patience=0, rtol=0.0, atol=0.01, cooldown=3, accumulation_size=1, min_scale=0.05),
        dict(factor=0.7, patience=1, rtol=1e-3, atol=0.0, cooldown=1, accumulation_size=3, min_scale=0.0),
    ],
)
def test_scale_follows_the_reference_rule(kwargs):
    rng = np.random.default_rng(0)
    # a loss that falls, then plateaus with noise, then falls again, then plateaus
    losses = np.concatenate([np.linspace(5, 2, 10), 2 + 0.01 * rng.random(25), np.linspace(2, 1, 5), np.ones(20)])
    expected = reference_scales(list(losses), **kwargs)
    tx = gradtx.reduce_on_plateau(**kwargs)
    state = tx.init({"w": jnp.zeros(2)})
    step = jax.jit(tx.update)
    for loss, want in zip(losses, expected):
        updates, state = step({"w": jnp.ones(2)}, state, value=jnp.asarray(loss, jnp.float32))
        assert float(state.scale) == pytest.approx(want, rel=1e-6)
        np.testing.assert_allclose(updates["w"], want, rtol=1e-6)
    assert min(expected) < 1.0  # the sequence does trigger reductions


def test_needs_the_loss_and_valid_arguments():
    tx = gradtx.reduce_on_plateau()
    with pytest.raises(ValueError, match="needs the loss"):
        tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
    for kwargs, name in [
        ({"factor": 1.0}, "factor"),
        ({"patience": -1}, "patience"),
        ({"accumulation_size": 0}, "accumulation_size"),
        ({"min_scale": -1.0}, "min_scale"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            gradtx.reduce_on_plateau(**kwargs)


def test_in_a_chain_the_learning_rate_shrinks():
    tx = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(factor=0.5, patience=0))
    state = tx.init(jnp.zeros(1))
    for _ in range(3):
        updates, state = tx.update(jnp.ones(1), state, value=1.0)
    # the first loss sets the best; the next two are plateaus, each halving the scale
    np.testing.assert_allclose(updates, -0.1 * 0.25, rtol=1e-6)


def test_the_state_keeps_the_mean_loss_of_the_current_window():
    tx = gradtx.reduce_on_plateau(accumulation_size=3)
    state = tx.init(jnp.zeros(1))
    for loss, expected in [(3.0, 3.0), (1.0, 2.0), (2.0, 0.0), (5.0, 5.0)]:
        _, state = tx.update(jnp.ones(1), state, value=loss)
        assert float(state.avg_value) == pytest.approx(expected)  # reset once a window is complete
    assert float(state.best_value) == pytest.approx(2.0)
