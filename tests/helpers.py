"""What the test modules share: the tables of every optimizer and transform, the step that
passes the extra arguments, the convergence problems, the edge-case and convergence checks,
the checks of ``(id, make_tx, make_ref, rtol)`` rows against their references, and the run
that the checkpoint test and its worker process resume.

tests/suites/test_properties.py enumerates ``gradtx.__all__`` and fails when a public factory
is missing from ``OPTIMIZERS`` or ``TRANSFORMS``, so a new optimizer or transform is added here.
pyproject.toml puts tests/ on ``sys.path`` (``pythonpath``), so every test module, in every
folder, imports this one as ``helpers``; the worker scripts put tests/ there themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R

# ----------------------------------------------------------------- the loss and the step


def _squares(x):
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):  # |z|^2 = re^2 + im^2, differentiable everywhere (|z| is not at 0)
        x = x.astype(jnp.complex64)
        return jnp.sum(jnp.square(x.real) + jnp.square(x.imag))
    return jnp.sum(jnp.square(x.astype(jnp.float32)))


def quadratic(params):
    """The loss the generic tests pass along: half the sum of squares (of moduli), in float32."""
    return 0.5 * sum((_squares(x) for x in jax.tree.leaves(params)), jnp.zeros((), jnp.float32))


def step(tx, grads, state, params, **extra_args):
    """``tx.update`` with the extra arguments that some transforms need (the loss, its
    gradient, the loss function under the names that line searches, Sophia and SAM's opaque
    mode read); every other transform ignores them."""
    return tx.update(
        grads,
        state,
        params,
        value=quadratic(params),
        grad=grads,
        value_fn=quadratic,
        obj_fn=quadratic,
        grad_fn=lambda p, i: jax.grad(quadratic)(p),
        **extra_args,
    )


# --------------------------------------------------------------------------- optimizers

# Every named optimizer with its default hyperparameters, plus the variants whose
# state differs (momentum, centering); tests that must hold for every optimizer
# iterate over this table.
OPTIMIZERS = {
    "sgd": lambda: gradtx.sgd(0.1),
    "sgd_momentum": lambda: gradtx.sgd(0.1, momentum=0.9),
    "sgd_nesterov": lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: gradtx.adam(),
    "adamw": lambda: gradtx.adamw(),
    "nadam": lambda: gradtx.nadam(),
    "nadamw": lambda: gradtx.nadamw(),
    "amsgrad": lambda: gradtx.amsgrad(),
    "adamax": lambda: gradtx.adamax(),
    "adamaxw": lambda: gradtx.adamaxw(),
    "rmsprop": lambda: gradtx.rmsprop(),
    "rmsprop_centered_momentum": lambda: gradtx.rmsprop(centered=True, momentum=0.9),
    "adagrad": lambda: gradtx.adagrad(),
    "adabelief": lambda: gradtx.adabelief(),
    "yogi": lambda: gradtx.yogi(),
    "radam": lambda: gradtx.radam(),
    "adan": lambda: gradtx.adan(),
    "novograd": lambda: gradtx.novograd(),
    "adadelta": lambda: gradtx.adadelta(),
    "adafactor": lambda: gradtx.adafactor(),
    "adafactor_momentum_decay": lambda: gradtx.adafactor(
        0.01, min_dim_size_to_factor=2, momentum=0.9, weight_decay_rate=1e-4
    ),
    "sm3": lambda: gradtx.sm3(),
    "sign_sgd": lambda: gradtx.sign_sgd(),
    "signum": lambda: gradtx.signum(),
    "lion": lambda: gradtx.lion(),
    "cautious_adamw": lambda: gradtx.adamw(cautious=True),
    "cautious_lion": lambda: gradtx.lion(cautious=True),
    "rprop": lambda: gradtx.rprop(),
    "lars": lambda: gradtx.lars(),
    "lamb": lambda: gradtx.lamb(),
    "fromage": lambda: gradtx.fromage(),
    "noisy_sgd": lambda: gradtx.noisy_sgd(key=0),
    "polyak_sgd": lambda: gradtx.polyak_sgd(),
    "dog": lambda: gradtx.dog(),
    "optimistic_gradient_descent": lambda: gradtx.optimistic_gradient_descent(),
    "optimistic_adam_v2": lambda: gradtx.optimistic_adam_v2(),
    "optimistic_adam": lambda: gradtx.optimistic_adam(1e-3),
    "lbfgs": lambda: gradtx.lbfgs(),
    "asgd": lambda: gradtx.asgd(),
    # the research optimizers of gradtx.contrib
    "muon": lambda: gradtx.muon(lambda t: 0.3 * 0.97**t),  # fixed-size steps: a decaying rate
    "normuon": lambda: gradtx.normuon(lambda t: 0.3 * 0.99**t),  # steps of RMS 0.2 lr: a decaying rate, summing to 30
    "schedule_free_sgd": lambda: gradtx.schedule_free_sgd(0.5),
    "schedule_free_adamw": lambda: gradtx.schedule_free_adamw(0.1),
    "schedule_free": lambda: gradtx.schedule_free(gradtx.sgd(0.1), 0.1),
    "prodigy": lambda: gradtx.prodigy(),
    "dadapt_adamw": lambda: gradtx.dadapt_adamw(),
    "ademamix": lambda: gradtx.ademamix(0.05, b3=0.99, alpha=2.0),
    "simplified_ademamix": lambda: gradtx.simplified_ademamix(0.01, b1=0.9, alpha=1.0),
    "adopt": lambda: gradtx.adopt(0.05),
    "mars": lambda: gradtx.mars(),  # MARS-AdamW on the 2-D leaves, AdamW on the others
    "mars_lion": lambda: gradtx.mars(mars_type="mars-lion", optimize_1d=True),
    "laprop": lambda: gradtx.laprop(),
    "galore": lambda: gradtx.galore(0.1, rank=2, update_proj_gap=10),
    "soap": lambda: gradtx.soap(0.01, precondition_frequency=2),  # a refresh within three steps
    # preconditioned from the second step, roots refreshed every 10 (a long run computes 10,000)
    "shampoo": lambda: gradtx.shampoo(0.1, start_preconditioning_step=1, preconditioning_compute_steps=10),
    "madgrad": lambda: gradtx.madgrad(0.1),
    "acprop": lambda: gradtx.acprop(0.05),
    "momo": lambda: gradtx.momo(),
    "momo_adam": lambda: gradtx.momo_adam(0.5),
    "sophia": lambda: gradtx.sophia(0.1, b1=0.9, gamma=0.1, update_interval=1),
    "adahessian": lambda: gradtx.adahessian(),
    "kron": lambda: gradtx.kron(lambda t: 0.1 * 0.999**t),  # whitened steps of RMS about 1: a decaying rate
    "adam_mini": lambda: gradtx.adam_mini(weight_decay=1e-4),
    "cocob": lambda: gradtx.cocob(),
    "dowg": lambda: gradtx.dowg(),
}


# --------------------------------------------------------------------------- transforms


def _ndim_at_least_1(params):
    """A mask (or freeze mask) function: the leaves with one or more dimensions."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 1, params)


