"""Step sizes from the run itself: Polyak's (scale_by_polyak, polyak_sgd) and DoG.

Step-by-step agreement with NumPy references written from the papers (Polyak
1987 / Loizou et al. 2021; Ivgi, Hinder & Carmon 2023), 12 steps on the nested
tree of ``references``, eagerly and under ``jax.jit``, float32 and float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases, run_problem
from references.step_size import DoG, Polyak, ref_dog, ref_ldog, ref_polyak_sgd

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]


def loss(params):
    """The loss handed to Polyak's step: half the squared norm of the parameters, plus 1."""
    return 1.0 + 0.5 * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))


def with_loss(tx):
    """``tx`` given ``value=loss(params)`` at every update, as a training loop would."""

    def update(updates, state, params=None, **extra):
        return tx.update(updates, state, params, value=loss(params), **extra)

    return gradtx.GradientTransformation(tx.init, update)


# ------------------------------------------------------------ step by step agreement

# (name, id, kwargs, reference, float32 tolerance or None for the default)
# DoG from r_eps = 1e-6 (1 + |x0|) moves the parameters by ~1e-6 of their size
# in the first steps; float32 parameters resolve that movement only to ~6e-8 of
# their size, so |x_t - x0| (and every step after) is known to a few percent in
# float32: those cases get a loose float32 check and a tight float64 one.
LOOSE = 0.1
CASES = [
    # scale_by_polyak is a direction: descend along it with -1
    ("scale_by_polyak", "default", dict(), Polyak, None),
    ("scale_by_polyak", "capped", dict(f_min=-2.0, max_learning_rate=1e-3, eps=1.0), Polyak, None),
    ("scale_by_polyak", "sps_plus_no_uphill", dict(f_min=1e6, variant="sps+"), Polyak, None),
    ("polyak_sgd", "default", dict(), ref_polyak_sgd, None),
    (
        "polyak_sgd",
        "scaling_schedule",
        dict(scaling=lambda t: 1.0 / (1.0 + t), max_learning_rate=0.01, eps=0.5),
        ref_polyak_sgd,
        None,
    ),
    ("scale_by_distance_over_gradients", "default", dict(), ref_ldog, LOOSE),
    ("scale_by_distance_over_gradients", "custom", dict(reps_rel=1e-2, eps=1e-4, global_scale=0.5), ref_ldog, None),
    ("dog", "default", dict(), ref_dog, LOOSE),
    ("dog", "distance", dict(init_step=("distance", 0.1), eps=1e-4), ref_dog, None),
    ("dog", "learning_rate", dict(init_step=("learning_rate", 0.01)), ref_dog, None),
    (
        "dog",
        "decay_mask_schedule",
        dict(learning_rate=lambda t: 1.0 + 0.1 * t, weight_decay=0.1, mask=R.MASK_TREE, init_step=("heuristic", 1e-2)),
        ref_dog,
        None,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref,f32_tol", [pytest.param(n, kw, ref, tol, id=f"{n}-{label}") for n, label, kw, ref, tol in CASES]
)
def test_matches_reference(name, kwargs, ref, f32_tol, dtype, mode):
    if name == "scale_by_distance_over_gradients" and dtype == "float64":
        kwargs = dict(kwargs, param_dtype=None)  # keep x0 in float64 (the default stores it in float32)
    tx, reference = getattr(gradtx, name)(**kwargs), ref(**kwargs)
    if name.startswith("scale_by"):
        tx, reference = gradtx.chain(tx, gradtx.scale(-1.0)), R.Chain(reference, R.Scale(-1.0))
    if "polyak" in name:
        tx = with_loss(tx)
    rtol = f32_tol if dtype == "float32" else None
    reference = R.run_against_reference(tx, reference, dtype, mode, rtol=rtol)
    dog = R.find(reference, DoG)
    if dog is not None:
        assert dog.distance_mattered, "the distance travelled must have overtaken r_eps"


def test_polyak_cap_and_formula_regimes_are_both_exercised():
    kwargs = dict(f_min=-2.0, max_learning_rate=1e-3, eps=1.0)  # the "capped" case above
    reference = R.run_against_reference(
        gradtx.chain(with_loss(gradtx.scale_by_polyak(**kwargs)), gradtx.scale(-1.0)),
        R.Chain(Polyak(**kwargs), R.Scale(-1.0)),
        "float32",
        "jit",
    )
    polyak = R.find(reference, Polyak)
    assert polyak.capped > 0 and polyak.uncapped > 0, (polyak.capped, polyak.uncapped)


def test_polyak_step_size_is_readable_and_the_loss_is_required():
    tx = gradtx.polyak_sgd(max_learning_rate=10.0)
    w = jnp.array([2.0])
    state = tx.init(w)
    _, state = tx.update(2 * w, state, w, value=jnp.sum(w**2))
    assert float(gradtx.tree.get(state, "step_size")) == pytest.approx(0.25)
    assert set(gradtx.hyperparams(state)) == {"f_min", "max_learning_rate", "eps", "scaling"}
    with pytest.raises(ValueError, match="needs the loss.*value=loss"):
        tx.update(2 * w, state, w)
    with pytest.raises(ValueError, match="variant must be one of"):
        gradtx.polyak_sgd(variant="sps-")
    with pytest.raises(ValueError, match="^max_learning_rate must be in"):
        gradtx.scale_by_polyak(max_learning_rate=-1.0)


def test_polyak_zero_gradient_is_not_a_division_by_zero():
    tx = gradtx.polyak_sgd()
    state = tx.init(jnp.zeros(3))
    u, state = tx.update(jnp.zeros(3), state, jnp.zeros(3), value=0.0)
    np.testing.assert_array_equal(u, np.zeros(3))
    assert float(state[0].step_size) == 1.0


def test_dog_validates_init_step_and_keeps_x0():
    for bad in [("guess", 1e-6), "heuristic", ("distance",)]:
        with pytest.raises(ValueError, match="init_step must be a pair"):
            gradtx.dog(init_step=bad)
    with pytest.raises(ValueError, match="^init_step must be in"):
        gradtx.dog(init_step=("distance", 0.0))
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = gradtx.scale_by_distance_over_gradients().init(params)
    assert state.init_params["w"].dtype == jnp.float32
    state = gradtx.scale_by_distance_over_gradients(param_dtype=jnp.bfloat16).init({"w": jnp.ones(3)})
    assert state.init_params["w"].dtype == jnp.bfloat16
    assert gradtx.hyperparams(gradtx.dog().init(params)) == {"init_step": 1e-6, "eps": 1e-8, "learning_rate": 1.0}
    with pytest.raises(ValueError, match="needs the parameters"):
        tx = gradtx.dog()
        tx.update(params, tx.init(params))


def test_dog_learning_rate_init_makes_the_first_step():
    tx = gradtx.dog(init_step=("learning_rate", 0.01), eps=0.0)
    w = jnp.array([3.0, -1.0])
    u, _ = tx.update(jnp.array([1.0, 2.0]), tx.init(w), w)
    np.testing.assert_allclose(u, [-0.01, -0.02], rtol=1e-6)


OPTIMIZERS = {
    "scale_by_polyak": (lambda: gradtx.scale_by_polyak(), True),
    "polyak_sgd": (lambda: gradtx.polyak_sgd(), True),
    "scale_by_distance_over_gradients": (lambda: gradtx.scale_by_distance_over_gradients(), False),
    "dog": (lambda: gradtx.dog(weight_decay=0.1), False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    make, needs_value = OPTIMIZERS[name]
    wrap = with_loss if needs_value else (lambda tx: tx)
    R.check_bfloat16(wrap(make()), mode)
    R.check_empty_tree(wrap(make()), mode)
    params = {"a": jnp.ones(3), "b": None}
    tx = wrap(make())
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    updates, _ = update({"a": jnp.ones(3), "b": None}, tx.init(params), params)
    assert updates["b"] is None and bool(jnp.all(jnp.isfinite(updates["a"])))


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_edge_cases_stay_finite(name, scale):
    make, needs_value = OPTIMIZERS[name]
    extra = {"value": jnp.asarray(2.0)} if needs_value else {}
    updates = check_edge_cases(make, scale, apply=not name.startswith("scale_by"), **extra)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates)) or name == "dog"


# ------------------------------------------------------------------ convergence

# (optimizer, problem, steps, factor): defaults throughout (neither has a
# learning rate to tune); the factors reached (CPU, float32) are noted.
CONVERGENCE = [
    ("polyak_sgd", "quadratic", 200, 1e8),  # reached 1.2e15
    ("polyak_sgd", "rosenbrock", 2000, 1e6),  # reached 1.6e11
    ("polyak_sgd", "digits", 200, 4.0),  # reached 11.9 (f_min = 0 lies below the optimum)
    # DoG starts from r_eps = 1e-6 (1 + |x0|) and must first grow its step
    # geometrically: its slow start costs it on the short budgets.
    ("dog", "quadratic", 200, 30.0),  # reached 116
    ("dog", "rosenbrock", 2000, 2.0),  # reached 2.9
    ("dog", "digits", 200, 4.0),  # reached 13.6
]


@pytest.mark.parametrize("name,problem,steps,factor", CONVERGENCE)
def test_convergence(name, problem, steps, factor):
    initial, final, _ = run_problem(getattr(gradtx, name)(), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
