"""RMSProp (plain and centred), AdaGrad, AdaDelta, and their scale_by_* blocks (scale_by_rms,
scale_by_stddev, scale_by_rss, scale_by_adadelta), step by step against independent NumPy references.

Each block is used on its own as the optimizer (``params += updates``), so its raw output is what
gets compared; each named optimizer runs as it is. Both run for 12 steps on a nested tree (dicts,
a list, a tuple, a 0-d and a 4-d leaf), eagerly and under ``jax.jit``, in float32 and float64, and
their params are compared after every step with the references of ``references/rmsprop.py``
(written from the papers' equations, not from any library). RMSProp, AdaGrad and their blocks
also get the bfloat16, empty-tree and ``None``-leaf checks. AdaDelta's rows use the
``(id, make_tx, make_ref, rtol)`` format of test_adam_variants.py and its checks from
``helpers``: its blocks also run on ``None`` leaves and zero gradients; its default step must
descend; its zero, tiny and huge gradients get the exact checks (zero updates, descent, the size
of the step); and it runs on the convergence benchmark.
"""

import jax.numpy as jnp
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
from references.adam_variants import lr_ref
from references.rmsprop import AdaDelta

DTYPES = ["float32", "float64"]
MODES = R.MODES


# ------------------------------------------------------------------ the scale_by_* blocks

