"""A realistic optimizer chain, built from gradtx's blocks, training a small model.

The chain most training scripts end up with:

1. clip the global gradient norm to 1,
2. AdamW, with weight decay on the weight matrices only (no decay on biases or
   LayerNorm scales, chosen by path patterns),
3. a learning rate that warms up linearly and then follows a cosine,
4. gradient accumulation: 4 micro-steps of 16 examples make one step of 64.

It trains an MLP with LayerNorm on scikit-learn's digits and prints, every 10
epochs, the loss, the test accuracy and the optimizer's hyperparameters as the
state holds them:

    .venv/bin/python examples/realistic_chain.py
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from datasets import load_digits
from flax import nnx

import gradtx

MICRO_BATCH, ACCUMULATION = 16, 4


class Model(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 128, rngs=rngs)
        self.norm = nnx.LayerNorm(128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.gelu(self.norm(self.hidden(x))))


def make_optimizer(total_steps: int) -> gradtx.GradientTransformation:
    learning_rate = gradtx.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=3e-3, warmup_steps=total_steps // 10, decay_steps=total_steps, end_value=3e-5
    )
    decay_mask = gradtx.path_mask(["*bias", "*norm/scale"], invert=True)
    chain = gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.adamw(learning_rate, weight_decay=1e-2, mask=decay_mask),
    )
    # gradient accumulation: the inner chain steps once every ACCUMULATION calls
    return gradtx.MultiSteps(chain, every_k_schedule=ACCUMULATION).gradient_transformation()


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load_digits()
    micro_steps_per_epoch = len(x_train) // MICRO_BATCH
    total_steps = args.epochs * micro_steps_per_epoch // ACCUMULATION

    model = Model(nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, make_optimizer(total_steps), wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        losses = [
            train_step(model, optimizer, x_train[idx], y_train[idx])
            for idx in np.array_split(order[: micro_steps_per_epoch * MICRO_BATCH], micro_steps_per_epoch)
        ]
        if epoch % 10 == 0 or epoch == args.epochs:
            hp = gradtx.hyperparams(optimizer.opt_state)
            print(
                f"epoch {epoch:3d}  loss {float(np.mean(losses)):.4f}  "
                f"test accuracy {float(accuracy(model, x_test, y_test)):.4f}  "
                f"lr {hp['learning_rate']:.2e}  weight decay {hp['weight_decay']:g}  "
                f"optimizer steps {int(gradtx.step_count(optimizer.opt_state.inner_opt_state))}"
            )
    print(f"final test accuracy: {float(accuracy(model, x_test, y_test)):.4f}")


if __name__ == "__main__":
    main()
