"""Adafactor's factored second moment and SM3.

Step by step for 12 steps against NumPy references written from the papers
(Shazeer & Stern 2018, Algorithms 4-5; Anil et al. 2019, SM3-II), on
the nested tree of references, whose (3, 4) matrix and (2, 1, 3, 2) tensor are
factored when ``min_dim_size_to_factor`` is small; eagerly and under ``jax.jit``,
in float32 and float64. Then convergence and extreme gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import check_tiny_and_huge_gradients, check_zero_gradients, run_convergence
from references.factored import SM3, ClipByUpdateRMS, FactoredRMS, adafactor_ref


def decay(t):
    return 0.05 / (1 + t)


CASES = [
    (
        "factored-3",
        lambda: gradtx.scale_by_factored_rms(min_dim_size_to_factor=3),
        lambda: FactoredRMS(min_dim_size_to_factor=3),
        1,
    ),
    (
        "factored-2",
        lambda: gradtx.scale_by_factored_rms(min_dim_size_to_factor=2),
        lambda: FactoredRMS(min_dim_size_to_factor=2),
        2,
    ),
    (
        "factored-custom",
        lambda: gradtx.scale_by_factored_rms(decay_rate=0.5, step_offset=3, min_dim_size_to_factor=2, epsilon=1e-3),
        lambda: FactoredRMS(decay_rate=0.5, step_offset=3, min_dim_size_to_factor=2, epsilon=1e-3),
        2,
    ),
    (
        "unfactored",
        lambda: gradtx.scale_by_factored_rms(factored=False, min_dim_size_to_factor=2),
        lambda: FactoredRMS(factored=False, min_dim_size_to_factor=2),
        0,
    ),
    (
        "adafactor-default",
        lambda: gradtx.adafactor(min_dim_size_to_factor=3),
        lambda: adafactor_ref(min_dim_size_to_factor=3),
        1,
    ),
    (
        "adafactor-everything",
        lambda: gradtx.adafactor(
            lambda t: 0.02 / (1 + t),
            min_dim_size_to_factor=2,
            decay_rate=0.6,
            decay_offset=2,
            clipping_threshold=0.8,
            momentum=0.7,
            dtype_momentum=None,
            weight_decay_rate=decay,
            weight_decay_mask=R.MASK_TREE,
            eps=1e-20,
        ),
        lambda: adafactor_ref(
            lambda t: 0.02 / (1 + t),
            min_dim_size_to_factor=2,
            decay_rate=0.6,
            decay_offset=2,
            clipping_threshold=0.8,
            momentum=0.7,
            weight_decay_rate=decay,
            weight_decay_mask=R.MASK_TREE,
            eps=1e-20,
        ),
        2,
    ),
    (
        "adafactor-plain",
        lambda: gradtx.adafactor(0.1, multiply_by_parameter_scale=False, clipping_threshold=None, factored=False),
        lambda: adafactor_ref(0.1, multiply_by_parameter_scale=False, clipping_threshold=None, factored=False),
        0,
    ),
    ("scale_by_sm3", lambda: gradtx.scale_by_sm3(), lambda: SM3(), None),
    ("scale_by_sm3-custom", lambda: gradtx.scale_by_sm3(0.5, 0.9, 1e-3), lambda: SM3(0.5, 0.9, 1e-3), None),
    ("sm3", lambda: gradtx.sm3(0.1, momentum=0.8), lambda: R.Chain(SM3(0.8), R.ScaleByLearningRate(0.1)), None),
]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_tx,make_ref,factored_leaves", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_matches_reference(make_tx, make_ref, factored_leaves, dtype, mode):
    ref = R.run_against_reference(make_tx(), make_ref(), dtype, mode)
    rms = R.find(ref, FactoredRMS)
    if factored_leaves is not None:
        assert rms.factored_leaves == factored_leaves
    clip = R.find(ref, ClipByUpdateRMS)
    if clip is not None and clip.d < 1:
        assert clip.clipped, "the clipping must have acted"


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_none_leaves_and_zero_gradients_against_the_references(mode):
    for make_tx, make_ref, _ in [c[1:] for c in CASES if c[0] != "adafactor-everything"]:  # its mask fits the big tree
        R.run_against_reference(
            make_tx(), make_ref(), "float32", mode, steps=4, trees=(R.none_param_tree, R.none_grad_trees), zero_until=2
        )


def test_factored_state_shapes_follow_the_two_largest_axes():
    params = {"m": jnp.zeros((4, 2, 5)), "square": jnp.zeros((5, 5)), "small": jnp.zeros((2, 5)), "v": jnp.zeros(7)}
    state = gradtx.scale_by_factored_rms(min_dim_size_to_factor=3).init(params)
    shapes = {k: (state.v_row[k].shape, state.v_col[k].shape, state.v[k].shape) for k in params}
    assert shapes == {
        "m": ((4, 2), (2, 5), (1,)),  # the largest axis (5) and the second (4) are reduced
        "square": ((5,), (5,), (1,)),
        "small": ((1,), (1,), (2, 5)),  # 2 < 3: not factored
        "v": ((1,), (1,), (7,)),
    }


def test_sm3_keeps_one_accumulator_per_slice():
    state = gradtx.scale_by_sm3().init({"w": jnp.zeros((3, 4, 2)), "s": jnp.asarray(1.0)})
    assert [a.shape for a in state.mu["w"]] == [(3,), (4,), (2,)]
    assert [a.shape for a in state.mu["s"]] == [()]


def test_adafactor_reads_back_its_arguments():
    state = gradtx.adafactor(
        momentum=0.9, weight_decay_rate=1e-3, weight_decay_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ).init({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
    assert gradtx.hyperparams(state) == {
        "decay_rate": 0.8,
        "decay_offset": 0.0,
        "eps": 1e-30,
        "clipping_threshold": 1.0,
        "learning_rate": 0.01,
        "min_scale": 1e-3,
        "momentum": 0.9,
        "weight_decay_rate": 1e-3,
    }
    state = gradtx.set_hyperparams(state, momentum=0.5, weight_decay_rate=0.0)
    assert gradtx.hyperparams(state)["momentum"] == 0.5


def test_adafactor_default_relative_step_size():
    """learning_rate=None is the paper's rho_t = min(1e-2, 1/sqrt(t)), a schedule readable in the state."""
    tx, params = gradtx.adafactor(), {"w": jnp.ones(2)}
    state = tx.init(params)
    assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(1e-2)
    state = gradtx.tree.set(state, **{"2/count": 40_000 - 2})  # the next update is t = 40000
    _, state = tx.update(params, state, params)
    assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(1 / np.sqrt(40_000), rel=1e-6)


