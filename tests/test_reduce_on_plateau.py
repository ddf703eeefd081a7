"""reduce_on_plateau against a plain-Python statement of the rule it documents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def reference_scales(losses, factor, patience, rtol, atol, cooldown, accumulation_size, min_scale):
    """torch.optim.ReduceLROnPlateau's rule (mode='min', threshold_mode='rel' plus atol), over windows."""
    scale, best, bad, cool, window, scales = 1.0, float("inf"), 0, 0, [], []
    for loss in losses:
        window.append(loss)
        if len(window) == accumulation_size:
            mean = sum(window) / accumulation_size
            window = []
            if mean < (1 - rtol) * best - atol:
                best, bad = mean, 0
            else:
                bad += 1
            if cool > 0:
                cool -= 1
                bad = 0
            if bad > patience:
                scale, cool, bad = max(scale * factor, min_scale), cooldown, 0
        scales.append(scale)
    return scales


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
    for kwargs, name in [({"factor": 1.0}, "factor"), ({"patience": -1}, "patience"),
                         ({"accumulation_size": 0}, "accumulation_size"), ({"min_scale": -1.0}, "min_scale")]:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            gradtx.reduce_on_plateau(**kwargs)


def test_in_a_chain_the_learning_rate_shrinks():
    tx = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(factor=0.5, patience=0))
    state = tx.init(jnp.zeros(1))
    for _ in range(3):
        updates, state = tx.update(jnp.ones(1), state, value=1.0)
    # the first loss sets the best; the next two are plateaus, each halving the scale
    np.testing.assert_allclose(updates, -0.1 * 0.25, rtol=1e-6)
