"""Train a one-hidden-layer MLP with Adam: the classic first optimizer example, in JAX.

By default it trains on scikit-learn's 8x8 digits (64 inputs, no download needed)
for 50 epochs; with ``--data-dir`` it reads MNIST from IDX files (784 inputs, 5 epochs):

    python3 dev.py train                      # digits
    python3 dev.py train --data-dir ~/mnist   # MNIST
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from datasets import load_digits, load_mnist
from flax import nnx
from tqdm import tqdm

import gradtx


class MLP(nnx.Module):
    """inputs -> 128 (ReLU) -> 10 logits."""

    def __init__(self, in_features: int, hidden: int, classes: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_features, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, classes, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of the true classes."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
    # Adam turns the gradients into updates and applies them to the model in place.
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model: MLP, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST IDX files (default: scikit-learn's digits)")
    parser.add_argument("--epochs", type=int, help="default: 50 on digits, 5 on MNIST")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialization and the shuffling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.data_dir:
        x_train, y_train, x_test, y_test = load_mnist(args.data_dir)
        epochs = args.epochs or 5
    else:
        x_train, y_train, x_test, y_test = load_digits()
        epochs = args.epochs or 50
    print(f"{len(x_train)} training and {len(x_test)} test examples, {x_train.shape[1]} inputs")

    model = MLP(x_train.shape[1], 128, 10, rngs=nnx.Rngs(args.seed))
    # The optimizer: Adam with the paper's defaults (b1=0.9, b2=0.999, eps=1e-8).
    # `wrt=nnx.Param` says which of the model's variables it updates.
    optimizer = nnx.Optimizer(model, gradtx.adam(args.learning_rate), wrt=nnx.Param)

    rng = np.random.default_rng(args.seed)
    # Every step sees a full batch, so the step is compiled once; the few examples
    # left over in an epoch are different ones each time.
    steps_per_epoch = len(x_train) // args.batch_size
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for step in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=args.quiet):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            losses.append(train_step(model, optimizer, x_train[batch], y_train[batch]))
        # Reading the losses once per epoch keeps the host from waiting on every step.
        train_loss = float(jnp.mean(jnp.stack(losses)))
        test_accuracy = float(accuracy(model, x_test, y_test))
        print(f"epoch {epoch:3d}  train loss {train_loss:.4f}  test accuracy {test_accuracy:.4f}")

    print(f"final test accuracy: {test_accuracy:.4f}")
    return test_accuracy


if __name__ == "__main__":
    main()
