"""The problems the convergence sweep (benchmarks/convergence.py) trains every optimizer on.

Each problem is a loss of a parameter pytree, a fixed start, and a batch for each step (a
function of the step number, so that a run is a ``lax.scan`` and every optimizer sees the same
data in the same order):

- ``quadratic``: f(x) = 1/2 sum_i lambda_i x_i^2 with lambda log-spaced over [1, 100], x0 spaced over [1, 2].
- ``rosenbrock``: f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.5, 2).
- ``digits_mlp``: a 64-32-10 tanh MLP on scikit-learn's digits (pixels / 16), minibatches of 64.
- ``tiny_lm``: a two-layer causal transformer (d = 64, 4 heads, context 32) over characters of
  text that :func:`generated_text` writes from a small grammar; minibatches of 32 windows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Problem(NamedTuple):
    name: str
    init: Callable[[], Any]  # the starting parameters
    loss: Callable[[Any, Any], jax.Array]  # loss(params, batch)
    batch: Callable[[jax.Array], Any]  # batch(step), traceable
    eval_loss: Callable[[Any], jax.Array]  # loss on held-out data (the whole objective for the deterministic ones)


def _deterministic(name, init, f):
    return Problem(name, init, lambda p, _: f(p), lambda step: (), f)


def quadratic() -> Problem:
    scales = jnp.logspace(0.0, 2.0, 10)
    # x0 differs between coordinates, so that no first step of one size for all (Adam's, sign methods')
    # lands on the minimum by chance
    start = jnp.linspace(1.0, 2.0, 10)
    return _deterministic("quadratic", lambda: {"x": start}, lambda p: 0.5 * jnp.sum(scales * p["x"] ** 2))


def rosenbrock() -> Problem:
    return _deterministic(
        "rosenbrock",
        lambda: {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)},
        lambda p: (1.0 - p["x"]) ** 2 + 100.0 * (p["y"] - p["x"] ** 2) ** 2,
    )


def _cross_entropy(logits, labels):
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[..., None], -1)[..., 0])


def _dense(key, fan_in, fan_out):
    return {"w": jax.random.normal(key, (fan_in, fan_out)) / np.sqrt(fan_in), "b": jnp.zeros(fan_out)}


def digits_mlp(batch_size: int = 64) -> Problem:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(labels))
    x, y = jnp.asarray(images[order] / 16.0, jnp.float32), jnp.asarray(labels[order])
    train_x, train_y, test_x, test_y = x[:1500], y[:1500], x[1500:], y[1500:]

    def init():
        k1, k2 = jax.random.split(jax.random.key(0))
        return {"hidden": _dense(k1, 64, 32), "out": _dense(k2, 32, 10)}

    def forward(p, inputs):
        h = jnp.tanh(inputs @ p["hidden"]["w"] + p["hidden"]["b"])
        return h @ p["out"]["w"] + p["out"]["b"]

    def batch(step):
        index = jax.random.randint(jax.random.fold_in(jax.random.key(1), step), (batch_size,), 0, len(train_y))
        return train_x[index], train_y[index]

    def loss(p, data):
        return _cross_entropy(forward(p, data[0]), data[1])

    return Problem("digits_mlp", init, loss, batch, lambda p: loss(p, (test_x, test_y)))


# ----------------------------------------------------------------------------- the tiny LM

SUBJECTS = ("the cat", "a dog", "my friend", "the old man", "two birds", "the children", "she", "they")
VERBS = ("sees", "likes", "finds", "follows", "paints", "hears")
PLURAL_VERBS = ("see", "like", "find", "follow", "paint", "hear")
OBJECTS = ("the river", "a red ball", "the moon", "small stones", "the garden", "an apple")
PLACES = ("in the park", "at night", "near the house", "by the sea", "every morning")


@functools.cache
def generated_text(sentences: int = 4000, seed: int = 0) -> str:
    """Text from a small grammar: subject, verb that agrees with it, object, and sometimes a place.

    The grammar is what a model can learn: spelling, agreement and word order; the choices
    between words are random, which bounds how low the loss can go.
    """
    rng = np.random.default_rng(seed)
    plural = {"two birds", "the children", "they"}
    out = []
    for _ in range(sentences):
        subject = SUBJECTS[rng.integers(len(SUBJECTS))]
        verbs = PLURAL_VERBS if subject in plural else VERBS
        words = [subject, verbs[rng.integers(len(verbs))], OBJECTS[rng.integers(len(OBJECTS))]]
        if rng.random() < 0.5:
            words.append(PLACES[rng.integers(len(PLACES))])
        out.append(" ".join(words) + ".")
    return " ".join(out)


class LMConfig(NamedTuple):
    context: int = 32
    width: int = 64
    heads: int = 4
    layers: int = 2
    batch_size: int = 32


def _layer_norm(x, p):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["bias"]


def _transformer(p, tokens, config: LMConfig):
    t = tokens.shape[-1]
    x = p["embed"][tokens] + p["position"][:t]
    causal = jnp.tril(jnp.ones((t, t), bool))
    head = config.width // config.heads
    for block in p["blocks"]:
        h = _layer_norm(x, block["ln1"])
        q, k, v = jnp.split(h @ block["qkv"], 3, axis=-1)
        split = lambda a: a.reshape(*a.shape[:-1], config.heads, head)
        scores = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / np.sqrt(head)
        weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, split(v)).reshape(x.shape)
        x = x + attended @ block["proj"]
        h = _layer_norm(x, block["ln2"])
        x = x + jax.nn.gelu(h @ block["up"]) @ block["down"]
    return _layer_norm(x, p["ln_f"]) @ p["unembed"]


def tiny_lm(config: LMConfig | None = None) -> Problem:
    config = config or LMConfig()
    text = generated_text()
    alphabet = sorted(set(text))
    ids = jnp.asarray([alphabet.index(c) for c in text], jnp.int32)
    split = int(0.9 * len(ids))
    train, test = ids[:split], ids[split:]
    vocab, w = len(alphabet), config.width

    def init():
        keys = iter(jax.random.split(jax.random.key(0), 4 + 4 * config.layers))
        normal = lambda shape, scale: scale * jax.random.normal(next(keys), shape)
        norm = lambda: {"scale": jnp.ones(w), "bias": jnp.zeros(w)}
        blocks = [
            {
                "ln1": norm(),
                "qkv": normal((w, 3 * w), w**-0.5),
                "proj": normal((w, w), (2 * config.layers * w) ** -0.5),
                "ln2": norm(),
                "up": normal((w, 4 * w), w**-0.5),
                "down": normal((4 * w, w), (2 * config.layers * 4 * w) ** -0.5),
            }
            for _ in range(config.layers)
        ]
        return {
            "embed": normal((vocab, w), 0.02),
            "position": normal((config.context, w), 0.02),
            "blocks": blocks,
            "ln_f": norm(),
            "unembed": normal((w, vocab), 0.02),
        }

    def windows(source, starts):
        index = starts[:, None] + jnp.arange(config.context + 1)[None, :]
        return source[index]

    def batch(step):
        key = jax.random.fold_in(jax.random.key(1), step)
        return windows(train, jax.random.randint(key, (config.batch_size,), 0, len(train) - config.context - 1))

    def loss(p, data):
        return _cross_entropy(_transformer(p, data[:, :-1], config), data[:, 1:])

    held_out = windows(test, jnp.arange(0, len(test) - config.context - 1, config.context)[:256])
    return Problem("tiny_lm", init, loss, batch, lambda p: loss(p, held_out))


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "digits_mlp": digits_mlp,
    "tiny_lm": tiny_lm,
}
