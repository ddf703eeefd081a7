"""Timing steps, and the floor: a hand-fused update of the same bytes on one flat float32 array.

The floor of an optimizer on a tree of N parameters is its update written by hand for a single
flat array of N float32 values, jitted with the parameters and state donated: the memory traffic
that no implementation of the algorithm can avoid, in as few passes as XLA can fuse it into.
``reads`` and ``writes`` name the arrays it streams through, once per name (a name listed twice
is read twice: the clipped chain reads ``g`` once for the global norm and once for the update).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def measure(step: Callable[[], None], steps: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``steps`` calls of ``step`` (which waits for its result), after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median(times: list[float]) -> float:
    return statistics.median(times)


def xla_bytes(compiled) -> float:
    """The bytes that XLA's cost model says a compiled program reads and writes (every fusion's
    operands and results): what a step streams through memory, free of timing noise. Both
    branches of a conditional count, though only one runs."""
    analysis = compiled.cost_analysis()
    return (analysis[0] if isinstance(analysis, list) else analysis)["bytes accessed"]


def adam(p, state, g, lr=1e-3, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8):
    t, m, v = state
    t = t + 1
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    update = (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps) + weight_decay * p
    return p - lr * update, (t, m, v)


def chain(p, state, g):
    """clip_by_global_norm(1.0), then AdamW with the warmup-cosine learning rate."""
    g = g * jnp.minimum(1.0, 1.0 / jnp.sqrt(jnp.sum(g * g)))
    t = state[0]
    lr = jnp.where(t < 100, 1e-3 * t / 100, 0.5e-3 * (1 + jnp.cos(jnp.pi * jnp.minimum(t - 100, 9900) / 9900)))
    return adam(p, state, g, lr=lr, weight_decay=1e-2)


def adamw(p, state, g):
    return adam(p, state, g, weight_decay=1e-4)


def sgd(p, state, g, lr=1e-3, momentum=0.9):
    (b,) = state
    b = momentum * b + g
    return p - lr * b, (b,)


def lion(p, state, g, lr=1e-4, b1=0.9, b2=0.99, weight_decay=1e-3):
    """The sign comes from the new moment (``m`` = the old one, rewritten): when both loops read the
    old ``m`` while one overwrites it in place, XLA copies ``m`` first, 8 more bytes per parameter."""
    (m,) = state
    m = b2 * m + (1 - b2) * g
    c = jnp.sign(b1 / b2 * (m - (1 - b2) * g) + (1 - b1) * g)
    return p - lr * (c + weight_decay * p), (m,)


def adafactor(p, state, g, lr=1e-3, eps=1e-30, min_scale=1e-3):
    """Adafactor without momentum keeps no per-parameter state, but streams g three times.

    One pass of g (mean of g^2: the row and column statistics of the second moment), one of g and
    p (RMS of the normalized update, for update clipping, and RMS of p, the parameter scale), and
    the update itself (reads p and g, writes p): 24 bytes per parameter. On a flat array the
    factored statistics are a single number; on a matrix they are a row and a column, whose
    traffic is negligible.
    """
    t, s = state
    t = t + 1
    s = (1 - t**-0.8) * s + t**-0.8 * (jnp.mean(g * g) + eps)
    u = g * jax.lax.rsqrt(s)
    clip = jnp.maximum(1.0, jnp.sqrt(jnp.mean(u * u)))
    scale = lr * jnp.maximum(min_scale, jnp.sqrt(jnp.mean(p * p)))
    return p - scale / clip * u, (t, s)


def schedule_free_adamw(p, state, g, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_lr_power=2.0):
    """Schedule-free AdamW at a constant rate, Optax's placement of the bias correction: the
    parameters are y; z and v are kept, x = (y - (1 - b1) z) / b1 is recomputed from them."""
    t, w, z, v = state
    t, w = t + 1, w + lr**weight_lr_power
    c = lr**weight_lr_power / w
    v = b2 * v + (1 - b2) * g * g
    x = (p - (1 - b1) * z) / b1
    z = z - lr * g / (jnp.sqrt(v / (1 - b2**t)) + eps)
    x = (1 - c) * x + c * z
    return (1 - b1) * z + b1 * x, (t, w, z, v)


def prodigy(p, state, g, lr=1.0, b1=0.9, b2=0.999, eps=1e-8):
    """Prodigy with the authors' bias correction: one pass, since the step uses the estimate d
    of the step before; the new d comes from two sums (<g, x0 - x> and |a|_1) taken in that pass."""
    t, d, r, x0, a, m, v = state
    t = t + 1
    b3 = b2**0.5
    dlr = d * lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
    r = b3 * r + (1 - b3) * d * dlr * jnp.sum(g * (x0 - p))
    m = b1 * m + (1 - b1) * d * g
    v = b2 * v + (1 - b2) * d * d * g * g
    a = b3 * a + (1 - b3) * d * dlr * g
    l1 = jnp.sum(jnp.abs(a))
    d_next = jnp.maximum(d, jnp.where(l1 > 0, r / jnp.where(l1 > 0, l1, 1), 0))
    return p - dlr * m / (jnp.sqrt(v) + d * eps), (t, d_next, r, x0, a, m, v)


def ademamix(p, state, g, lr=1e-3, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0, eps=1e-8):
    """AdEMAMix: Adam's two moments and the slow EMA n, which is not bias-corrected."""
    t, m, n, v = state
    t = t + 1
    m = b1 * m + (1 - b1) * g
    n = b3 * n + (1 - b3) * g
    v = b2 * v + (1 - b2) * g * g
    update = (m / (1 - b1**t) + alpha * n) / (jnp.sqrt(v / (1 - b2**t)) + eps)
    return p - lr * update, (t, m, n, v)


