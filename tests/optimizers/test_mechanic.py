"""Mechanic (Cutkosky, Defazio & Mehta 2023, Algorithm 1) against its NumPy reference, around SGD
and Adam: step by step on the nested test tree with fixed gradients, and on a small tree driven
by a quadratic's gradients, where the scale S = sum(s) grows from s_init and is compared too;
the first steps; the hyperparameters; construction errors; jit against eager; convergence from
far away.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.mechanic import MechanicState, mechanize

import references as R
from helpers import EDGE_SCALES, check_edge_cases
from references.mechanic import Mechanic

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]

# (id, base optimizer, its reference, mechanize's keyword arguments)
CASES = [
    ("sgd", lambda: gradtx.sgd(0.1), lambda: R.ref_sgd(0.1), dict()),
    ("sgd_momentum", lambda: gradtx.sgd(0.05, momentum=0.9), lambda: R.ref_sgd(0.05, momentum=0.9), dict(num_betas=3)),
    (
        "adam_custom",
        lambda: gradtx.adam(0.05),
        lambda: R.ref_adam(0.05),
        dict(weight_decay=0.5, eps=1e-4, s_init=1e-2, num_betas=2),
    ),
]
ROWS = [pytest.param(base, ref, kwargs, id=label) for label, base, ref, kwargs in CASES]


# eager runs only around SGD (a wrapped Adam is slow to run op by op); jit equals eager below
MODE_ROWS = [
    pytest.param(*row.values, mode, id=f"{row.id}-{mode}")
    for row in ROWS
    for mode in MODES
    if mode == "jit" or row.id == "sgd"
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base,ref,kwargs,mode", MODE_ROWS)
def test_matches_reference_on_fixed_gradients(base, ref, kwargs, dtype, mode):
    R.run_against_reference(mechanize(base(), **kwargs), Mechanic(ref(), **kwargs), dtype, mode)


# ----------------------------------------------------- the scale, on a quadratic

TARGET = [np.full((3, 2), 4.0), np.linspace(-3.0, 3.0, 4), np.asarray(-2.0)]
CURVATURE = [np.full((3, 2), 1.0), np.asarray([1.0, 2.0, 5.0, 10.0]), np.asarray(0.5)]
START = [np.ones((3, 2)), np.zeros(4), np.asarray(0.5)]
STEPS = 30


def quadratic_grad(params):
    return [c * (np.asarray(x, np.float64) - t) for x, c, t in zip(params, CURVATURE, TARGET)]


def run_gradtx(tx, dtype, mode, steps=STEPS, **extra):
    """The parameters and the scale after every step, the final state and the gradients used."""
    with R.precision(dtype):
        params = tuple(jnp.asarray(x, dtype) for x in START)
        state = tx.init(params)
        update = jax.jit(tx.update) if mode == "jit" else tx.update
        path, scales, used = [], [], []
        for _ in range(steps):
            grads = tuple(jnp.asarray(g, dtype) for g in quadratic_grad(params))
            used.append([np.asarray(g, np.float64) for g in grads])
            updates, state = update(grads, state, params, **extra)
            params = gradtx.apply_updates(params, updates)
            path.append([np.asarray(x, np.float64) for x in params])
            scales.append(float(state.scale))
    return path, scales, state, used


def run_reference(ref, grads):
    params = [np.asarray(x, np.float64) for x in START]
    ref.init(params)
    path = []
    for g in grads:
        params = [p + u for p, u in zip(params, ref.update(g, params))]
        path.append(params)
    return path


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base,ref,kwargs,mode", MODE_ROWS)
def test_params_and_scale_follow_the_reference_while_the_scale_grows(base, ref, kwargs, dtype, mode):
    path, scales, _, grads = run_gradtx(mechanize(base(), **kwargs), dtype, mode)
    reference = Mechanic(ref(), **kwargs)
    want_path = run_reference(reference, grads)  # the same gradients: no drift through the loss
    # float32: the betas 1 - 10^-i are rounded (0.999999 by 1e-8, 1% of 1 - beta), and b2 = 0.999
    # of the Adam base by 1.3e-8; the scale, a sum of the learners' bets, drifts by ~1e-6 a step
    # (2e-5 after 33 steps, CPU), and the parameters with it
    rtol = 1e-4 if dtype == "float32" else 1e-10
    moved = [0.0 for _ in START]
    for step, (got, want, scale, want_scale) in enumerate(zip(path, want_path, scales, reference.scales), start=1):
        moved = [max(m, float(np.max(np.abs(y - x0)))) for m, y, x0 in zip(moved, want, START)]
        for leaf, (x, y, size) in enumerate(zip(got, want, moved)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * size, err_msg=f"step {step}, leaf {leaf}")
        np.testing.assert_allclose(scale, want_scale, rtol=rtol, err_msg=f"step {step}: scale")
    s_init = kwargs.get("s_init", 1e-6)
    assert reference.scales[-1] > 50 * s_init, f"the scale must grow for the test to mean something: {scales[-1]}"


def test_first_steps():
    """Delta_1 = 0 makes h_1 = 0 and s_2 = 0: the first update is zero; the second moves by
    S_3 (u_1 + u_2), S_3 = s_init |h_2| / (|h_2| + eps), about s_init."""
    tx = mechanize(gradtx.sgd(1.0), weight_decay=0.0)
    w, g = jnp.asarray([1.0, -2.0]), jnp.asarray([3.0, -4.0])
    state = tx.init(w)
    u1, state = tx.update(g, state, w)
    np.testing.assert_array_equal(u1, [0.0, 0.0])
    assert float(state.scale) == 0.0 and int(state.count) == 1
    np.testing.assert_allclose(state.delta, -g)
    u2, state = tx.update(g, state, w)
    h2 = -float(jnp.sum(g * g))  # <Delta_2, g_2> = <-g, g>
    np.testing.assert_allclose(float(state.scale), 1e-6 * abs(h2) / (abs(h2) + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(u2, float(state.scale) * -2 * g, rtol=1e-6)
    assert state.s.shape == (6,) and state.m.shape == (6,)


# --------------------------------------------------------------- hyperparameters


def test_state_fields_follow_optax():
    assert MechanicState._fields[:7] == ("base_optimizer_state", "count", "r", "m", "v", "s", "x0")


def test_hyperparams_are_readable_and_settable():
    state = mechanize(gradtx.sgd(0.1)).init((jnp.ones(3),))
    assert gradtx.hyperparams(state) == {"learning_rate": 0.1, "weight_decay": 0.01, "eps": 1e-8, "s_init": 1e-6}
    kwargs = dict(weight_decay=0.5, eps=1e-4, s_init=1e-2, num_betas=2)
    lr = {"value": 0.05}  # the reference base's learning rate, changed below
    tx, reference = mechanize(gradtx.adam(0.05), **kwargs), Mechanic(R.ref_adam(lambda t: lr["value"]), **kwargs)
    with R.precision("float64"):
        params = tuple(jnp.asarray(x) for x in START)
        ref_params = [np.asarray(x, np.float64) for x in START]
        state, update = tx.init(params), jax.jit(tx.update)
        reference.init(ref_params)
        for step in range(10):
            if step == 4:
                state = gradtx.set_hyperparams(state, s_init=0.5, weight_decay=0.0, learning_rate=0.01)
                reference.s_init, reference.wd, lr["value"] = 0.5, 0.0, 0.01
            updates, state = update(tuple(jnp.asarray(g) for g in quadratic_grad(params)), state, params)
            params = gradtx.apply_updates(params, updates)
            ref_params = [p + u for p, u in zip(ref_params, reference.update(quadratic_grad(ref_params), ref_params))]
            for got, want in zip(params, ref_params):
                np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12, err_msg=f"step {step}")
    assert gradtx.hyperparams(state)["s_init"] == 0.5
    assert reference.scales[5] > 10 * reference.scales[3], "the new s_init must show in the scale"


# ------------------------------------------------------------------------- errors


def test_construction_and_update_errors_name_the_argument():
    with pytest.raises(TypeError, match="^base_optimizer must be a GradientTransformation"):
        mechanize(0.1)
    for bad in [0, 2.0, True]:
        with pytest.raises(ValueError, match="^num_betas must be an int >= 1"):
            mechanize(gradtx.sgd(0.1), num_betas=bad)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        mechanize(gradtx.sgd(0.1), weight_decay=-1.0)
    with pytest.raises(ValueError, match="^eps must be in"):
        mechanize(gradtx.sgd(0.1), eps=0.0)
    with pytest.raises(ValueError, match="^s_init must be in"):
        mechanize(gradtx.sgd(0.1), s_init=0.0)
    with pytest.raises(TypeError, match="^s_init must be a number or an array"):
        mechanize(gradtx.sgd(0.1), s_init=lambda t: 1e-6)
    tx = mechanize(gradtx.sgd(0.1))
    with pytest.raises(ValueError, match="mechanize needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    with pytest.raises(ValueError, match="do not match the tree this state was built for"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(2)), jnp.ones(3))


# ------------------------------------------------------------- jit, extras, dtypes


def test_jit_equals_eager_and_extra_arguments_reach_the_base():
    eager, eager_scales, *_ = run_gradtx(mechanize(gradtx.adam(0.05)), "float32", "eager", steps=8)
    jitted, jit_scales, *_ = run_gradtx(mechanize(gradtx.adam(0.05)), "float32", "jit", steps=8)
    for a, b in zip(eager[-1], jitted[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(eager_scales, jit_scales, rtol=1e-6)
    # Polyak's step needs the loss: mechanize hands value= on to it, and ignores the rest
    tx, w = mechanize(gradtx.polyak_sgd()), jnp.asarray([2.0, -1.0])
    state = tx.init(w)
    extra = dict(value=jnp.sum(w**2), grad=w, value_fn=jnp.sum, obj_fn=jnp.sum, grad_fn=None)
    for _ in range(2):
        u, state = tx.update(2 * w, state, w, **extra)
    assert bool(jnp.all(jnp.isfinite(u))) and float(state.scale) > 0
    with pytest.raises(ValueError, match="needs the loss"):
        tx.update(2 * w, state, w)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_empty_tree_and_none_leaf(mode):
    R.check_bfloat16(mechanize(gradtx.adam(0.1)), mode)
    R.check_empty_tree(mechanize(gradtx.adam(0.1)), mode)
    R.check_none_leaf(mechanize(gradtx.sgd(0.1)), Mechanic(R.ref_sgd(0.1)), mode)


@pytest.mark.parametrize("scale", EDGE_SCALES)
def test_edge_cases_stay_finite(scale):
    updates = check_edge_cases(lambda: mechanize(gradtx.adam(0.1)), scale)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


def test_complex_parameters_step_as_their_stacked_real_and_imaginary_parts():
    """Mechanic adds only inner products and norms to its base: around SGD, complex parameters
    move exactly as their real and imaginary parts stacked in one real leaf."""
    z = jnp.asarray([0.5 - 1j, -2 + 0.25j, 1.5 + 3j], jnp.complex64)
    target = jnp.asarray([1 + 1j, -1 + 2j, 0.5 - 0.5j], jnp.complex64)
    runs = {}
    for view, params, goal in [
        ("complex", z, target),
        ("stacked", jnp.stack([z.real, z.imag]), jnp.stack([target.real, target.imag])),
    ]:
        tx = mechanize(gradtx.sgd(0.1, momentum=0.9), weight_decay=0.1)
        state, update = tx.init(params), jax.jit(tx.update)
        for _ in range(20):
            updates, state = update(params - goal, state, params)
            params = gradtx.apply_updates(params, updates)
        runs[view] = params
    assert runs["complex"].dtype == jnp.complex64
    np.testing.assert_allclose(
        np.stack([np.real(runs["complex"]), np.imag(runs["complex"])]), runs["stacked"], rtol=1e-5, atol=1e-6
    )
    assert float(jnp.max(jnp.abs(runs["complex"] - z))) > 1e-3


# ------------------------------------------------------------------ convergence

CURVATURES = jnp.linspace(1.0, 10.0, 5)


def far_loss(p):
    """A quadratic whose minimum (x = 100, y = -50) is ~130 away from the start at 0."""
    return 0.5 * jnp.sum(CURVATURES * (p["x"] - 100.0) ** 2) + 0.5 * jnp.sum((p["y"] + 50.0) ** 2)


def test_converges_from_far_away_with_a_small_base_learning_rate():
    """Adam at 1e-2 moves ~1e-2 a step: alone it needs ~1e4 steps to cover the distance of ~130;
    Mechanic's scale, from s_init = 1e-6, grows until it does. Best loss within 400 steps (CPU,
    float32: 1e-6 of the initial loss first reached at step 368)."""
    tx = mechanize(gradtx.adam(1e-2))

    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(far_loss)(p), s, p)
        p = gradtx.apply_updates(p, u)
        return (p, s), far_loss(p)

    params = {"x": jnp.zeros(5), "y": jnp.zeros((2, 2))}
    (_, state), losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=400))(params)
    initial = float(far_loss(params))
    assert float(jnp.min(losses)) < 1e-5 * initial, (initial, float(jnp.min(losses)))
    assert float(jnp.max(losses[:100])) < 2 * initial  # no blow-up on the way
    assert float(state.scale) > 10.0
