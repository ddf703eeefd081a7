"""L-BFGS: the direction against a NumPy two-loop recursion, convergence, and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import run_problem
from references.lbfgs import TwoLoop

STEPS = 12


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in R.leaves64(tree)])


def _grad_fn(tree):
    """The gradient of a convex, non-quadratic function with leaves at different scales."""
    return jax.tree.map(lambda x: (1.0 + jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) % 3) * x + 0.1 * x**3, tree)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(
    "memory_size, scale_init_precond", [(10, True), (4, True), (3, False)], ids=["m10", "m4-ring", "m3-unscaled"]
)
def test_direction_matches_a_numpy_two_loop_recursion(mode, memory_size, scale_init_precond):
    tx = gradtx.scale_by_lbfgs(memory_size, scale_init_precond)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    state = tx.init(params)
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    ref = TwoLoop(memory_size, scale_init_precond)
    for step in range(STEPS):
        grads = _grad_fn(params)
        updates, state = update(grads, state, params)
        want = ref.update(_flat(grads), _flat(params))
        np.testing.assert_allclose(_flat(updates), want, rtol=2e-4, atol=1e-6 * np.abs(want).max())
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        if step != 5:  # step 5 repeats the point: s = 0, the pair must be skipped
            params = jax.tree.map(lambda p, u: p - 0.2 * u, params, updates)
    assert int(gradtx.step_count(state)) == STEPS
    skipped_pair_in_memory = (STEPS - 1) - 6 < memory_size  # the pair made at update 6 has s = 0
    assert int(jnp.sum(state.weights_memory > 0)) == min(memory_size, STEPS - 1) - skipped_pair_in_memory


def test_the_first_direction_has_unit_length_and_the_pairs_fill_a_ring():
    tx = gradtx.scale_by_lbfgs(memory_size=3)
    x = jnp.array([3.0, -4.0])
    u, state = tx.update(x, tx.init(x), x)
    np.testing.assert_allclose(u, [0.6, -0.8], rtol=1e-6)
    for k in range(1, 6):
        x = x * 0.5
        _, state = tx.update(x, state, x)
        assert int(jnp.sum(state.weights_memory > 0)) == min(k, 3)
    np.testing.assert_allclose(state.diff_params_memory[(5 - 1) % 3], x - 2 * x)


# ------------------------------------------------------------------ convergence


def test_rosenbrock_reaches_the_minimum_to_1e_6_in_100_float32_iterations():
    _, final_loss, params = run_problem(gradtx.lbfgs(), "rosenbrock", 100)
    assert abs(float(params["x"]) - 1.0) <= 1e-6 and abs(float(params["y"]) - 1.0) <= 1e-6
    assert final_loss <= 1e-12


@pytest.mark.parametrize("problem, steps, factor", [("quadratic", 40, 1e-9), ("digits", 50, 1e-4)])
def test_convergence_factor_within_budget(problem, steps, factor):
    initial, final, _ = run_problem(gradtx.lbfgs(), problem, steps)
    assert final <= factor * initial, (problem, initial, final)


def test_a_step_costs_only_the_line_search_evaluations_with_value_and_grad_from_state():
    calls = []

    def f(p):
        jax.debug.callback(lambda: calls.append(1))
        return (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2

    tx = gradtx.lbfgs()
    params = {"x": jnp.asarray(-1.5, jnp.float32), "y": jnp.asarray(2.0, jnp.float32)}
    value_and_grad = gradtx.value_and_grad_from_state(f)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    searched = 0
    for _k in range(40):
        params, state = step(params, state)
        jax.effects_barrier()
        searched += int(state[-1].info.num_linesearch_steps)
        assert len(calls) == searched + 1  # one evaluation before the first step, none after
    assert float(f(params)) < 1e-10
    assert searched < 40 * 2  # most steps accept their first trial


def test_fixed_learning_rate_without_line_search():
    tx = gradtx.lbfgs(learning_rate=0.5, linesearch=None)
    params = jnp.array([2.0, -1.0])
    state = tx.init(params)
    updates, state = tx.update(params, state, params)  # no value/grad/value_fn needed
    np.testing.assert_allclose(updates, -0.5 * params / jnp.linalg.norm(params), rtol=1e-6)
    assert gradtx.hyperparams(state) == {"learning_rate": 0.5}


# ------------------------------------------------------------------ edge cases


def _run_lbfgs(f, params, steps):
    tx = gradtx.lbfgs()
    value_and_grad = jax.value_and_grad(f)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return gradtx.apply_updates(params, updates), state, updates

    state = tx.init(params)
    for _ in range(steps):
        params, state, updates = step(params, state)
        finite = [bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((params, updates, state[0], state[-1].grad))]
        assert all(finite), "no NaN or inf"
    return params, state


def test_zero_gradients_give_zero_updates_without_dividing_by_zero():
    params = {"a": jnp.zeros((2, 3)), "b": jnp.asarray(0.0)}
    f = lambda p: jnp.sum(p["a"] ** 2) + p["b"] ** 2 + 7.0  # noqa: E731 - at its minimum
    out, state = _run_lbfgs(f, params, 4)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), out, params)
    assert not bool(jnp.any(state[0].weights_memory)), "s^T y = 0: no pair is stored"
    constant = lambda p: 0.0 * jnp.sum(p["a"]) + 3.0  # noqa: E731
    _run_lbfgs(constant, params, 3)


def test_size_one_and_scalar_leaves():
    params = {"one": jnp.array([2.0]), "scalar": jnp.asarray(-3.0), "pair": (jnp.asarray(1.0), jnp.ones((1, 1)))}
    f = lambda p: sum(jnp.sum((x - 0.5) ** 2 * (i + 1.0)) for i, x in enumerate(jax.tree.leaves(p)))  # noqa: E731
    out, _ = _run_lbfgs(f, params, 15)
    for x in jax.tree.leaves(out):
        np.testing.assert_allclose(x, 0.5, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_tiny_and_huge_gradients_in_float32(scale):
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "s": jnp.asarray(1.5)}
    weights = jnp.array([1.0, 3.0, 10.0])
    f = lambda p: scale * (jnp.sum(weights * p["w"] ** 2) + p["s"] ** 2)  # noqa: E731
    out, _ = _run_lbfgs(f, params, 20)
    for x in jax.tree.leaves(out):
        np.testing.assert_allclose(x, 0.0, atol=1e-4)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_scale_by_lbfgs_alone_stays_finite_with_extreme_gradients(scale):
    tx = gradtx.scale_by_lbfgs(memory_size=3)
    rng = np.random.default_rng(0)
    params = {"w": jnp.ones(4), "s": jnp.asarray(1.0)}
    state = tx.init(params)
    for _ in range(6):
        grads = jax.tree.map(
            lambda p: jnp.asarray(scale * (p + 0.1 * rng.standard_normal(p.shape)), jnp.float32), params
        )
        updates, state = tx.update(grads, state, params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
        assert float(gradtx.tree.vdot(updates, jax.tree.map(lambda g: g / scale, grads))) > 0, "a descent direction"
        params = jax.tree.map(lambda p, u: p - 0.3 * u / jnp.maximum(gradtx.tree.norm(updates), 1e-30), params, updates)  # noqa: B023 (used at once)


# ------------------------------------------------------------------ the protocol


def test_missing_extra_arguments_are_named():
    tx, params = gradtx.lbfgs(), {"w": jnp.ones(2)}
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs the extra argument `value`"):
        tx.update(params, state, params)
    with pytest.raises(ValueError, match="needs the extra argument `value_fn`"):
        tx.update(params, state, params, value=jnp.asarray(1.0), grad=params)
    with pytest.raises(ValueError, match="scale_by_lbfgs needs the parameters"):
        tx.update(params, state)


def test_state_keeps_its_structure_and_dtypes_with_bfloat16_params():
    tx = gradtx.lbfgs()
    params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.zeros(2, jnp.bfloat16), "s": jnp.asarray(1.0)}
    f = lambda p: sum(jnp.sum((x.astype(jnp.float32) - 0.25) ** 2) for x in jax.tree.leaves(p))  # noqa: E731
    state = tx.init(params)
    structure, dtypes = jax.tree.structure(state), [x.dtype for x in jax.tree.leaves(state)]

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(f)(params)
        grad = jax.tree.map(lambda g: g.astype(jnp.float32), grad)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return gradtx.apply_updates(params, updates), state, updates

    for _ in range(3):
        params, state, updates = step(params, state)
        assert jax.tree.structure(state) == structure
        assert [x.dtype for x in jax.tree.leaves(state)] == dtypes
        assert all(u.dtype == jnp.float32 for u in jax.tree.leaves(updates))
    assert params["w"].dtype == jnp.bfloat16
    assert "learning_rate" in gradtx.hyperparams(state)
    assert int(gradtx.step_count(state)) == 3
    assert float(f(params)) < 1e-3


def test_invalid_memory_size_is_rejected():
    with pytest.raises(ValueError, match="memory_size must be in"):
        gradtx.scale_by_lbfgs(memory_size=0)
