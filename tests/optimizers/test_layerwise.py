"""LARS, LAMB, Fromage and NovoGrad.

Each is run for 12 steps against an independent NumPy reference written from its paper
(``references/layerwise.py``), on the nested tree of ``references`` (dicts, a list, a tuple, a
0-d and a 4-d leaf), eagerly and under ``jax.jit``, in float32 and float64; then on zero, tiny
and huge gradients and on the convergence benchmark. NovoGrad's rows use the
``(id, make_tx, make_ref, rtol)`` format of test_adam_variants.py and its checks from
``helpers``: its blocks also run on ``None`` leaves and zero gradients, and its zero, tiny and
huge gradients get the exact checks (zero updates, descent, the size of the step). Its weight
decay and mask and its hyperparameter names are tested too. The layer-wise blocks LARS, LAMB
and Fromage are built from (the trust ratio and its kin) are tested in
tests/transforms/test_block_scaling.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import (
    EDGE_SCALES,
    check_edge_cases,
    check_none_leaves_and_zero_gradients,
    check_reference_row,
    check_tiny_and_huge_gradients,
    check_zero_gradients,
    reference_rows,
    run_convergence,
    run_problem,
)
from references.adam_variants import lr_ref
from references.layerwise import LAMB, LARS, Fromage, NovoGrad

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]


# ------------------------------------------------------------ step by step agreement

decay_schedule = lambda t: 0.01 * (1.0 + t)  # noqa: E731
lr_schedule = lambda t: 0.5 / (1.0 + t)  # noqa: E731

CASES = [
    ("lars", "default", dict(), LARS),
    (
        "lars",
        "decay_masks",
        dict(
            learning_rate=0.5,
            weight_decay=0.1,
            weight_decay_mask=R.MASK_TREE,
            trust_ratio_mask=R.mask_matrices,
            trust_coefficient=0.01,
            eps=1e-3,
        ),
        LARS,
    ),
    (
        "lars",
        "nesterov_schedules",
        dict(learning_rate=lr_schedule, weight_decay=decay_schedule, momentum=0.8, nesterov=True),
        LARS,
    ),
    ("lars", "no_trust_ratio", dict(trust_ratio_mask=False, weight_decay=0.1, weight_decay_mask=False), LARS),
    ("lamb", "default", dict(), LAMB),
    (
        "lamb",
        "custom",
        dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-3, eps_root=1e-4, weight_decay=0.1, mask=R.MASK_TREE),
        LAMB,
    ),
    ("lamb", "schedules", dict(learning_rate=lr_schedule, weight_decay=decay_schedule, mask=R.mask_matrices), LAMB),
    ("fromage", "default", dict(), Fromage),
    ("fromage", "schedule", dict(learning_rate=lambda t: 0.3 / (1.0 + t), min_norm=0.05), Fromage),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref", [pytest.param(n, kw, ref, id=f"{n}-{label}") for n, label, kw, ref in CASES]
)
def test_matches_reference(name, kwargs, ref, dtype, mode):
    tx, ref = getattr(gradtx, name)(**kwargs), ref(**kwargs)
    R.run_against_reference(tx, ref, dtype, mode)


# NovoGrad, in the rows of test_adam_variants.py: (id, gradtx transform, reference, float32
# rtol or None for references.RTOL); the "scale_by*" rows also run on None leaves.
NOVOGRAD_CASES = [
    ("scale_by_novograd", lambda: gradtx.scale_by_novograd(), lambda: NovoGrad(), None),
    (
        "scale_by_novograd-decay",
        lambda: gradtx.scale_by_novograd(0.8, 0.6, 1e-3, 1e-4, weight_decay=0.1),
        lambda: NovoGrad(0.8, 0.6, 1e-3, 1e-4, weight_decay=0.1),
        None,
    ),
    (
        "novograd-decay-mask-schedule",
        lambda: gradtx.novograd(0.01, weight_decay=lambda t: 0.2 / (1 + t), mask=R.mask_matrices),
        lambda: R.Chain(NovoGrad(eps=1e-6, weight_decay=lambda t: 0.2 / (1 + t), mask=R.mask_matrices), lr_ref(0.01)),
        None,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make_tx,make_ref,f32_rtol", reference_rows(NOVOGRAD_CASES))
def test_novograd_matches_reference(make_tx, make_ref, f32_rtol, dtype, mode):
    check_reference_row(make_tx, make_ref, f32_rtol, dtype, mode)


@pytest.mark.parametrize("mode", MODES)
def test_novograd_none_leaves_and_zero_gradients_against_the_references(mode):
    check_none_leaves_and_zero_gradients(NOVOGRAD_CASES, mode)


def test_novograd_needs_params_for_weight_decay_and_masks_leaves():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = gradtx.novograd(1.0, weight_decay=0.5, mask={"w": True, "b": False})
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(grads, tx.init(params))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5)
    np.testing.assert_array_equal(updates["b"], 0.0)
    # without decay, the parameters are optional
    plain = gradtx.novograd()
    plain.update(grads, plain.init(params))


def test_fromage_keeps_the_param_norm_bounded():
    """Fromage's step is orthogonal-ish and shrunk by 1/sqrt(1+eta^2): norms cannot blow up."""
    tx = gradtx.fromage(0.1)
    params = {"w": jnp.ones((4, 4))}
    state = tx.init(params)
    for _ in range(50):
        u, state = tx.update({"w": -params["w"]}, state, params)  # the gradient pushes the norm up
        params = gradtx.apply_updates(params, u)
    # |W| grows by at most (1 + eta) / sqrt(1 + eta^2) per step
    assert float(jnp.linalg.norm(params["w"])) <= 4.0 * (1.1 / np.sqrt(1.01)) ** 50 * (1 + 1e-5)


