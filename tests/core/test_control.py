"""gradtx.core.control.cond: lax.cond under tracing, a Python choice eagerly, so eager steps do not recompile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.core.control import cond

COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, duration, **kwargs: COMPILES.append(name) if name.endswith("backend_compile_duration") else None
)


def compiles_of(fn, *args):
    before = len(COMPILES)
    jax.block_until_ready(fn(*args))
    return len(COMPILES) - before


def test_eager_calls_run_only_the_chosen_branch_and_compile_nothing_new():
    ran = []

    def branch(name, sign):
        return lambda x: ran.append(name) or sign * x

    x = jnp.arange(3.0)
    assert cond(jnp.array(True), branch("yes", 1), branch("no", -1), x).tolist() == [0.0, 1.0, 2.0]
    assert cond(np.bool_(False), branch("yes", 1), branch("no", -1), x).tolist() == [0.0, -1.0, -2.0]
    assert ran == ["yes", "no"]
    # fresh closures at every call, as an optimizer's update makes them: lax.cond would compile each time
    step = lambda x: cond(jnp.sum(x) > 0, lambda y: y * 2, lambda y: y / 2, x)  # noqa: E731
    step(x)
    assert compiles_of(step, x) == 0


@pytest.mark.parametrize("pred", [True, False])
def test_traced_predicates_take_lax_cond_under_jit_and_vmap(pred):
    ran = []
    f = lambda p, x: cond(p, lambda y: ran.append("yes") or y + 1, lambda y: ran.append("no") or y - 1, x)  # noqa: E731
    assert float(jax.jit(f)(pred, jnp.array(1.0))) == (2.0 if pred else 0.0)
    assert sorted(ran) == ["no", "yes"]  # both branches traced, as lax.cond does
    out = jax.vmap(f)(jnp.array([pred, not pred]), jnp.array([1.0, 1.0]))
    assert out.tolist() == ([2.0, 0.0] if pred else [0.0, 2.0])


def test_an_eager_tree_norm_compiles_once():
    tree = {"a": jnp.arange(4.0), "b": jnp.ones((2, 3))}
    gradtx.tree.norm(tree)
    assert compiles_of(gradtx.tree.norm, tree) == 0
    assert float(gradtx.tree.norm(tree)) == pytest.approx(np.sqrt(14 + 6))
