"""AdaBelief, Yogi, RAdam and Adan.

Each is run step by step for 12 steps against an independent NumPy reference
written from its paper (``references/adam_variants.py``), on the nested tree of
``references`` (dicts, a list, a tuple, a 0-d and a 4-d leaf), eagerly and under
``jax.jit``, in float32 and float64; then on the convergence benchmark; then on
gradients that are zero, tiny or huge, with the checks of ``helpers.py`` that
the other optimizer families share. NovoGrad's tests are in test_layerwise.py,
AdaDelta's in test_rmsprop.py, next to the modules that define them.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import (
    check_none_leaves_and_zero_gradients,
    check_reference_row,
    check_tiny_and_huge_gradients,
    check_zero_gradients,
    reference_rows,
    run_convergence,
)
from references.adam_variants import Adan, Belief, RAdam, Yogi, lr_ref

# (id, gradtx transform, reference, float32 rtol or None for references.RTOL)
CASES = [
    ("scale_by_belief", lambda: gradtx.scale_by_belief(), lambda: Belief(), None),
    (
        "scale_by_belief-custom",
        lambda: gradtx.scale_by_belief(0.8, 0.99, 1e-3, 1e-4),
        lambda: Belief(0.8, 0.99, 1e-3, 1e-4),
        None,
    ),
    (
        "scale_by_belief-nesterov",
        lambda: gradtx.scale_by_belief(0.7, 0.95, nesterov=True),
        lambda: Belief(0.7, 0.95, nesterov=True),
        None,
    ),
    (
        "adabelief-schedule",
        lambda: gradtx.adabelief(lambda t: 0.05 / (1 + t), b2=0.99),
        lambda: R.Chain(Belief(b2=0.99), lr_ref(lambda t: 0.05 / (1 + t))),
        None,
    ),
    ("scale_by_yogi", lambda: gradtx.scale_by_yogi(), lambda: Yogi(), None),
    (
        "scale_by_yogi-custom",
        lambda: gradtx.scale_by_yogi(0.8, 0.9, 1e-2, 1e-4, 0.5),
        lambda: Yogi(0.8, 0.9, 1e-2, 1e-4, 0.5),
        None,
    ),
    ("yogi", lambda: gradtx.yogi(0.05), lambda: R.Chain(Yogi(), lr_ref(0.05)), None),
    ("scale_by_radam", lambda: gradtx.scale_by_radam(), lambda: RAdam(), None),
    (
        "scale_by_radam-custom",
        lambda: gradtx.scale_by_radam(0.8, 0.9, 1e-3, 1e-4, threshold=4.5),
        lambda: RAdam(0.8, 0.9, 1e-3, 1e-4, threshold=4.5),
        None,
    ),
    (
        "scale_by_radam-nesterov",
        lambda: gradtx.scale_by_radam(b2=0.99, nesterov=True),
        lambda: RAdam(b2=0.99, nesterov=True),
        None,
    ),
    ("radam", lambda: gradtx.radam(0.01), lambda: R.Chain(RAdam(), lr_ref(0.01)), None),
    ("scale_by_adan", lambda: gradtx.scale_by_adan(), lambda: Adan(), None),
    (
        "scale_by_adan-custom",
        lambda: gradtx.scale_by_adan(0.9, 0.8, 0.95, 1e-3, 1e-4),
        lambda: Adan(0.9, 0.8, 0.95, 1e-3, 1e-4),
        None,
    ),
    (
        "adan-decay-mask-schedule",
        lambda: gradtx.adan(0.02, weight_decay=lambda t: 0.5 / (1 + t), mask=R.MASK_TREE),
        lambda: R.Chain(Adan(eps_root=1e-8), R.AddDecayedWeights(lambda t: 0.5 / (1 + t), R.MASK_TREE), lr_ref(0.02)),
        None,
    ),
]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_tx,make_ref,f32_rtol", reference_rows(CASES))
def test_matches_reference(make_tx, make_ref, f32_rtol, dtype, mode):
    ref = check_reference_row(make_tx, make_ref, f32_rtol, dtype, mode)
    if isinstance(ref, RAdam):
        assert ref.branches == {False, True}, "both the SGD and the rectified phase must have been exercised"
    if isinstance(ref, Yogi):
        assert ref.v_went_down


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_none_leaves_and_zero_gradients_against_the_references(mode):
    check_none_leaves_and_zero_gradients(CASES, mode)


def test_radam_rho_is_exact_in_float32():
    """rho_5 = 4.996 for b2 = 0.999: the naive float32 formula is off by ~1e-2, gradtx's form by ~1e-6."""
    from gradtx.optimizers.adam_variants import _sma_length

    for b2 in [0.999, 0.99, 0.9, 0.5, 0.9999]:
        b = float(np.float32(b2))
        for t in [1, 2, 5, 6, 12, 100, 1000, 10**5, 2**31 - 1]:
            want = 2 / (1 - b) - 1 - 2 * t * b**t / (1 - b**t)
            _, got = _sma_length(jnp.float32(b2), jnp.asarray(t, jnp.int32))
            assert abs(float(got) - want) <= 2e-6 * abs(want), (b2, t, float(got), want)


