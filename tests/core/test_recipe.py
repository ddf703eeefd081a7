"""Transforms built the same way compare equal and hash alike (gradtx.core.recipe): every row of
the optimizer and transform tables, built twice; different arguments differ; a transform passed
as a static argument of jax.jit is compiled once however often it is rebuilt."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.core.recipe import recipe

from helpers import OPTIMIZERS, TRANSFORMS


@pytest.mark.parametrize("name", sorted(OPTIMIZERS) + sorted(TRANSFORMS))
def test_built_twice_the_same_way_is_equal(name):
    make = {**OPTIMIZERS, **TRANSFORMS}[name]
    a, b = make(), make()
    assert a == b and hash(a) == hash(b) and not (a != b)


@pytest.mark.parametrize(
    "a, b",
    [
        (lambda: gradtx.adam(1e-3), lambda: gradtx.adam(2e-3)),
        (lambda: gradtx.adam(1e-3), lambda: gradtx.adamw(1e-3)),
        (lambda: gradtx.sgd(0.1, momentum=0.9), lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True)),
        (lambda: gradtx.adam(1e-3, mu_dtype=jnp.bfloat16), lambda: gradtx.adam(1e-3)),
        (
            lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(1e-3)),
            lambda: gradtx.chain(gradtx.adam(1e-3), gradtx.clip_by_global_norm(1.0)),
        ),
        (
            lambda: gradtx.adamw(gradtx.linear_schedule(0.0, 1.0, 10)),
            lambda: gradtx.adamw(gradtx.linear_schedule(0.0, 1.0, 20)),
        ),
        (lambda: gradtx.masked(gradtx.scale(2.0), {"w": True}), lambda: gradtx.masked(gradtx.scale(2.0), {"w": False})),
    ],
)
def test_different_arguments_differ(a, b):
    assert a() != b() and not (a() == b())


def test_functions_that_are_not_the_same_code_differ():
    assert gradtx.stateless(lambda u, p: u) != gradtx.stateless(lambda u, p: u)
    keep = lambda u, p: u  # noqa: E731
    assert gradtx.stateless(keep) == gradtx.stateless(keep)


def test_arrays_compare_by_value_when_small_and_by_identity_when_large():
    assert recipe(np.arange(3.0)) == recipe(np.arange(3.0)) != recipe(np.arange(1.0, 4.0))
    big = np.zeros(1000)
    assert recipe(big) == recipe(big) and recipe(big) != recipe(np.zeros(1000))


def test_a_closure_that_refers_to_itself_has_a_recipe():
    def make():
        def again(n):
            return again(n - 1) if n else 0

        return again

    assert recipe(make()) == recipe(make())


def test_a_rebuilt_optimizer_passed_as_a_static_argument_compiles_once():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def step(tx, grads, state):
        traces.append(1)
        return tx.update(grads, state, grads)

    grads = {"w": jnp.ones(3)}
    for _ in range(3):
        tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(gradtx.cosine_decay_schedule(1e-3, 100)))
        step(tx, grads, tx.init(grads))
    assert len(traces) == 1


def test_a_plain_tuple_of_the_same_functions_is_equal():
    tx = gradtx.sgd(0.1)
    assert tx == tuple(tx) and tx == gradtx.GradientTransformation(*tx)