def _labels_by_ndim(params):
    """A label function for ``partition``: matrices and up, vectors, scalars."""
    return jax.tree.map(lambda p: "matrix" if jnp.ndim(p) >= 2 else "vector" if jnp.ndim(p) == 1 else "scalar", params)


def _matrices(params):
    """A mask function: the 2-D leaves (the only ones ``scale_by_muon`` takes without dimension numbers)."""
    return jax.tree.map(lambda p: jnp.ndim(p) == 2, params)


def _legacy_transform():
    """An (init, update) pair whose update takes no extra arguments, for with_extra_args_support."""
    return gradtx.GradientTransformation(
        lambda params: gradtx.EmptyState(),
        lambda updates, state, params=None: (jax.tree.map(lambda u: 0.5 * u, updates), state),
    )


# Every public transform and wrapper (not the named optimizers, which are in
# OPTIMIZERS), each built with minimal arguments; a wrapper wraps a small inner
# transform. Keys start with the factory's name; a factory may have several rows.
# tests/suites/test_properties.py runs every row on generated pytrees of every dtype and
# checks that each public factory is the outermost builder of at least one row.
# ``gradtx.LookaheadParams`` rows are listed in LOOKAHEAD: their parameters are
# ``LookaheadParams.init_synced(params)``.
TRANSFORMS = {
    # base
    "identity": lambda: gradtx.identity(),
    "stateless": lambda: gradtx.stateless(lambda u, p: jax.tree.map(jnp.negative, u)),
    "set_to_zero": lambda: gradtx.set_to_zero(),
    # combine
    "chain": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.scale_by_adam(), gradtx.scale(-1e-2)),
    "named_chain": lambda: gradtx.named_chain(("adam", gradtx.scale_by_adam()), ("lr", gradtx.scale(-1e-2))),
    "masked": lambda: gradtx.masked(gradtx.scale_by_adam(), _ndim_at_least_1),
    "partition": lambda: gradtx.partition(
        {"matrix": gradtx.adam(), "vector": gradtx.sgd(0.1, momentum=0.9), "scalar": gradtx.set_to_zero()},
        _labels_by_ndim,
    ),
    "freeze": lambda: gradtx.freeze(_ndim_at_least_1),
    "selective_transform": lambda: gradtx.selective_transform(gradtx.adam(), freeze_mask=_ndim_at_least_1),
    "conditionally_mask": lambda: gradtx.conditionally_mask(gradtx.scale_by_adam(), lambda step: step % 2 == 0),
    "conditionally_transform": lambda: gradtx.conditionally_transform(
        gradtx.scale_by_adam(), lambda step: step % 2 == 1
    ),
    "with_extra_args_support": lambda: gradtx.with_extra_args_support(_legacy_transform()),
    # wrappers
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.adam(), every_k_schedule=2),
    "MultiSteps_skip_not_finite": lambda: gradtx.MultiSteps(
        gradtx.sgd(0.1), every_k_schedule=2, should_skip_update_fn=gradtx.skip_not_finite
    ),
    "apply_every": lambda: gradtx.apply_every(2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(), max_consecutive_errors=3),
    "cautious": lambda: gradtx.cautious(gradtx.sgd(0.1, momentum=0.9)),
    "lookahead": lambda: gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5),
    "flatten": lambda: gradtx.flatten(gradtx.adam()),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.adam)(learning_rate=lambda t: 1e-2 / (1 + t)),
    "monitor": lambda: gradtx.monitor(
        {"norm": gradtx.tree.norm, "norm_ema": gradtx.measure_with_ema(gradtx.tree.norm, 0.9)}
    ),
    "snapshot": lambda: gradtx.snapshot("norm", gradtx.tree.norm),
    "inject_stateful_hyperparams": lambda: gradtx.inject_stateful_hyperparams(gradtx.sgd)(
        learning_rate=gradtx.WrappedSchedule(lambda t: 1e-2 / (1 + t)), momentum=0.9
    ),
    # moments
    "trace": lambda: gradtx.trace(0.9),
    "trace_nesterov": lambda: gradtx.trace(0.9, nesterov=True),
    "ema": lambda: gradtx.ema(0.9),
    "scale_by_adam": lambda: gradtx.scale_by_adam(),
    "scale_by_amsgrad": lambda: gradtx.scale_by_amsgrad(),
    "scale_by_adamax": lambda: gradtx.scale_by_adamax(),
    "scale_by_rms": lambda: gradtx.scale_by_rms(),
    "scale_by_stddev": lambda: gradtx.scale_by_stddev(bias_correction=True),
    "scale_by_rss": lambda: gradtx.scale_by_rss(),
    # scaling
    "scale": lambda: gradtx.scale(-0.1),
    "scale_by_learning_rate": lambda: gradtx.scale_by_learning_rate(0.1),
    "scale_by_schedule": lambda: gradtx.scale_by_schedule(lambda t: 1.0 / (1 + t)),
    "reduce_on_plateau": lambda: gradtx.reduce_on_plateau(factor=0.5, patience=0),
    # clipping
    "clip": lambda: gradtx.clip(1.0),
    "clip_by_global_norm": lambda: gradtx.clip_by_global_norm(1.0),
    "clip_by_block_rms": lambda: gradtx.clip_by_block_rms(1.0),
    "adaptive_grad_clip": lambda: gradtx.adaptive_grad_clip(0.1),
    # regularizers
    "add_decayed_weights": lambda: gradtx.add_decayed_weights(1e-2),
    "add_decayed_weights_masked": lambda: gradtx.add_decayed_weights(1e-2, mask=_ndim_at_least_1),
    "centralize": lambda: gradtx.centralize(),
    "add_noise": lambda: gradtx.add_noise(0.01, 0.55, key=0),
    "keep_params_nonnegative": lambda: gradtx.keep_params_nonnegative(),
    "zero_nans": lambda: gradtx.zero_nans(),
    # adam variants, factored, sign
    "scale_by_belief": lambda: gradtx.scale_by_belief(),
    "scale_by_yogi": lambda: gradtx.scale_by_yogi(),
    "scale_by_radam": lambda: gradtx.scale_by_radam(),
    "scale_by_adan": lambda: gradtx.scale_by_adan(),
    "scale_by_novograd": lambda: gradtx.scale_by_novograd(weight_decay=1e-2),
    "scale_by_adadelta": lambda: gradtx.scale_by_adadelta(),
    "scale_by_factored_rms": lambda: gradtx.scale_by_factored_rms(min_dim_size_to_factor=1),
    "scale_by_sm3": lambda: gradtx.scale_by_sm3(),
    "scale_by_sign": lambda: gradtx.scale_by_sign(),
    "scale_by_lion": lambda: gradtx.scale_by_lion(),
    "scale_by_rprop": lambda: gradtx.scale_by_rprop(0.1),
    # layerwise, optimistic, step sizes
    "scale_by_trust_ratio": lambda: gradtx.scale_by_trust_ratio(),
    "scale_by_param_block_norm": lambda: gradtx.scale_by_param_block_norm(),
    "scale_by_param_block_rms": lambda: gradtx.scale_by_param_block_rms(),
    "normalize_by_update_norm": lambda: gradtx.normalize_by_update_norm(),
    "scale_by_optimistic_gradient": lambda: gradtx.scale_by_optimistic_gradient(),
    "scale_by_polyak": lambda: gradtx.scale_by_polyak(),
    "scale_by_distance_over_gradients": lambda: gradtx.scale_by_distance_over_gradients(),
    # line searches, L-BFGS, averaging
    "scale_by_backtracking_linesearch": lambda: gradtx.scale_by_backtracking_linesearch(4, store_grad=True),
    "scale_by_zoom_linesearch": lambda: gradtx.scale_by_zoom_linesearch(4),
    "scale_by_lbfgs": lambda: gradtx.scale_by_lbfgs(memory_size=3),
    "scale_by_asgd": lambda: gradtx.scale_by_asgd(t0=1.0),
    # the research optimizers' blocks and wrappers
    "scale_by_muon_on_matrices": lambda: gradtx.masked(gradtx.scale_by_muon(), _matrices),
    "scale_by_normuon_on_matrices": lambda: gradtx.masked(gradtx.scale_by_normuon(), _matrices),
    "scale_by_ademamix": lambda: gradtx.scale_by_ademamix(
        b3=gradtx.ademamix_b3_warmup(0.999, 10), alpha=gradtx.ademamix_alpha_warmup(5.0, 10)
    ),
    "scale_by_simplified_ademamix": lambda: gradtx.scale_by_simplified_ademamix(alpha=1.0),
    "scale_by_adopt": lambda: gradtx.scale_by_adopt(nesterov=True),
    "scale_by_mars": lambda: gradtx.scale_by_mars(optimize_1d=True),
    "scale_by_laprop": lambda: gradtx.scale_by_laprop(),
    "scale_by_galore": lambda: gradtx.scale_by_galore(rank=2, update_proj_gap=10),
    "scale_by_soap": lambda: gradtx.scale_by_soap(precondition_frequency=2, precondition_1d=True),
    "scale_by_shampoo": lambda: gradtx.scale_by_shampoo(graft_type="rmsprop", start_preconditioning_step=1),
    "split_real_and_imaginary": lambda: gradtx.split_real_and_imaginary(gradtx.adam(0.1)),
    "scale_by_madgrad": lambda: gradtx.scale_by_madgrad(),
    "scale_by_acprop": lambda: gradtx.scale_by_acprop(),
    "scale_by_sophia": lambda: gradtx.scale_by_sophia(),
    "scale_by_adahessian": lambda: gradtx.scale_by_adahessian(),
    "scale_by_kron": lambda: gradtx.scale_by_kron(preconditioner_update_probability=0.5),
    "scale_by_adam_mini": lambda: gradtx.scale_by_adam_mini(),
    "hutchinson_estimator_diag_hessian": lambda: gradtx.hutchinson_estimator_diag_hessian(),
    "normalize": lambda: gradtx.normalize(),
    "mechanize": lambda: gradtx.mechanize(gradtx.adam(0.1)),
    "scale_by_cocob": lambda: gradtx.scale_by_cocob(),
    "scale_by_dowg": lambda: gradtx.scale_by_dowg(),
    "sam": lambda: gradtx.sam(gradtx.sgd(0.1), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.01))),
    "sam_opaque": lambda: gradtx.sam(
        gradtx.sgd(0.1), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.01)), opaque_mode=True
    ),
}

