"""Checkpoints: every optimizer's state round-trips, and a resumed run ends bit-identical."""

import functools
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.checkpoint import state_from_bytes, state_to_bytes

from helpers import OPTIMIZERS, STOP_AT, TOTAL_STEPS, run_steps
from helpers import RESUME_EXTRA as EXTRA
from helpers import RESUME_PARAMS as PARAMS
from helpers import build_resumable as build

NAMES = sorted(OPTIMIZERS) + sorted(EXTRA)


def assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@functools.cache
def mid_run(name):
    """The optimizer, parameters and state at step STOP_AT (computed once per name: the tests below
    share them, and ``run_steps`` its compiled step, so each optimizer compiles once here)."""
    tx = build(name)
    params, state = run_steps(tx, PARAMS, tx.init(PARAMS), 0, STOP_AT)
    return tx, params, state


@pytest.mark.parametrize("name", NAMES)
def test_round_trips_through_gradtx_and_flax(name):
    serialization = pytest.importorskip("flax.serialization")
    tx, _, state = mid_run(name)
    target = tx.init(PARAMS)
    assert_identical(state_from_bytes(target, state_to_bytes(state)), state)
    assert_identical(serialization.from_bytes(target, serialization.to_bytes(state)), state)


def test_every_state_round_trips_through_orbax(tmp_path):
    """All the states in one Orbax checkpoint (one save and one restore: each takes seconds)."""
    ocp = pytest.importorskip("orbax.checkpoint")
    states = {name: mid_run(name)[2] for name in NAMES}
    targets = {name: mid_run(name)[0].init(PARAMS) for name in NAMES}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "states", states)
        checkpointer.wait_until_finished()
        restored = checkpointer.restore(tmp_path / "states", targets)
    for name in NAMES:
        assert_identical(restored[name], states[name])


def test_a_run_resumed_in_a_new_process_ends_bit_identical(tmp_path):
    stopped, finished = tmp_path / "stopped", tmp_path / "finished"
    stopped.mkdir()
    finished.mkdir()
    expected = {}
    for name in NAMES:
        tx, params, state = mid_run(name)
        (stopped / f"{name}.params").write_bytes(state_to_bytes(params))
        (stopped / f"{name}.state").write_bytes(state_to_bytes(state))
        expected[name] = run_steps(tx, params, state, STOP_AT, TOTAL_STEPS)
    here = os.path.dirname(__file__)
    subprocess.run(
        [sys.executable, os.path.join(here, "checkpoint_worker.py"), str(stopped), str(finished), *NAMES],
        check=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.path.join(here, os.pardir, os.pardir)},
    )
    for name in NAMES:
        want_params, want_state = expected[name]
        tx = build(name)
        got_params = state_from_bytes(PARAMS, (finished / f"{name}.params").read_bytes())
        got_state = state_from_bytes(tx.init(PARAMS), (finished / f"{name}.state").read_bytes())
        assert_identical(got_params, want_params)
        assert_identical(got_state, want_state)


def test_nnx_optimizer_state_round_trips_and_resumes():
    nnx = pytest.importorskip("flax.nnx")
    serialization = pytest.importorskip("flax.serialization")

    def make():
        model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, gradtx.adamw(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((4, 3))) ** 2))(model)
        optimizer.update(model, grads)

    model, optimizer = make()
    for _ in range(3):
        step(model, optimizer)
    # Flax's route for NNX: pure dicts of arrays, serialised with msgpack
    data = [serialization.to_bytes(nnx.to_pure_dict(nnx.state(obj))) for obj in (model, optimizer)]
    model2, optimizer2 = make()
    for obj, blob in zip((model2, optimizer2), data):
        state = nnx.state(obj)
        nnx.replace_by_pure_dict(state, serialization.from_bytes(nnx.to_pure_dict(state), blob))
        nnx.update(obj, state)
    for _ in range(3):
        step(model, optimizer)
        step(model2, optimizer2)
    assert_identical(nnx.state(model), nnx.state(model2))
    assert gradtx.hyperparams(optimizer2.opt_state)["learning_rate"] == 0.1


def test_restoring_into_another_optimizer_or_tree_names_the_first_mismatch():
    _, _, state = mid_run("adam")
    data = state_to_bytes(state)
    # AMSGrad's state has one more moment (nu_max) where Adam's goes on to its hyperparameters
    with pytest.raises(
        ValueError, match="at leaf '0/nu_max/dense/b' of the target the checkpoint has '0/hyperparams/b1'"
    ):
        state_from_bytes(gradtx.amsgrad().init(PARAMS), data)
    other_tree = {"dense": {"w": jnp.zeros((3, 4)), "bias": jnp.zeros(4)}, "scale": jnp.asarray(0.0)}
    with pytest.raises(ValueError, match="'0/mu/dense/bias'"):
        state_from_bytes(gradtx.adam().init(other_tree), data)
    wider = {"dense": {"w": jnp.zeros((3, 5)), "b": jnp.zeros(4)}, "scale": jnp.asarray(0.0)}
    with pytest.raises(ValueError, match=r"'0/mu/dense/w' has shape \(3, 4\) in the checkpoint but \(3, 5\)"):
        state_from_bytes(gradtx.adam().init(wider), data)
    with pytest.raises(ValueError, match="'0/mu/dense/b' has dtype float32 in the checkpoint but bfloat16"):
        state_from_bytes(gradtx.adam().init(jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)), data)


def test_restoring_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # a manifest that matches the target, and a pickled object where the array should be
    header = {"format": "gradtx-state-v1", "leaves": [{"path": "x", "shape": [1], "dtype": "float32"}]}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        leaf_0=np.array([Boom()], dtype=object),
        __gradtx_manifest__=np.frombuffer(json.dumps(header).encode(), np.uint8),
    )
    with pytest.raises(ValueError, match="allow_pickle"):
        state_from_bytes({"x": jnp.ones(1)}, buffer.getvalue())
    assert not marker.exists()
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(1))
    with pytest.raises(ValueError, match="not a gradtx state checkpoint"):
        state_from_bytes({"a": jnp.ones(1)}, buf.getvalue())


def test_bfloat16_state_round_trips():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    tx = gradtx.adam(0.1)
    state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)[1]
    assert_identical(state_from_bytes(tx.init(params), state_to_bytes(state)), state)