def test_hyperparameters_are_readable_and_validated():
    state = gradtx.lars(0.5, weight_decay=1e-4).init({"w": jnp.ones(2)})
    assert gradtx.hyperparams(state) == {
        "weight_decay": 1e-4,
        "min_norm": 0.0,
        "trust_coefficient": 0.001,
        "eps": 0.0,
        "learning_rate": 0.5,
        "momentum": 0.9,
    }
    lamb_names = set(gradtx.hyperparams(gradtx.lamb().init({"w": jnp.ones(2)})))
    assert lamb_names >= {"b1", "b2", "0/eps", "2/eps", "weight_decay", "trust_coefficient", "learning_rate"}
    assert gradtx.hyperparams(gradtx.fromage().init(jnp.ones(2)))["learning_rate"] == 0.01
    for build, name in [
        (lambda: gradtx.scale_by_trust_ratio(min_norm=-1.0), "min_norm"),
        (lambda: gradtx.scale_by_trust_ratio(eps=-1.0), "eps"),
        (lambda: gradtx.scale_by_param_block_norm(-1.0), "min_scale"),
        (lambda: gradtx.normalize_by_update_norm(eps=-1.0), "eps"),
        (lambda: gradtx.lars(-1.0), "learning_rate"),
        (lambda: gradtx.lamb(b1=1.0), "b1"),
        (lambda: gradtx.fromage(-0.1), "learning_rate"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be in"):
            build()


def test_novograd_hyperparameters_read_back_under_its_argument_names():
    params = {"w": jnp.ones(2)}
    assert gradtx.hyperparams(gradtx.novograd().init(params)) == {
        "b1": 0.9,
        "b2": 0.25,
        "eps": 1e-6,
        "eps_root": 0.0,
        "weight_decay": 0.0,
        "learning_rate": 1e-3,
    }


TRANSFORMS = {
    "lars": lambda: gradtx.lars(weight_decay=0.1),
    "lamb": lambda: gradtx.lamb(weight_decay=0.1),
    "fromage": lambda: gradtx.fromage(),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    direction = name.startswith(("scale_by", "normalize"))
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=not direction)
    if scale == 0.0 and direction:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates)), "a zero gradient must give a zero update"


# NovoGrad with its defaults (weight decay off, so that a zero gradient must give a zero
# update). For float32 gradients of 1e30 the squares overflow float32, the per-leaf second
# moments become +inf and the update, after 3 steps, is 0: no float32 state can hold
# g^2 = 1e60, so a faithful form cannot do better.
def test_novograd_zero_gradients_give_zero_updates():
    check_zero_gradients(lambda: gradtx.novograd())


def test_novograd_tiny_and_huge_float32_gradients_stay_finite():
    check_tiny_and_huge_gradients(lambda: gradtx.novograd(), 0.0)


# ------------------------------------------------------------------ convergence

# (optimizer, problem, learning rate, steps, factor): with every other argument at
# its default, the loss must drop by at least `factor` within `steps` steps. The
# factors reached (CPU, float32) are noted; the ones required leave a margin.
CONVERGENCE = [
    ("lars", "quadratic", 3.0, 200, 1e5),  # reached 3.5e6
    ("lars", "rosenbrock", 10.0, 2000, 100.0),  # reached 730
    ("lars", "digits", 3.0, 200, 100.0),  # reached 502
    ("lamb", "quadratic", 0.03, 200, 1e4),  # reached 2.0e5
    # Rosenbrock's parameters are scalars: a per-leaf trust ratio makes each step
    # lr * |x|, so x approaches 0 geometrically and cannot cross it; the loss
    # tends to (1 - 0)^2 = 1 from 12.5, a factor of 12.5 at most.
    ("lamb", "rosenbrock", 0.03, 2000, 10.0),  # reached 12.5
    ("lamb", "digits", 0.03, 200, 10.0),  # reached 46
    ("fromage", "quadratic", 0.03, 200, 1e4),  # reached 6.6e5
    ("fromage", "rosenbrock", 0.1, 2000, 5.0),  # reached 23
    ("fromage", "digits", 0.1, 200, 2.5),  # reached 5.4 (zero init: Fromage's steps scale with |W|)
]


@pytest.mark.parametrize("name,problem,lr,steps,factor", CONVERGENCE)
def test_convergence(name, problem, lr, steps, factor):
    initial, final, _ = run_problem(getattr(gradtx, name)(lr), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)


# NovoGrad, in the format of test_adam_variants.py and checked as there (helpers.run_convergence:
# the parameters stay finite and the loss drops by `factor`): (optimizer, problem, learning rate,
# steps, factor), every other hyperparameter the documented default; the factors are met with a
# margin of about 10x in loss ratio, and the achieved factors are in the comments.
NOVOGRAD_CONVERGENCE = [
    ("novograd", "quadratic", 1e-2, 300, 1e4),  # 1.1e5
    ("novograd", "rosenbrock", 1e-3, 1000, 1e3),  # 2.9e4
    ("novograd", "digits", 3e-2, 300, 50),  # 400
]


@pytest.mark.parametrize(
    "name,problem,lr,steps,factor", NOVOGRAD_CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in NOVOGRAD_CONVERGENCE]
)
def test_novograd_convergence(name, problem, lr, steps, factor):
    run_convergence(getattr(gradtx, name), lr, problem, steps, factor)