# Rows of TRANSFORMS whose parameters are gradtx.LookaheadParams.
LOOKAHEAD = {"lookahead"}

# The optimizers tests/suites/test_distributed.py checks by default: one of each kind of state
# (momentum, two moments, factored moments, per-leaf trust ratios, histories and a line search, a
# PRNG key; the ZeRO-1 check adds centred RMSProp). Its slow tests check every optimizer.
REPRESENTATIVE = ["sgd_momentum", "adam", "adafactor", "lamb", "lbfgs", "noisy_sgd"]


# ------------------------------------------------------------------- convergence problems
# The fixed convergence benchmark: three problems and a runner.
#
# - ``quadratic``: f(x) = 1/2 sum_i lambda_i x_i^2, lambda log-spaced over [1, 100]
#   (condition number 100), from x = 1; minimum 0.
# - ``rosenbrock``: f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.5, 2); minimum 0 at (1, 1).
# - ``digits``: softmax regression on scikit-learn's digits (64 -> 10, pixels / 16,
#   full batch, zero initial weights); initial loss log(10).
#
# ``run_problem`` drives any gradtx optimizer through ``lax.scan`` and passes ``value``,
# ``grad`` and ``value_fn`` as extra arguments, which every transform accepts and
# only the ones that need them use.


class Problem(NamedTuple):
    name: str
    loss: Callable
    init: Callable[[], dict]


