"""DP-SGD (Abadi et al. 2016): differentially_private_aggregate and dpsgd. Without noise, against
exact per-example clipping (NumPy) for 12 steps; with noise, the mean and standard deviation of
the aggregate over many keys against the stated distribution; errors, jit, hyperparameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate, dpsgd

from references.privacy import clipped_mean, noise_std, ref_dpsgd

SHAPES = {"w": (3, 4), "b": (4,), "s": ()}
BATCH = 6
STEPS = 12


def params_tree(dtype=np.float32):
    rng = np.random.default_rng(0)
    return {k: np.asarray(rng.standard_normal(s), dtype) for k, s in SHAPES.items()}


def per_example_grads(dtype=np.float32, steps=STEPS, seed=1):
    """Per-example gradients whose norms range from ~0.1 to ~10: some examples clipped, some not."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        scales = np.exp(1.5 * rng.standard_normal(BATCH))
        out.append(
            {
                k: np.asarray(scales.reshape((BATCH,) + (1,) * len(s)) * rng.standard_normal((BATCH, *s)) / 3, dtype)
                for k, s in SHAPES.items()
            }
        )
    return out


def run(tx, params, grads, update=None):
    update = update or tx.update
    state, p, trajectory = tx.init(params), params, []
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, p)
        p = gradtx.apply_updates(p, u)
        trajectory.append(p)
    return trajectory, state


def assert_trajectories_close(got, want, rtol):
    worst = 0.0
    for g_step, w_step in zip(got, want):
        for k in w_step:
            scale = np.max(np.abs(w_step[k])) + 1e-30
            err = np.max(np.abs(np.asarray(g_step[k], np.float64) - w_step[k])) / scale
            worst = max(worst, float(err))
            np.testing.assert_allclose(g_step[k], w_step[k], rtol=rtol, atol=rtol * scale, err_msg=k)
    return worst


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(
    "momentum,nesterov", [(None, False), (0.9, False), (0.9, True)], ids=["plain", "momentum", "nesterov"]
)
def test_noiseless_dpsgd_matches_exact_clipping(momentum, nesterov, mode):
    tx = dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0, momentum=momentum, nesterov=nesterov)
    params, grads = jax.tree.map(jnp.asarray, params_tree()), per_example_grads()
    norms = [np.sqrt(sum(np.sum(g[k][i] ** 2) for k in g)) for g in grads for i in range(BATCH)]
    assert min(norms) < 1.0 < max(norms)  # both regimes of the clip are exercised
    got, _ = run(tx, params, grads, jax.jit(tx.update) if mode == "jit" else None)
    want = ref_dpsgd(
        params_tree(np.float64), [jax.tree.map(np.float64, g) for g in grads], 0.1, 1.0, momentum, nesterov
    )
    assert_trajectories_close(got, want, 1e-5)


def test_noiseless_aggregate_in_float64_and_complex():
    with jax.enable_x64(True):
        tx = differentially_private_aggregate(0.7, 0.0, seed=3)
        for g in per_example_grads(np.float64, steps=3):
            u, _ = tx.update(jax.tree.map(jnp.asarray, g), tx.init(None))
            for k, v in clipped_mean(g, 0.7).items():
                assert u[k].dtype == jnp.float64
                np.testing.assert_allclose(u[k], v, rtol=1e-12, atol=1e-14)
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((BATCH, 3)) + 1j * rng.standard_normal((BATCH, 3))).astype(np.complex64)
    tx = differentially_private_aggregate(1.0, 0.0, seed=0)
    u, _ = tx.update({"z": jnp.asarray(z)}, tx.init(None))
    assert u["z"].dtype == jnp.complex64
    np.testing.assert_allclose(u["z"], clipped_mean({"z": z.astype(np.complex128)}, 1.0)["z"], rtol=1e-5)


def test_noise_has_the_stated_mean_and_std():
    """Over 400 keys x 250 coordinates: the aggregate is clipped mean + N(0, (sigma C / B)^2)."""
    clip, sigma = 0.5, 1.3
    tx = differentially_private_aggregate(clip, sigma, seed=0)
    g = per_example_grads(steps=1)[0]
    g = dict(g, w=np.tile(g["w"], (1, 25, 5)))  # 3 * 25 x 4 * 5 = 1500 coordinates in w
    mean = clipped_mean(jax.tree.map(np.float64, g), clip)
    keys = jax.random.split(jax.random.key(42), 400)
    state = tx.init(None)

    def one(key):
        return tx.update(jax.tree.map(jnp.asarray, g), state._replace(rng_key=jax.random.key_data(key)))[0]

    out = jax.jit(jax.vmap(one))(keys)
    std = noise_std(clip, sigma, BATCH)
    for k in SHAPES:
        noise = (np.asarray(out[k], np.float64) - mean[k]).reshape(400, -1)
        n = noise.size
        assert abs(noise.mean()) < 5 * std / np.sqrt(n), (k, noise.mean())
        assert abs(noise.std() / std - 1) < 5 / np.sqrt(2 * n), (k, noise.std(), std)
    # noise is independent across leaves and coordinates
    w = (np.asarray(out["w"], np.float64) - mean["w"]).reshape(400, -1)
    b = (np.asarray(out["b"], np.float64) - mean["b"]).reshape(400, -1)
    assert abs(np.corrcoef(w[:, 0], b[:, 0])[0, 1]) < 0.2
    assert abs(np.corrcoef(w[:, 0], w[:, 1])[0, 1]) < 0.2


