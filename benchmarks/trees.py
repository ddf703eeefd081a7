"""The parameter trees the benchmarks update, as nested dicts of shapes, and their float32 contents.

Every library gets the same trees: parameters drawn once from N(0, 0.02^2), gradients
from N(0, 1e-6) (random normal * 1e-3), both float32, built by :func:`build`.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def dense(n_in: int, n_out: int) -> dict:
    return {"kernel": (n_in, n_out), "bias": (n_out,)}


def gpt2_small() -> dict:
    """The shapes of GPT-2 small (124M parameters, 148 leaves), named as in its checkpoints."""
    d, layer_norm = 768, {"scale": (768,), "bias": (768,)}
    block = {
        "ln_1": layer_norm,
        "attn": {"c_attn": dense(d, 3 * d), "c_proj": dense(d, d)},
        "ln_2": layer_norm,
        "mlp": {"c_fc": dense(d, 4 * d), "c_proj": dense(4 * d, d)},
    }
    return {"wte": (50257, d), "wpe": (1024, d), **{f"h{i}": block for i in range(12)}, "ln_f": layer_norm}


# The many-leaf tree mixes four kernel shapes of 4,096 entries each (two of them factored by Adafactor).
MANY_SHAPES = [(64, 64), (32, 128), (128, 32), (256, 16)]

TREES = {
    "single": lambda: {"w": (4000, 8000)},  # 32M parameters in one 2-D array (Adafactor factors it)
    "mlp": lambda: {f"layer{i}": dense(566, 566) for i in range(50)},  # 100 leaves, 16M parameters
    "many": lambda: {f"layer{i}": dense(*MANY_SHAPES[i % 4]) for i in range(1000)},  # 2,000 leaves, 4.2M
    "gpt2": gpt2_small,
    "tiny": lambda: {"w": (16, 32), "b": (32,), "out": dense(32, 16)},  # smoke runs and tests: 1,072
}

DESCRIPTIONS = {
    "single": "one (4000, 8000) array",
    "mlp": "50 dense layers (566, 566) + bias",
    "many": "1,000 small dense layers of 4 shapes + bias",
    "gpt2": "the shapes of GPT-2 small",
    "tiny": "two small dense layers (smoke runs)",
}


def is_shape(x) -> bool:
    return isinstance(x, tuple)


def shapes(name: str) -> list[tuple[int, ...]]:
    """The leaves' shapes, in the tree's (sorted-key) order."""
    return jax.tree.leaves(TREES[name](), is_leaf=is_shape)


def size(name: str) -> tuple[int, int]:
    """(number of leaves, number of parameters)."""
    leaf_shapes = shapes(name)
    return len(leaf_shapes), sum(math.prod(s) for s in leaf_shapes)


def build(name: str, seed: int = 0) -> tuple[dict, dict]:
    """(params, grads): two trees of float32 NumPy arrays of the named tree's shapes."""
    rng = np.random.default_rng(seed)

    def normal(shape, std):
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= std
        return x

    tree = TREES[name]()
    params = jax.tree.map(lambda s: normal(s, 0.02), tree, is_leaf=is_shape)
    grads = jax.tree.map(lambda s: normal(s, 1e-3), tree, is_leaf=is_shape)
    return params, grads