def _quadratic():
    scales = jnp.logspace(0.0, 2.0, 10)
    return Problem(
        "quadratic",
        lambda p: 0.5 * jnp.sum(scales * p["x"] ** 2),
        lambda: {"x": jnp.ones(10)},
    )


def _rosenbrock():
    return Problem(
        "rosenbrock",
        lambda p: (1.0 - p["x"]) ** 2 + 100.0 * (p["y"] - p["x"] ** 2) ** 2,
        lambda: {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)},
    )


@functools.lru_cache(maxsize=1)
def _digits_data():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return jnp.asarray(images / 16.0, jnp.float32), jnp.asarray(labels)


def _digits():
    x, y = _digits_data()

    def loss(p):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0])

    return Problem("digits", loss, lambda: {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)})


PROBLEMS = {"quadratic": _quadratic, "rosenbrock": _rosenbrock, "digits": _digits}


def run_problem(tx: gradtx.GradientTransformation, problem: str, steps: int) -> tuple[float, float, dict]:
    """Train ``steps`` steps; return (initial loss, final loss, final params)."""
    prob = PROBLEMS[problem]()
    params = prob.init()
    value_and_grad = jax.value_and_grad(prob.loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=prob.loss)
        return (gradtx.apply_updates(params, updates), state), value

    @jax.jit
    def train(params):
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    final = train(params)
    return float(prob.loss(params)), float(prob.loss(final)), final


