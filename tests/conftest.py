"""Shared fixtures: the optimizers of the foundation, built with their defaults."""

import jax
import jax.numpy as jnp

import gradtx


def quadratic(params):
    """The loss the generic tests pass along: half the sum of squares, in float32."""
    leaves = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in jax.tree.leaves(params)]
    return 0.5 * sum(leaves, jnp.zeros((), jnp.float32))


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