# (transform, id, kwargs, float32 tolerance or None for the default)
BLOCK_CASES = [
    ("scale_by_rms", "default", dict(), None),
    ("scale_by_rms", "initial_scale", dict(decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("scale_by_rms", "eps_outside_sqrt", dict(decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    ("scale_by_rms", "bias_correction", dict(decay=0.8, eps=1e-3, bias_correction=True), None),
    (
        "scale_by_rms",
        "all",
        dict(decay=0.95, eps=1e-2, initial_scale=0.2, eps_in_sqrt=False, bias_correction=True),
        None,
    ),
    ("scale_by_stddev", "default", dict(), None),
    ("scale_by_stddev", "initial_scale", dict(decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("scale_by_stddev", "eps_outside_sqrt", dict(decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    # With bias correction the first step has v_hat - m_hat^2 = g^2 - g^2 = 0, a
    # difference of two rounded numbers: in float32 (XLA may also fuse it into
    # an FMA) it is noise of ~6e-8 * g^2, up to ~1e-2 for the largest leaf here,
    # against eps = 1. So float32 only gets a loose check; float64 a tight one.
    ("scale_by_stddev", "bias_correction", dict(decay=0.9, eps=1.0, bias_correction=True), 1e-2),
    (
        "scale_by_stddev",
        "all_but_bias_correction",
        dict(decay=0.6, eps=1e-2, initial_scale=0.3, eps_in_sqrt=False),
        None,
    ),
    ("scale_by_rss", "default", dict(), None),
    ("scale_by_rss", "custom", dict(initial_accumulator_value=0.5, eps=1e-4), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(BLOCK_CASES))
def test_block_matches_reference(name, kwargs, f32_tol, dtype, mode):
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rss_zero_accumulator_gives_zero_update(dtype, mode):
    """AdaGrad with no initial accumulator and eps=0: where the sum of squares
    is still 0 (gradient exactly 0 so far) the update is 0, not 0/0 = nan."""
    tx = gradtx.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    ref = R.RSS(initial_accumulator_value=0.0, eps=0.0)
    R.run_against_reference(tx, ref, dtype, mode, zero_until=4)


# One representative per block for the structural checks below.
BLOCKS = {
    "scale_by_rms": dict(),
    "scale_by_stddev": dict(),
    "scale_by_rss": dict(),
}


def _make(key):
    name = key.split("-")[0]
    return name, getattr(gradtx, name)(**BLOCKS[key]), R.REF_TRANSFORMS[name](**BLOCKS[key])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_bfloat16_keeps_dtypes(key, mode):
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_bfloat16_stays_finite(key, mode):
    """With bfloat16 params the work must not overflow or divide by zero (a
    hyperparameter such as b2 = 0.999 rounds to 1.0 in bfloat16)."""
    _, tx, _ = _make(key)
    R.check_bfloat16(tx, mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_empty_tree(key, mode):
    _, tx, _ = _make(key)
    R.check_empty_tree(tx, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", list(BLOCKS))
def test_block_none_leaf(key, mode):
    _, tx, ref = _make(key)
    R.check_none_leaf(tx, ref, mode)


# ------------------------------------------------------------------ the named optimizers


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.1 / (1 + step)


# (optimizer, id, kwargs, float32 tolerance or None for the default)
CASES = [
    ("rmsprop", "default", dict(), None),
    ("rmsprop", "custom", dict(learning_rate=0.02, decay=0.8, eps=1e-3, initial_scale=0.5), None),
    ("rmsprop", "eps_outside_sqrt", dict(learning_rate=0.02, decay=0.7, eps=1e-2, eps_in_sqrt=False), None),
    ("rmsprop", "bias_correction", dict(learning_rate=0.02, decay=0.8, eps=1e-3, bias_correction=True), None),
    ("rmsprop", "momentum", dict(learning_rate=0.02, momentum=0.9), None),
    ("rmsprop", "nesterov", dict(learning_rate=0.02, decay=0.8, momentum=0.8, nesterov=True), None),
    ("rmsprop", "centered", dict(learning_rate=0.02, centered=True), None),
    ("rmsprop", "centered_momentum", dict(learning_rate=0.02, decay=0.8, eps=1e-3, centered=True, momentum=0.9), None),
    (
        "rmsprop",
        "centered_nesterov_schedule",
        dict(
            learning_rate=schedule,
            decay=0.7,
            eps=1e-2,
            eps_in_sqrt=False,
            initial_scale=0.3,
            centered=True,
            momentum=0.7,
            nesterov=True,
        ),
        None,
    ),
    # Centred with bias correction: the first step has v_hat - m_hat^2 = 0 up to
    # float32 rounding noise (~6e-8 g^2, up to ~1e-2 here) against eps = 1, so
    # float32 gets a loose check and float64 the tight one (see the blocks above).
    (
        "rmsprop",
        "centered_bias_correction",
        dict(learning_rate=0.02, eps=1.0, centered=True, bias_correction=True, momentum=0.9),
        1e-2,
    ),
    ("adagrad", "default", dict(), None),
    ("adagrad", "custom", dict(learning_rate=0.1, initial_accumulator_value=0.5, eps=1e-4), None),
    ("adagrad", "schedule", dict(learning_rate=schedule, initial_accumulator_value=0.0, eps=1e-6), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,f32_tol",
    [pytest.param(n, kw, tol, id=f"{n}-{label}") for n, label, kw, tol in CASES],
)
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    tx = getattr(gradtx, name)(**kwargs)
    ref = R.REF_OPTIMIZERS[name](**kwargs)
    rtol = f32_tol if (dtype == "float32" and f32_tol) else None
    R.run_against_reference(tx, ref, dtype, mode, rtol=rtol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_zero_accumulator(dtype, mode):
    """No initial accumulator, eps = 0 and gradients that are exactly 0 for a
    while: those entries get a 0 update (not 0/0 = nan)."""
    kwargs = dict(learning_rate=0.1, initial_accumulator_value=0.0, eps=0.0)
    R.run_against_reference(gradtx.adagrad(**kwargs), R.ref_adagrad(**kwargs), dtype, mode, zero_until=4)


# One representative configuration per optimizer for the structural checks,
# with enough learning rate that every part of it acts.
BASIC = {
    "rmsprop": dict(learning_rate=0.02, centered=True, momentum=0.9),
    "adagrad": dict(learning_rate=0.1),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_keeps_dtypes(name, mode):
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_stays_finite(name, mode):
    """With bfloat16 params the work must not overflow or divide by zero (a
    hyperparameter such as b2 = 0.999 rounds to 1.0 in bfloat16)."""
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_empty_tree(name, mode):
    R.check_empty_tree(getattr(gradtx, name)(**BASIC[name]), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_none_leaf(name, mode):
    """``{"a": array, "b": None}``: "b" stays None, "a" follows the reference."""
    R.check_none_leaf(getattr(gradtx, name)(**BASIC[name]), R.REF_OPTIMIZERS[name](**BASIC[name]), mode)


# ------------------------------------------------------------------ AdaDelta

# (id, gradtx transform, reference, float32 rtol or None for references.RTOL), the rows of
# test_adam_variants.py; the "scale_by*" rows also run on None leaves.
ADADELTA_CASES = [
    ("scale_by_adadelta", lambda: gradtx.scale_by_adadelta(), lambda: AdaDelta(), None),
    ("scale_by_adadelta-custom", lambda: gradtx.scale_by_adadelta(0.5, 1e-3), lambda: AdaDelta(0.5, 1e-3), None),
    (
        "adadelta-default",
        lambda: gradtx.adadelta(),
        lambda: R.Chain(R.AddDecayedWeights(0.0), AdaDelta(), lr_ref(1.0)),
        None,
    ),
    (
        "adadelta-decay-mask",
        lambda: gradtx.adadelta(2.0, rho=0.8, weight_decay=0.05, weight_decay_mask=R.MASK_TREE),
        lambda: R.Chain(R.AddDecayedWeights(0.05, R.MASK_TREE), AdaDelta(0.8), lr_ref(2.0)),
        None,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make_tx,make_ref,f32_rtol", reference_rows(ADADELTA_CASES))
def test_adadelta_matches_reference(make_tx, make_ref, f32_rtol, dtype, mode):
    check_reference_row(make_tx, make_ref, f32_rtol, dtype, mode)


@pytest.mark.parametrize("mode", MODES)
def test_adadelta_none_leaves_and_zero_gradients_against_the_references(mode):
    check_none_leaves_and_zero_gradients(ADADELTA_CASES, mode)


def test_adadelta_default_descends():
    """Optax's learning_rate=None leaves the sign unflipped; gradtx's default is a descent step."""
    params = jnp.ones(3)
    updates, _ = gradtx.adadelta().update(jnp.full(3, 2.0), gradtx.adadelta().init(params), params)
    assert bool(jnp.all(updates < 0))


# AdaDelta with its defaults (weight decay off, so that a zero gradient must give a zero
# update). For float32 gradients of 1e30 the squares overflow float32, the second moments
# become +inf and the update, after 3 steps, is 0: no float32 state can hold g^2 = 1e60, so
# a faithful form cannot do better.
def test_adadelta_zero_gradients_give_zero_updates():
    check_zero_gradients(lambda: gradtx.adadelta())


def test_adadelta_tiny_and_huge_float32_gradients_stay_finite():
    check_tiny_and_huge_gradients(lambda: gradtx.adadelta(), 0.0)


# (optimizer, problem, learning rate or None for the default, steps, factor by which the loss
# must drop), checked by helpers.run_convergence (the parameters also stay finite); every other
# hyperparameter is the documented default. The factors are met with a margin of about 10x in
# loss ratio (3x where the achieved factor is modest); the achieved factors are in the comments.
ADADELTA_CONVERGENCE = [
    ("adadelta", "quadratic", None, 1000, 1e3),  # 7.1e3
    ("adadelta", "rosenbrock", None, 1000, 10),  # 42
    ("adadelta", "digits", 10.0, 300, 10),  # 37
]


@pytest.mark.parametrize(
    "name,problem,lr,steps,factor", ADADELTA_CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in ADADELTA_CONVERGENCE]
)
def test_adadelta_convergence(name, problem, lr, steps, factor):
    run_convergence(getattr(gradtx, name), lr, problem, steps, factor)