def run_convergence(make, lr, problem, steps, factor):
    tx = make() if lr is None else make(lr)
    initial, final, params = run_problem(tx, problem, steps)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    assert final * factor <= initial, (
        f"loss {initial:.4g} -> {final:.4g}: reduced {initial / final:.3g}x, wanted {factor:g}x"
    )


# ----------------------------------------------------------------------------- edge cases

EDGE_PARAMS = {
    "scalar": jnp.asarray(0.7),
    "size_one": jnp.asarray([-1.3]),
    "matrix": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
    "zero": jnp.zeros((2, 2)),
}
EDGE_SCALES = [0.0, 1e-30, 1e30]


def check_edge_cases(make, scale, steps=3, apply=True, **extra):
    """Zero, tiny (1e-30) and huge (1e30) float32 gradients on scalar, size-1, matrix and all-zero
    leaves: every update stays finite, eagerly and under jit; so do the parameters when the
    updates are applied (``apply=False`` keeps them fixed, for directions that are not steps)."""
    for update_fn in ("eager", "jit"):
        tx = make()
        params = EDGE_PARAMS
        state = tx.init(params)
        update = jax.jit(tx.update) if update_fn == "jit" else tx.update
        for step in range(steps):
            sign = 1.0 if step % 2 == 0 else -0.5
            grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale, jnp.float32), params)  # noqa: B023 (used at once)
            updates, state = update(grads, state, params, **extra)
            for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
                assert u.dtype == jnp.float32
                assert bool(jnp.all(jnp.isfinite(u))), f"scale {scale}, step {step}, {update_fn}: {path} = {u}"
            if apply:
                params = gradtx.apply_updates(params, updates)
                assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    return updates


