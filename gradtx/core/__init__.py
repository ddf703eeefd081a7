"""The first layer: what every transform stands on, knowing no transform or optimizer.

Aliases, validation, numerics, pytree arithmetic, the protocol, hyperparameter storage and the
author's kit (:mod:`gradtx.core.kit`). Nothing here imports from ``gradtx.transforms`` or above.
"""
