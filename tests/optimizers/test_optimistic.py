"""Optimistic gradient descent and Optimistic Adam (Daskalakis et al., 2018; Mokhtari et al., 2020).

Step-by-step agreement with NumPy references written from the papers, 12
steps on the nested tree of ``references``, eagerly and under ``jax.jit``,
float32 and float64; the bilinear game on which optimism is the point;
convergence on the benchmark problems; edge cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem
from references.optimistic import Optimistic, OptimisticAdam, ref_ogd, ref_optimistic_adam

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]


# ------------------------------------------------------------ step by step agreement

CASES = [
    ("scale_by_optimistic_gradient", "default", dict(), Optimistic),
    ("scale_by_optimistic_gradient", "custom", dict(alpha=0.5, beta=2.0), Optimistic),
    (
        "scale_by_optimistic_gradient",
        "schedules",
        dict(alpha=lambda t: 1.0 / (1.0 + t), beta=lambda t: 0.1 * t),
        Optimistic,
    ),
    ("optimistic_gradient_descent", "default", dict(), ref_ogd),
    (
        "optimistic_gradient_descent",
        "custom",
        dict(learning_rate=lambda t: 0.1 / (1.0 + t), alpha=0.3, beta=0.7),
        ref_ogd,
    ),
    ("optimistic_adam_v2", "default", dict(), OptimisticAdam),
    ("optimistic_adam_v2", "paper", dict(learning_rate=0.01, nesterov=False), OptimisticAdam),
    (
        "optimistic_adam_v2",
        "custom",
        dict(learning_rate=lambda t: 0.01 / (1.0 + t), alpha=0.5, beta=0.25, b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4),
        OptimisticAdam,
    ),
    ("optimistic_adam", "default", dict(learning_rate=0.01), ref_optimistic_adam),
    (
        "optimistic_adam",
        "custom",
        dict(learning_rate=lambda t: 0.01 / (1.0 + t), optimism=0.02, b1=0.5, nesterov=False),
        ref_optimistic_adam,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref", [pytest.param(n, kw, ref, id=f"{n}-{label}") for n, label, kw, ref in CASES]
)
def test_matches_reference(name, kwargs, ref, dtype, mode):
    tx, reference = getattr(gradtx, name)(**kwargs), ref(**kwargs)
    if name.startswith("scale_by"):  # a direction: descend along it
        tx, reference = gradtx.chain(tx, gradtx.scale(-0.1)), R.Chain(reference, R.Scale(-0.1))
    R.run_against_reference(tx, reference, dtype, mode)


def _bilinear_game(tx, steps=300):
    """min_x max_y x * y from (1, 1): the descent player follows y, the ascent player -(-x)."""
    params = {"x": jnp.asarray(1.0), "y": jnp.asarray(1.0)}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = {"x": params["y"], "y": -params["x"]}  # y ascends: descend on -x*y
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return float(jnp.hypot(params["x"], params["y"]))


def test_optimism_converges_on_the_bilinear_game_where_gradient_descent_spirals_out():
    start = float(np.hypot(1.0, 1.0))
    assert _bilinear_game(gradtx.sgd(0.1)) > 2 * start  # |z| grows by sqrt(1 + lr^2) per step
    assert _bilinear_game(gradtx.optimistic_gradient_descent(0.1)) < 0.5 * start


def test_first_step_and_state():
    tx = gradtx.optimistic_gradient_descent(0.5, alpha=1.0, beta=0.5)
    state = tx.init({"w": jnp.zeros(2)})
    assert gradtx.hyperparams(state) == {"alpha": 1.0, "beta": 0.5, "learning_rate": 0.5}
    u, state = tx.update({"w": jnp.array([1.0, -2.0])}, state)
    np.testing.assert_allclose(u["w"], [-0.5, 1.0])  # -0.5 * alpha g: no change yet on the first step
    np.testing.assert_array_equal(gradtx.tree.get(state, "prev_grad")["w"], [1.0, -2.0])
    with pytest.raises(ValueError, match="^alpha must be in"):
        gradtx.scale_by_optimistic_gradient(alpha=-1.0)


TRANSFORMS = {
    "scale_by_optimistic_gradient": lambda: gradtx.scale_by_optimistic_gradient(),
    "optimistic_gradient_descent": lambda: gradtx.optimistic_gradient_descent(),
    "optimistic_adam_v2": lambda: gradtx.optimistic_adam_v2(),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=not name.startswith("scale_by"))
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))


# ------------------------------------------------------------------ convergence

# (optimizer, problem, learning rate, steps, factor): other arguments at their
# defaults; the factors reached (CPU, float32) are noted.
CONVERGENCE = [
    ("optimistic_gradient_descent", "quadratic", 5e-3, 200, 300.0),  # reached 1.2e3
    ("optimistic_gradient_descent", "rosenbrock", 5e-4, 2000, 5.0),  # reached 12.3
    ("optimistic_gradient_descent", "digits", 1.0, 200, 5.0),  # reached 12.2
    ("optimistic_adam_v2", "quadratic", 0.03, 200, 1e8),  # reached 4.7e11
    ("optimistic_adam_v2", "rosenbrock", 0.03, 2000, 50.0),  # reached 371
    ("optimistic_adam_v2", "digits", 0.1, 200, 10.0),  # reached 44
]


@pytest.mark.parametrize("name,problem,lr,steps,factor", CONVERGENCE)
def test_convergence(name, problem, lr, steps, factor):
    initial, final, _ = run_problem(getattr(gradtx, name)(lr), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