EDGE_UPDATE_PARAMS = {
    "w": jnp.full((3, 4), 0.5),
    "one": jnp.full((1,), -0.5),
    "s": jnp.asarray(0.25),
    "t": (jnp.asarray(2.0),),
}


def edge_updates(tx, value, steps=3, params=EDGE_UPDATE_PARAMS):
    """The updates of ``steps`` steps with every gradient equal to ``value`` (float32),
    checking along the way that updates and state stay free of NaN."""
    grads = jax.tree.map(lambda p: jnp.full(p.shape, value, jnp.float32), params)
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        updates, state = update(grads, state, params)
        for u in jax.tree.leaves(updates):
            assert u.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(u))), u
        assert not any(
            bool(jnp.any(jnp.isnan(x))) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)
        )
    return updates


def assert_descends_or_stays(updates, value):
    for u in jax.tree.leaves(updates):
        assert bool(jnp.all((u == 0) | (jnp.sign(u) == -np.sign(value)))), u


def check_zero_gradients(make):
    for u in jax.tree.leaves(edge_updates(make(), 0.0, steps=4)):
        np.testing.assert_array_equal(u, 0.0)


def check_tiny_and_huge_gradients(make, huge_step):
    """Gradients of +-1e-30 move against the gradient (or not at all); gradients
    of 1e30 give steps of size ``huge_step``, against the gradient."""
    for value in [1e-30, -1e-30]:
        assert_descends_or_stays(edge_updates(make(), value), value)
    huge = edge_updates(make(), 1e30)
    assert_descends_or_stays(huge, 1e30)
    for u in jax.tree.leaves(huge):
        np.testing.assert_allclose(np.abs(np.asarray(u, np.float64)), huge_step, rtol=1e-5)


