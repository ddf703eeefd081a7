"""Shared fixtures: every public optimizer (``OPTIMIZERS``) and every public transform and
wrapper (``TRANSFORMS``), built with their defaults or minimal arguments.

tests/test_properties.py enumerates ``gradtx.__all__`` and fails when a public factory
is missing from these tables, so a new optimizer or transform is added here."""

import jax
import jax.numpy as jnp

import gradtx


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
    gradient and the loss function); every other transform ignores them."""
    return tx.update(grads, state, params, value=quadratic(params), grad=grads, value_fn=quadratic, **extra_args)

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
    # --- issue 3, helper A (adam_variants, factored, sign): add entries below ---
    "adabelief": lambda: gradtx.adabelief(),
    "yogi": lambda: gradtx.yogi(),
    "radam": lambda: gradtx.radam(),
    "adan": lambda: gradtx.adan(),
    "novograd": lambda: gradtx.novograd(),
    "adadelta": lambda: gradtx.adadelta(),
    "adafactor": lambda: gradtx.adafactor(),
    "adafactor_momentum_decay": lambda: gradtx.adafactor(0.01, min_dim_size_to_factor=2, momentum=0.9, weight_decay_rate=1e-4),
    "sm3": lambda: gradtx.sm3(),
    "sign_sgd": lambda: gradtx.sign_sgd(),
    "signum": lambda: gradtx.signum(),
    "lion": lambda: gradtx.lion(),
    "rprop": lambda: gradtx.rprop(),
    # --- issue 3, helper B (layerwise, optimistic, step_size, regularizers): add entries below ---
    "lars": lambda: gradtx.lars(),
    "lamb": lambda: gradtx.lamb(),
    "fromage": lambda: gradtx.fromage(),
    "noisy_sgd": lambda: gradtx.noisy_sgd(key=0),
    "polyak_sgd": lambda: gradtx.polyak_sgd(),
    "dog": lambda: gradtx.dog(),
    "optimistic_gradient_descent": lambda: gradtx.optimistic_gradient_descent(),
    "optimistic_adam_v2": lambda: gradtx.optimistic_adam_v2(),
    # --- issue 3, helper C (linesearch, lbfgs, averaging): add entries below ---
    "lbfgs": lambda: gradtx.lbfgs(),
    "asgd": lambda: gradtx.asgd(),
}


# --------------------------------------------------------------------------- transforms

def _ndim_at_least_1(params):
    """A mask (or freeze mask) function: the leaves with one or more dimensions."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 1, params)


def _labels_by_ndim(params):
    """A label function for ``partition``: matrices and up, vectors, scalars."""
    return jax.tree.map(lambda p: "matrix" if jnp.ndim(p) >= 2 else "vector" if jnp.ndim(p) == 1 else "scalar", params)


def _legacy_transform():
    """An (init, update) pair whose update takes no extra arguments, for with_extra_args_support."""
    return gradtx.GradientTransformation(
        lambda params: gradtx.EmptyState(),
        lambda updates, state, params=None: (jax.tree.map(lambda u: 0.5 * u, updates), state),
    )


# Every public transform and wrapper (not the named optimizers, which are in
# OPTIMIZERS), each built with minimal arguments; a wrapper wraps a small inner
# transform. Keys start with the factory's name; a factory may have several rows.
# tests/test_properties.py runs every row on generated pytrees of every dtype and
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
    "conditionally_transform": lambda: gradtx.conditionally_transform(gradtx.scale_by_adam(), lambda step: step % 2 == 1),
    "with_extra_args_support": lambda: gradtx.with_extra_args_support(_legacy_transform()),
    # wrappers
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.adam(), every_k_schedule=2),
    "MultiSteps_skip_not_finite": lambda: gradtx.MultiSteps(
        gradtx.sgd(0.1), every_k_schedule=2, should_skip_update_fn=gradtx.skip_not_finite),
    "apply_every": lambda: gradtx.apply_every(2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(), max_consecutive_errors=3),
    "lookahead": lambda: gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5),
    "flatten": lambda: gradtx.flatten(gradtx.adam()),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.adam)(learning_rate=lambda t: 1e-2 / (1 + t)),
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
}

# Rows of TRANSFORMS whose parameters are gradtx.LookaheadParams.
LOOKAHEAD = {"lookahead"}