# --------------------------------------------------------------------------- convergence

# (name, factory, problem, learning rate, steps, factor); other hyperparameters are
# the defaults, except for "adafactor_factored", which factors the digits weights.
CONVERGENCE = [
    ("adafactor", gradtx.adafactor, "quadratic", None, 1000, 1e3),  # 1.1e4
    ("adafactor", gradtx.adafactor, "rosenbrock", 0.1, 1000, 8),  # 30
    ("adafactor", gradtx.adafactor, "digits", 0.1, 300, 10),  # 67
    (
        "adafactor_factored",
        lambda lr: gradtx.adafactor(lr, min_dim_size_to_factor=8),
        "digits",
        0.1,
        1000,
        100,
    ),  # 1.9e3
    ("sm3", gradtx.sm3, "quadratic", 0.1, 300, 1e6),  # 5.6e10
    ("sm3", gradtx.sm3, "rosenbrock", 0.3, 1000, 4),  # 13.5
    ("sm3", gradtx.sm3, "digits", 0.3, 300, 8),  # 31
]


@pytest.mark.parametrize("name,make,problem,lr,steps,factor", CONVERGENCE, ids=[f"{c[0]}-{c[2]}" for c in CONVERGENCE])
def test_convergence(name, make, problem, lr, steps, factor):
    run_convergence(make, lr, problem, steps, factor)


# --------------------------------------------------------------------------- edge cases

# Gradients of 1e30 overflow g^2 in float32: the statistics become +inf and the
# update 0 (guarded: Adafactor's R / mean(R) would otherwise be inf / inf = NaN).
EDGE = {
    "adafactor": lambda: gradtx.adafactor(),
    "adafactor_factored": lambda: gradtx.adafactor(min_dim_size_to_factor=3, momentum=0.9),
    "sm3": lambda: gradtx.sm3(),
}


@pytest.mark.parametrize("name", sorted(EDGE))
def test_zero_gradients_give_zero_updates(name):
    check_zero_gradients(EDGE[name])


@pytest.mark.parametrize("name", sorted(EDGE))
def test_tiny_and_huge_float32_gradients_stay_finite(name):
    check_tiny_and_huge_gradients(EDGE[name], 0.0)


def test_factored_rms_without_epsilon_gives_zero_not_nan_on_zero_rows():
    tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=0.0)
    updates, _ = tx.update(jnp.array([[0.0, 0.0], [1.0, 2.0]]), tx.init(jnp.zeros((2, 2))))
    assert updates[0].tolist() == [0.0, 0.0] and bool(jnp.all(jnp.isfinite(updates)))