def test_keys_seeds_and_the_key_in_the_state():
    g = jax.tree.map(jnp.asarray, per_example_grads(steps=1)[0])
    outs = []
    for tx in (
        differentially_private_aggregate(1.0, 1.0, seed=7),
        differentially_private_aggregate(1.0, 1.0, 7),
        differentially_private_aggregate(1.0, 1.0, key=jax.random.key(7)),
        differentially_private_aggregate(1.0, 1.0, key=jax.random.PRNGKey(7)),
    ):
        state = tx.init(None)
        assert isinstance(state, DifferentiallyPrivateAggregateState) and state.rng_key.dtype == jnp.uint32
        u1, state = tx.update(g, state)
        u2, state = tx.update(g, state)
        assert not np.allclose(u1["w"], u2["w"])  # a fresh key at every step
        outs.append(u1)
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0]["w"], other["w"])
    other_seed = differentially_private_aggregate(1.0, 1.0, seed=8)
    different = other_seed.update(g, other_seed.init(None))[0]
    assert not np.allclose(outs[0]["w"], different["w"])


def test_jit_equals_eager_with_noise():
    tx = dpsgd(0.05, 1.0, 1.1, seed=5, momentum=0.5)
    params, grads = jax.tree.map(jnp.asarray, params_tree()), per_example_grads(steps=5)
    eager, _ = run(tx, params, grads)
    jitted, _ = run(tx, params, grads, jax.jit(tx.update))
    for a, b in zip(eager, jitted):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_hyperparams_are_readable_and_settable():
    tx = dpsgd(0.1, 2.0, 1.0, seed=0)
    state = tx.init(params_tree())
    assert gradtx.hyperparams(state) == {"l2_norm_clip": 2.0, "noise_multiplier": 1.0, "learning_rate": 0.1}
    state = gradtx.set_hyperparams(state, noise_multiplier=0.0, l2_norm_clip=0.3)
    g = per_example_grads(steps=1)[0]
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.asarray, g), state)
    for k, v in clipped_mean(jax.tree.map(np.float64, g), 0.3).items():
        np.testing.assert_allclose(u[k], -0.1 * v, rtol=1e-5, atol=1e-8)


def test_construction_errors():
    with pytest.raises(ValueError, match="^l2_norm_clip must be in"):
        differentially_private_aggregate(0.0, 1.0, seed=0)
    with pytest.raises(ValueError, match="^noise_multiplier must be in"):
        dpsgd(0.1, 1.0, -1.0, seed=0)
    with pytest.raises(ValueError, match="give key or seed, not both"):
        differentially_private_aggregate(1.0, 1.0, key=0, seed=0)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        differentially_private_aggregate(1.0, 1.0)
    with pytest.raises(ValueError, match="^momentum must be in"):
        dpsgd(0.1, 1.0, 1.0, 0, momentum=1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        dpsgd(-0.1, 1.0, 1.0, 0)
    with pytest.raises(TypeError, match="must be a number or an array"):
        differentially_private_aggregate(lambda t: 1.0, 1.0, seed=0)


def test_update_errors_name_the_leaves():
    tx = differentially_private_aggregate(1.0, 1.0, seed=0)
    state = tx.init(None)
    with pytest.raises(ValueError, match="same leading batch axis.*'b': \\(3,\\).*'w': \\(4, 2\\)"):
        tx.update({"w": jnp.ones((4, 2)), "b": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match="per-example gradients.*'s': \\(\\)"):
        tx.update({"w": jnp.ones((4, 2)), "s": jnp.ones(())}, state)
    with pytest.raises(ValueError, match="at least one example"):
        tx.update({"w": jnp.ones((0, 2))}, state)
    # extra arguments and the parameters are accepted and unused; an empty tree passes through
    u, _ = tx.update({"w": jnp.ones((4, 2))}, state, {"w": jnp.ones(2)}, value=1.0, grad=None, value_fn=None)
    assert u["w"].shape == (2,)
    assert tx.update({}, state)[0] == {}


def test_bfloat16_stays_bfloat16():
    tx = dpsgd(0.1, 1.0, 0.5, seed=0)
    params = {"w": jnp.ones((3, 4), jnp.bfloat16)}
    u, state = jax.jit(tx.update)({"w": jnp.ones((5, 3, 4), jnp.bfloat16)}, tx.init(params), params)
    assert u["w"].dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(u["w"])))


def test_converges_on_a_quadratic_with_noise():
    """Per-example losses 0.5 |x - a_i|^2, 32 examples, C = 1, sigma = 0.5, lr 0.2: the distance to
    the mean of the a_i falls below 0.05 (from 3.6) within 100 steps (reached ~0.01)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 3)) * 0.1 + np.array([1.0, -2.0, 2.5])
    tx = dpsgd(0.2, l2_norm_clip=1.0, noise_multiplier=0.5, seed=0)
    x, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    step = jax.jit(tx.update)
    for _ in range(100):
        u, state = step(x[None] - a, state, x)  # the per-example gradients x - a_i
        x = gradtx.apply_updates(x, u)
    assert float(jnp.linalg.norm(x - a.mean(0))) < 0.05, x