# --------------------------------------------------------------- rows against a reference
# The table format of tests/optimizers/test_adam_variants.py, which test_layerwise.py (NovoGrad)
# and test_rmsprop.py (AdaDelta) share: rows ``(id, make_tx, make_ref, float32 rtol or None for
# references.RTOL)``, where ``make_tx`` builds the gradtx transform and ``make_ref`` its NumPy
# reference.


def reference_rows(cases):
    """The rows as pytest params of ``make_tx, make_ref, f32_rtol``, each with its id."""
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


def check_reference_row(make_tx, make_ref, f32_rtol, dtype, mode):
    """One row, 12 steps on the nested test tree against its reference; returns the reference."""
    rtol = f32_rtol if dtype == "float32" else None
    return R.run_against_reference(make_tx(), make_ref(), dtype, mode, rtol=rtol)


def check_none_leaves_and_zero_gradients(cases, mode):
    """The ``scale_by*`` rows, in float32, on a tree with ``None`` leaves and gradients that are
    zero for the first 2 of 4 steps, against their references."""
    for make_tx, make_ref, _ in [c[1:] for c in cases if c[0].startswith("scale_by")]:
        R.run_against_reference(
            make_tx(), make_ref(), "float32", mode, steps=4, trees=(R.none_param_tree, R.none_grad_trees), zero_until=2
        )


# ------------------------------------------------------------------------ a run to resume
# What tests/suites/test_checkpoint.py and its worker process (checkpoint_worker.py) share:
# the run, step by step.

RESUME_PARAMS = {
    "dense": {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)},
    "scale": jnp.asarray(1.5),
}
STOP_AT, TOTAL_STEPS = 4, 9

RESUME_EXTRA = {
    # a schedule half-way through and gradient accumulation mid-cycle
    "warmup_cosine_adamw": lambda: gradtx.adamw(gradtx.warmup_cosine_decay_schedule(0.0, 0.1, 3, 20)),
    "multisteps_adam": lambda: gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=3).gradient_transformation(),
}


def build_resumable(name):
    return (OPTIMIZERS.get(name) or RESUME_EXTRA[name])()


def resume_loss(params):
    return jnp.sum(jnp.sin(params["dense"]["w"]) ** 2) + jnp.sum((params["dense"]["b"] - 1) ** 2) + params["scale"] ** 4


@functools.cache
def _compiled_step(tx):
    return jax.jit(lambda p, s: _resume_step(tx, p, s))


def run_steps(tx, params, state, start, stop):
    """Steps ``start`` to ``stop`` of the resume problem; one compiled step per optimizer object."""
    step = _compiled_step(tx)
    for _ in range(start, stop):
        params, state = step(params, state)
    return params, state


def _resume_step(tx, params, state):
    value, grads = jax.value_and_grad(resume_loss)(params)
    updates, state = tx.update(
        grads,
        state,
        params,
        value=value,
        grad=grads,
        value_fn=resume_loss,
        obj_fn=resume_loss,
        grad_fn=lambda p, i: jax.grad(resume_loss)(p),
    )
    return gradtx.apply_updates(params, updates), state
