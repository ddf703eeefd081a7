"""ADOPT (Taniguchi et al. 2024) step by step against the NumPy reference of
``references/adopt.py``, written from the paper's Algorithms 1 and 2: the first step only sets
v_0 = g_0^2, later gradients are normalised by the previous v and clipped at t^(1/4).

12 steps on the nested tree of ``references`` under ``jax.jit``, in float32 and float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from gradtx.optimizers.adam import ScaleByAdamState
from gradtx.optimizers.adopt import adopt, scale_by_adopt

import references as R
from helpers import run_problem
from references.adopt import ADOPT, ref_adopt

DTYPES = ["float32", "float64"]
FACTORIES = {"scale_by_adopt": (scale_by_adopt, ADOPT), "adopt": (adopt, ref_adopt)}


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.05 / (1 + 0.1 * step)


# (factory, id, kwargs, whether the clip must have acted); b2 = 0.5 makes v follow the
# gradients' changing scale, so that normalised gradients exceed t^(1/4) now and then.
CASES = [
    ("scale_by_adopt", "default", dict(), True),
    ("scale_by_adopt", "custom", dict(b1=0.8, b2=0.5, eps=1e-2), True),
    ("scale_by_adopt", "nesterov", dict(b1=0.7, b2=0.5, nesterov=True), True),
    ("scale_by_adopt", "no_clipping", dict(b2=0.5, use_clipping=False), False),
    ("scale_by_adopt", "clip_fn", dict(b2=0.9, clip_value_fn=lambda t: 0.5 + 0.1 * t), True),
    ("adopt", "default", dict(), True),
    ("adopt", "schedule_nesterov", dict(learning_rate=schedule, b2=0.5, nesterov=True), True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,clips", [pytest.param(n, kw, c, id=f"{n}-{label}") for n, label, kw, c in CASES])
def test_matches_reference(name, kwargs, clips, dtype):
    """Under jit (test_jit_equals_eager holds eager to it)."""
    make, make_ref = FACTORIES[name]
    ref = R.run_against_reference(make(**kwargs), make_ref(**kwargs), dtype, "jit")
    clipped = R.find(ref, ADOPT).clipped
    assert (clipped > 0) == clips, clipped


def test_first_step_only_initialises_v():
    tx = scale_by_adopt(b1=0.5, b2=0.9, use_clipping=False)
    state = tx.init({"w": jnp.zeros(2)})
    assert isinstance(state, ScaleByAdamState) and state._fields[:-1] == ("count", "mu", "nu")
    u, state = tx.update({"w": jnp.array([2.0, -4.0])}, state)
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    np.testing.assert_array_equal(state.mu["w"], [0.0, 0.0])
    np.testing.assert_array_equal(state.nu["w"], [4.0, 16.0])  # v_0 = g_0^2, not (1 - b2) g_0^2
    u, state = tx.update({"w": jnp.array([1.0, 8.0])}, state)
    np.testing.assert_allclose(u["w"], [0.25, 1.0])  # (1 - b1) g_1 / sqrt(v_0)
    np.testing.assert_allclose(state.nu["w"], [0.9 * 4 + 0.1, 0.9 * 16 + 0.1 * 64], rtol=1e-6)
    # with the clip at t = 1: c_1 = 1, so 8 / 4 = 2 is clipped to 1
    tx = scale_by_adopt(b1=0.5, b2=0.9)
    _, state = tx.update({"w": jnp.array([2.0, -4.0])}, tx.init({"w": jnp.zeros(2)}))
    u, _ = tx.update({"w": jnp.array([1.0, 8.0])}, state)
    np.testing.assert_allclose(u["w"], [0.25, 0.5])
    # the named optimizer leaves the parameters alone on the first step
    opt, w = adopt(1.0), jnp.array([1.0, 2.0])
    u, _ = opt.update(jnp.array([3.0, -1.0]), opt.init(w), w)
    np.testing.assert_array_equal(u, [0.0, 0.0])


def test_state_is_adams_and_follows_optax():
    state = scale_by_adopt().init(jnp.zeros(2))
    optax_state = optax.contrib.scale_by_adopt().init(jnp.zeros(2))
    assert type(state).__name__ == type(optax_state).__name__ == "ScaleByAdamState"
    assert state._fields[:-1] == optax_state._fields and state._fields[-1] == "hyperparams"


def test_hyperparams_are_readable_and_settable():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = [
        {"w": jnp.array([0.3, -1.0]), "b": jnp.array([2.0])},
        {"w": jnp.array([-0.5, 0.2]), "b": jnp.array([1.0])},
        {"w": jnp.array([0.1, 0.4]), "b": jnp.array([-3.0])},
    ]
    tx = adopt(0.1)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {"b1": 0.9, "b2": 0.9999, "eps": 1e-6, "learning_rate": 0.1}
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, b1=0.5, learning_rate=0.3)
    got, _ = update(grads[2], state, params)

    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref = ADOPT()
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    ref.b1 = 0.5
    want = [-0.3 * u for u in ref.update(leaves(grads[2]), leaves(params))]
    for g, w in zip(leaves(got), want):
        np.testing.assert_allclose(g, w, rtol=1e-5)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b2 must be in \[0.0, 1.0\)"):
        adopt(b2=1.0)
    with pytest.raises(ValueError, match="^b1 must be in"):
        scale_by_adopt(b1=-0.1)
    with pytest.raises(ValueError, match=r"^eps must be in \(0.0, inf\)"):
        scale_by_adopt(eps=0.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        adopt(-1.0)
    with pytest.raises(TypeError, match="^clip_value_fn must be a function"):
        adopt(clip_value_fn=1.0)
    with pytest.raises(TypeError, match="^b1 must be a number or an array"):
        scale_by_adopt(b1=lambda t: 0.9)


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones(3)}
    tx = adopt()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, state, params)
    tx.update(params, state, None, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


@pytest.mark.parametrize("kwargs", [dict(), dict(nesterov=True, b2=0.5)], ids=["default", "nesterov"])
def test_jit_equals_eager(kwargs):
    tx = adopt(0.05, **kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(R.grad_trees(np.float32, 6)))


def test_bfloat16_empty_tree_and_mu_dtype():
    R.check_bfloat16(adopt(0.01), "jit", steps=6)
    R.check_empty_tree(adopt(), "jit")
    state = scale_by_adopt(mu_dtype=jnp.bfloat16).init({"w": jnp.ones(3)})
    assert state.mu["w"].dtype == jnp.bfloat16 and state.nu["w"].dtype == jnp.float32


def test_complex_parameters_clip_the_modulus():
    z = jnp.array([1 + 2j, -0.5j, 0.3], jnp.complex64)
    grads = [jnp.array([0.3 - 1j, 2.0 + 0.5j, 0.1], jnp.complex64), jnp.array([3 + 4j, 0.1j, -0.2], jnp.complex64)]
    tx = scale_by_adopt(b1=0.0, b2=0.5)
    state = tx.init(z)
    for g in grads:
        u, state = tx.update(g, state, z)
    assert u.dtype == jnp.complex64 and state.nu.dtype == jnp.float32
    g_hat = grads[1] / jnp.abs(grads[0])  # |g_hat| = 5 / |0.3 - 1j| > 1 = c_1 for the first entry
    want = np.where(np.abs(g_hat) > 1, g_hat / np.abs(g_hat), g_hat)
    np.testing.assert_allclose(u, want, rtol=1e-6)


def test_huge_and_zero_gradients_stay_finite():
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "s": jnp.asarray(0.5)}
    tx = adopt(0.1)
    update = jax.jit(tx.update)
    for scale in (0.0, 1e-30, 1e30):
        state = tx.init(params)
        for sign in (1.0, -0.5, 1.0):
            grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
            updates, state = update(grads, state, params)
            assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), (scale, updates)


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100): reached 6.8e8 on CPU, float32
    initial, final, _ = run_problem(adopt(0.05), "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e6, (initial, final, initial / final)