# The names of a floor's 0-d state (counts, sums, estimates); every other name is a flat array of N.
SCALARS = ("t", "s", "w", "d", "r")
# Initial values other than 0: Prodigy's first distance estimate; and arrays that start as copies of the
# parameters (Prodigy's starting point x0, schedule-free's z).
INITIAL = {"d": 1e-6}
COPIES = ("x0", "z")
READ_ONLY = ("x0",)  # arrays a step reads and never writes


class Floor(NamedTuple):
    update: Callable
    state: tuple[str, ...]  # see SCALARS
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    @property
    def bytes_per_param(self) -> int:
        return 4 * (len(self.reads) + len(self.writes))


FLOORS = {
    "adam": Floor(adam, ("t", "m", "v"), ("p", "g", "m", "v"), ("p", "m", "v")),
    "chain": Floor(chain, ("t", "m", "v"), ("p", "g", "g", "m", "v"), ("p", "m", "v")),
    "adamw": Floor(adamw, ("t", "m", "v"), ("p", "g", "m", "v"), ("p", "m", "v")),
    "sgd": Floor(sgd, ("b",), ("p", "g", "b"), ("p", "b")),
    "lion": Floor(lion, ("m",), ("p", "g", "m"), ("p", "m")),
    "adafactor": Floor(adafactor, ("t", "s"), ("g", "g", "p", "p", "g"), ("p",)),
    "schedule_free_adamw": Floor(schedule_free_adamw, ("t", "w", "z", "v"), ("p", "g", "z", "v"), ("p", "z", "v")),
    "prodigy": Floor(
        prodigy, ("t", "d", "r", "x0", "a", "m", "v"), ("p", "g", "x0", "a", "m", "v"), ("p", "a", "m", "v")
    ),
    "ademamix": Floor(ademamix, ("t", "m", "n", "v"), ("p", "g", "m", "n", "v"), ("p", "m", "n", "v")),
}


class Jitted:
    """A step object (see benchmarks/libraries.py) for ``update(params, state, grads) -> (params, state)``,
    compiled with the parameters and the state donated (updated in place) and the gradients not."""

    def __init__(self, update: Callable, params, state, grads):
        self.params, self.state, self.grads = params, state, grads
        start = time.perf_counter()
        self.compiled = jax.jit(update, donate_argnums=(0, 1)).lower(params, state, grads).compile()
        self.compile_s = time.perf_counter() - start
        self.xla_bytes = xla_bytes(self.compiled)

    def __call__(self):
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))

    def state_bytes(self) -> int:
        return per_parameter_bytes(jax.tree.leaves(self.state))

    def leaves(self) -> list[np.ndarray]:
        return [np.asarray(x) for x in jax.tree.leaves(self.params)]


def per_parameter_bytes(leaves) -> int:
    """The bytes of the arrays that grow with the parameters: 0-d leaves (counts, hyperparameters) left out."""
    return sum(x.nbytes for x in leaves if x.ndim > 0)


def floor_step(optimizer: str, params, grads) -> Jitted:
    """The floor as a step object, on the tree's values laid end to end in one flat array."""
    floor = FLOORS[optimizer]
    flat = lambda tree: jnp.array(np.concatenate([x.ravel() for x in jax.tree.leaves(tree)]))
    p, g = flat(params), flat(grads)
    state = tuple(
        jnp.array(p) if name in COPIES else jnp.full(() if name in SCALARS else p.shape, INITIAL.get(name, 0.0))
        for name in floor.state
    )
    return Jitted(floor.update, p, state, g)
