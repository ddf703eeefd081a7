"""AdEMAMix and Simplified AdEMAMix, with the paper's alpha and beta3 warm-ups, step by step
against the NumPy references of ``references/ademamix.py`` (written from Pagliardini et al. 2024,
Algorithm 1 and Section 3, and Morwani et al. 2025).

The scale_by_* blocks are used on their own (``params += updates``), the named optimizers as
they are; 12 steps on the nested tree of ``references``, eagerly and under ``jax.jit``, in
float32 and float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from gradtx.optimizers.ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    ademamix_alpha_warmup,
    ademamix_b3_warmup,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)

import references as R
from helpers import run_problem
from references.ademamix import (
    AdEMAMix,
    SimplifiedAdEMAMix,
    alpha_warmup,
    b3_warmup,
    ref_ademamix,
    ref_simplified_ademamix,
)

DTYPES = ["float32", "float64"]
FACTORIES = {
    "scale_by_ademamix": (scale_by_ademamix, AdEMAMix),
    "ademamix": (ademamix, ref_ademamix),
    "scale_by_simplified_ademamix": (scale_by_simplified_ademamix, SimplifiedAdEMAMix),
    "simplified_ademamix": (simplified_ademamix, ref_simplified_ademamix),
}


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.05 / (1 + 0.1 * step)


# Warm-ups of 8 updates: the 12 steps cover the ramp and the plateau after it.
WARMUP = dict(b3=ademamix_b3_warmup(0.999, 8, b_start=0.8), alpha=ademamix_alpha_warmup(4.0, 8))
PAPER_WARMUP = dict(b3=0.999, alpha=4.0, warmup=8, b_start=0.8)  # the reference runs the paper's f(t) itself

# (factory, id, gradtx kwargs, reference kwargs or None for the same)
CASES = [
    ("scale_by_ademamix", "default", dict(), None),
    ("scale_by_ademamix", "custom", dict(b1=0.8, b2=0.95, b3=0.99, alpha=3.0, eps=1e-3, eps_root=1e-4), None),
    ("scale_by_ademamix", "warmup", dict(b1=0.8, **WARMUP), dict(b1=0.8, **PAPER_WARMUP)),
    ("ademamix", "default", dict(), None),
    ("ademamix", "decay_mask", dict(learning_rate=0.05, b3=0.99, weight_decay=0.1, mask=R.MASK_TREE), None),
    (
        "ademamix",
        "schedules",
        dict(learning_rate=schedule, b3=lambda t: 0.9 + 0.008 * t, alpha=lambda t: 0.5 * t, weight_decay=0.2),
        None,
    ),
    ("ademamix", "warmup", dict(learning_rate=0.05, **WARMUP), dict(learning_rate=0.05, **PAPER_WARMUP)),
    ("scale_by_simplified_ademamix", "default", dict(), None),
    ("scale_by_simplified_ademamix", "custom", dict(b1=0.9, b2=0.8, alpha=2.0, eps=1e-3, eps_root=1e-4), None),
    ("simplified_ademamix", "default", dict(), None),
    (
        "simplified_ademamix",
        "schedules_decay",
        dict(learning_rate=0.01, b1=ademamix_b3_warmup(0.95, 6), alpha=lambda t: 3.0 / (1 + t), weight_decay=0.1),
        dict(
            learning_rate=0.01,
            b1=lambda count: b3_warmup(count + 1, 0.95, 0.9, 6),
            alpha=lambda t: 3.0 / (1 + t),
            weight_decay=0.1,
        ),
    ),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref_kwargs", [pytest.param(n, kw, rk, id=f"{n}-{label}") for n, label, kw, rk in CASES]
)
def test_matches_reference(name, kwargs, ref_kwargs, dtype):
    """Under jit (test_jit_equals_eager holds eager to it)."""
    make, make_ref = FACTORIES[name]
    ref_kwargs = kwargs if ref_kwargs is None else ref_kwargs
    R.run_against_reference(make(**kwargs), make_ref(**ref_kwargs), dtype, "jit")


def test_warmups_are_the_papers_schedulers():
    alpha, b3 = ademamix_alpha_warmup(5.0, 10), ademamix_b3_warmup(0.9999, 10, b_start=0.9)
    for count in range(15):  # the schedule of count gives the paper's f(t) at t = count + 1
        assert float(alpha(count)) == pytest.approx(alpha_warmup(count + 1, 5.0, 10), rel=1e-6)
        assert float(b3(count)) == pytest.approx(b3_warmup(count + 1, 0.9999, 0.9, 10), rel=1e-6)
    # the half-life -ln 2 / ln(beta) grows linearly, from b_start's at t = 0 to b3's at t = T
    half = [-np.log(2) / np.log(b3_warmup(t, 0.9999, 0.9, 10)) for t in range(11)]
    np.testing.assert_allclose(np.diff(half), (half[-1] - half[0]) / 10, rtol=1e-9)
    assert float(jax.jit(b3)(jnp.asarray(20))) == pytest.approx(0.9999)


def test_slow_ema_is_not_bias_corrected_and_first_step():
    # t = 1: m1_hat = g, nu_hat = g^2, m2 = (1 - b3) g: u = (1 + alpha (1 - b3)) sign(g)
    tx = scale_by_ademamix(b3=0.5, alpha=2.0, eps=0.0)
    u, state = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
    np.testing.assert_allclose(u, [2.0, -2.0], rtol=1e-6)
    assert isinstance(state, ScaleByAdemamixState) and int(state.count) == int(state.count_m2) == 1
    np.testing.assert_allclose(state.m2, [1.5, -0.25])
    # simplified: m_1 = g, n_hat = g^2: u = (1 + alpha) sign(g)
    tx = scale_by_simplified_ademamix(alpha=3.0, eps=0.0)
    u, state = tx.update(jnp.array([-2.0]), tx.init(jnp.zeros(1)))
    np.testing.assert_allclose(u, [-4.0])
    assert isinstance(state, ScaleBySimplifiedAdEMAMixState) and int(state.t) == 1


def test_state_fields_follow_optax():
    assert ScaleByAdemamixState._fields[:-1] == optax.contrib.ScaleByAdemamixState._fields
    assert ScaleBySimplifiedAdEMAMixState._fields[:-1] == optax.contrib.ScaleBySimplifiedAdEMAMixState._fields
    assert ScaleByAdemamixState._fields[-1] == "hyperparams"


def test_hyperparams_are_readable_and_settable():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = [{"w": jnp.array([0.3, -1.0]), "b": jnp.array([2.0])}, {"w": jnp.array([-0.5, 0.2]), "b": jnp.array([1.0])}]
    tx = ademamix(0.1, b3=0.9, alpha=2.0)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "b2": 0.999,
        "b3": 0.9,
        "alpha": 2.0,
        "eps": 1e-8,
        "eps_root": 0.0,
        "weight_decay": 0.0,
        "learning_rate": 0.1,
    }
    _, state = tx.update(grads[0], state, params)
    state = gradtx.set_hyperparams(state, alpha=7.0, b3=0.5)
    got, _ = jax.jit(tx.update)(grads[1], state, params)

    ref = ref_ademamix(0.1, b3=lambda c: 0.9 if c == 0 else 0.5, alpha=lambda c: 2.0 if c == 0 else 7.0)
    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    want = ref.update(leaves(grads[1]), leaves(params))
    for g, w in zip(leaves(got), want):
        np.testing.assert_allclose(g, w, rtol=1e-5)

    s = simplified_ademamix(0.1).init(params)
    assert set(gradtx.hyperparams(s)) == {"b1", "b2", "alpha", "eps", "eps_root", "weight_decay", "learning_rate"}
    scheduled = ademamix(b3=ademamix_b3_warmup(0.999, 10)).init(params)
    assert gradtx.hyperparams(scheduled)["b3"] == pytest.approx(b3_warmup(1, 0.999, 0.9, 10), rel=1e-6)
    with pytest.raises(ValueError, match="follows a schedule"):
        gradtx.set_hyperparams(scheduled, b3=0.99)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b3 must be in \[0.0, 1.0\)"):
        ademamix(b3=1.0)
    with pytest.raises(ValueError, match="^alpha must be in"):
        scale_by_ademamix(alpha=-1.0)
    with pytest.raises(ValueError, match="^b1 must be in"):
        scale_by_ademamix(b1=1.5)
    with pytest.raises(ValueError, match="^eps_root must be in"):
        simplified_ademamix(eps_root=-1e-3)
    with pytest.raises(ValueError, match="^b1 must be in"):
        simplified_ademamix(b1=1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        ademamix(-1.0)
    with pytest.raises(TypeError, match="learning_rate must be"):
        simplified_ademamix(None)
    with pytest.raises(TypeError, match="^b2 must be a number or an array"):
        ademamix(b2=lambda t: 0.9)
    with pytest.raises(TypeError, match="^b2 must be a number or an array"):
        scale_by_simplified_ademamix(b2=lambda t: 0.9)
    with pytest.raises(ValueError, match="^warmup_steps must be in"):
        ademamix_alpha_warmup(5.0, 0)
    with pytest.raises(ValueError, match=r"^b_start must be in \(0.0, 1.0\)"):
        ademamix_b3_warmup(0.999, 10, b_start=0.0)
    with pytest.raises(ValueError, match="^b3 must be in"):
        ademamix_b3_warmup(1.0, 10)


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones(3)}
    tx = ademamix(weight_decay=0.1)
    state = tx.init(params)
    with pytest.raises(ValueError, match="add_decayed_weights needs the parameters"):
        tx.update(params, state)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, state, params)
    for tx in (ademamix(), simplified_ademamix()):
        tx.update(params, tx.init(params), params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_jit_equals_eager(name):
    make, _ = FACTORIES[name]
    kwargs = (
        dict(alpha=ademamix_alpha_warmup(3.0, 5), b3=ademamix_b3_warmup(0.99, 5)) if "simplified" not in name else {}
    )
    tx = make(**kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(R.grad_trees(np.float32, 6)))


@pytest.mark.parametrize("name", ["ademamix", "simplified_ademamix"])
def test_bfloat16_and_empty_tree(name):
    make, _ = FACTORIES[name]
    R.check_bfloat16(make(0.01), "jit", steps=6)
    R.check_empty_tree(make(), "jit")


def test_mu_dtype():
    for make in (scale_by_ademamix, ademamix):
        state = make(mu_dtype=jnp.bfloat16).init({"w": jnp.ones(3)})
        leaf = state if hasattr(state, "m1") else state[0]
        assert leaf.m1["w"].dtype == leaf.m2["w"].dtype == jnp.bfloat16 and leaf.nu["w"].dtype == jnp.float32
    # the moments in bfloat16 (2**-9 relative rounding per store) still follow the reference
    tx = scale_by_ademamix(b3=0.99, mu_dtype=jnp.bfloat16)
    R.run_against_reference(tx, AdEMAMix(b3=0.99), "float32", "jit", steps=6, rtol=3e-2)


def test_complex_parameters_use_the_modulus():
    z = jnp.array([1 + 2j, -0.5j], jnp.complex64)
    g = jnp.array([0.3 - 1j, 2.0 + 0.5j], jnp.complex64)
    for tx in (ademamix(0.1, b3=0.9), simplified_ademamix(0.1, alpha=1.0)):
        u, state = tx.update(g, tx.init(z), z)
        turned, _ = tx.update(g * 1j, tx.init(z * 1j), z * 1j)
        assert u.dtype == jnp.complex64 and jax.tree.leaves(state[0])[-1].dtype == jnp.float32
        np.testing.assert_allclose(turned, u * 1j, rtol=1e-6)


def test_huge_and_zero_gradients_stay_finite():
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "s": jnp.asarray(0.5)}
    for tx in (ademamix(0.1), simplified_ademamix(0.01)):
        update = jax.jit(tx.update)
        for scale in (0.0, 1e30):  # 1e30 squared overflows float32: the updates must not become NaN
            state = tx.init(params)
            for sign in (1.0, -0.5):
                grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
                updates, state = update(grads, state, params)
                assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), (scale, updates)


# (optimizer, steps, factor) on the ill-conditioned quadratic of helpers (curvatures 1 to 100),
# the reductions reached on CPU in float32 noted.
CONVERGENCE = [
    (lambda: ademamix(0.02, b3=0.99, alpha=2.0), 200, 1e4),  # reached 2.1e5
    (lambda: simplified_ademamix(0.005, b1=0.9, alpha=1.0), 200, 1e8),  # reached 1.2e26
]


@pytest.mark.parametrize("make,steps,factor", CONVERGENCE, ids=["ademamix", "simplified_ademamix"])
def test_convergence(make, steps, factor):
    initial, final, _ = run_problem(make(), "quadratic", steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