def test_radam_refuses_an_intractable_threshold():
    with pytest.raises(ValueError, match="threshold must be in"):
        gradtx.radam(threshold=3.0)


def test_hyperparameters_read_back_under_the_optimizers_argument_names():
    params = {"w": jnp.ones(2)}
    assert gradtx.hyperparams(gradtx.adan(weight_decay=0.1).init(params)) == {
        "b1": 0.98,
        "b2": 0.92,
        "b3": 0.99,
        "eps": 1e-8,
        "eps_root": 1e-8,
        "weight_decay": 0.1,
        "learning_rate": 1e-3,
    }
    assert gradtx.hyperparams(gradtx.radam().init(params))["threshold"] == 5.0


# --------------------------------------------------------------------------- convergence

# (optimizer, problem, learning rate, steps, factor by which the loss must drop);
# every other hyperparameter is the documented default. The factors are met with
# a margin of about 10x in loss ratio (3x where the achieved factor is modest);
# the achieved factors are in the comments.
CONVERGENCE = [
    ("adabelief", "quadratic", 1e-2, 300, 1e6),  # 1.3e13
    ("adabelief", "rosenbrock", 0.1, 1000, 1e4),  # 3.4e7
    ("adabelief", "digits", 0.1, 300, 20),  # 128
    ("yogi", "quadratic", 1e-2, 300, 1e5),  # 4.2e6
    ("yogi", "rosenbrock", 0.1, 1000, 1e4),  # 5.3e5
    ("yogi", "digits", 0.1, 300, 10),  # 67
    ("radam", "quadratic", 3e-2, 1000, 1e8),  # 1.6e39
    ("radam", "rosenbrock", 1e-2, 2000, 10),  # 46 (larger rates diverge in the SGD phase)
    ("radam", "digits", 0.1, 1000, 30),  # 128
    ("adan", "quadratic", 0.1, 300, 1e6),  # 5.9e9
    ("adan", "rosenbrock", 0.1, 300, 100),  # 1.1e3
    ("adan", "digits", 0.1, 300, 50),  # 238
]


@pytest.mark.parametrize("name,problem,lr,steps,factor", CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in CONVERGENCE])
def test_convergence(name, problem, lr, steps, factor):
    run_convergence(getattr(gradtx, name), lr, problem, steps, factor)


# --------------------------------------------------------------------------- edge cases

# Optimizers with their defaults (weight decay off, so that a zero gradient must
# give a zero update), and the size of their update, after 3 steps, for float32
# gradients of 1e30: their squares overflow float32, the second moments become
# +inf and the update is 0 -- no float32 state can hold g^2 = 1e60, so none of
# these methods can do better in a faithful form. RAdam's first steps are
# momentum SGD, whose update -lr * m_hat = -1e27 is finite.
EDGE_OPTIMIZERS = {
    "adabelief": (lambda: gradtx.adabelief(), 0.0),
    "yogi": (lambda: gradtx.yogi(), 0.0),
    "radam": (lambda: gradtx.radam(), 1e-3 * 1e30),
    "adan": (lambda: gradtx.adan(), 0.0),
}


@pytest.mark.parametrize("name", sorted(EDGE_OPTIMIZERS))
def test_zero_gradients_give_zero_updates(name):
    check_zero_gradients(EDGE_OPTIMIZERS[name][0])


@pytest.mark.parametrize("name", sorted(EDGE_OPTIMIZERS))
def test_tiny_and_huge_float32_gradients_stay_finite(name):
    check_tiny_and_huge_gradients(*EDGE_OPTIMIZERS[name])
