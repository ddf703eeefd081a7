"""snapshot, measure_with_ema and monitor: measurements of the updates kept in the state by name,
checked against NumPy; the updates pass unchanged; the state keeps its structure from init on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

RNG = np.random.default_rng(3)
GRADS = [
    {"w": RNG.standard_normal((3, 2)).astype(np.float32), "b": RNG.standard_normal(2).astype(np.float32)}
    for _ in range(6)
]


def _norm(tree):
    return np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(tree)))


def test_snapshot_keeps_the_last_measurement_and_passes_the_updates():
    tx = gradtx.snapshot("grad_norm", gradtx.tree.norm)
    state = tx.init(GRADS[0])
    assert float(state.measurement["grad_norm"]) == 0.0
    for g in GRADS:
        out, state = tx.update(g, state)
        jax.tree.map(np.testing.assert_array_equal, out, g)
        np.testing.assert_allclose(state.measurement["grad_norm"], _norm(g), rtol=1e-6)


@pytest.mark.parametrize("debias", [True, False])
def test_measure_with_ema_matches_the_average(debias):
    decay = 0.8
    tx = gradtx.measure_with_ema(gradtx.tree.norm, decay, debias=debias)
    state = tx.init(GRADS[0])
    average = 0.0
    for t, g in enumerate(GRADS, start=1):
        value, state = tx.update(g, state)
        average = decay * average + (1 - decay) * _norm(g)
        expected = average / (1 - decay**t) if debias else average
        np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_monitor_in_a_chain_measures_before_clipping():
    threshold = 1.0
    tx = gradtx.chain(
        gradtx.monitor(
            {
                "norm_before_clip": gradtx.tree.norm,
                "clipped_ema": gradtx.measure_with_ema(lambda u: gradtx.tree.norm(u) > threshold, 0.9),
            }
        ),
        gradtx.clip_by_global_norm(threshold),
        gradtx.sgd(0.1),
    )
    params = jax.tree.map(jnp.zeros_like, GRADS[0])
    state = tx.init(params)
    structure = jax.tree.structure(state)
    step = jax.jit(tx.update)
    average = 0.0
    for t, g in enumerate(GRADS, start=1):
        updates, state = step(g, state, params)
        assert jax.tree.structure(state) == structure
        norm = _norm(g)
        average = 0.9 * average + 0.1 * float(norm > threshold)
        measurements = state[0].measurements
        np.testing.assert_allclose(measurements["norm_before_clip"], norm, rtol=1e-6)
        np.testing.assert_allclose(measurements["clipped_ema"], average / (1 - 0.9**t), rtol=1e-5)
        np.testing.assert_allclose(_norm(updates), 0.1 * min(norm, threshold), rtol=1e-5)


def test_monitor_runs_in_a_scan():
    tx = gradtx.monitor({"norm": gradtx.tree.norm})
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *GRADS)

    def body(state, g):
        _, state = tx.update(g, state)
        return state, state.measurements["norm"]

    _, norms = jax.lax.scan(body, tx.init(GRADS[0]), stacked)
    np.testing.assert_allclose(norms, [_norm(g) for g in GRADS], rtol=1e-6)


def test_bad_measures():
    with pytest.raises(TypeError, match="monitor takes a non-empty dict"):
        gradtx.monitor({})
    with pytest.raises(TypeError, match="the measure 'x' must be a function or a transform"):
        gradtx.monitor({"x": 3})
    with pytest.raises(TypeError, match="snapshot takes a name and a function"):
        gradtx.snapshot(gradtx.tree.norm, "norm")
