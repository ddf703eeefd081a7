"""Shared fixtures: the optimizers of the foundation, built with their defaults."""

import gradtx

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
    # --- issue 3, helper B (layerwise, optimistic, step_size, regularizers): add entries below ---
    # --- issue 3, helper C (linesearch, lbfgs, averaging): add entries below ---
}
