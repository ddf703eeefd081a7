"""gradtx.microbatching: each result against the same computation written out on the whole batch.

The references are NumPy, or plain JAX on the full batch; microbatch ``j`` of ``n`` is written as
the slice ``x[j::n]`` (examples ``j, j + n, ...``), independently of the module's reshape.
The multi-device checks run in a subprocess with 8 virtual CPU devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.microbatching import AccumulationType, Accumulator, micro_grad, micro_vmap, microbatch, reshape_batch_axis

MEAN, SUM, RUNNING_MEAN, CONCAT = (AccumulationType[n] for n in ("MEAN", "SUM", "RUNNING_MEAN", "CONCAT"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 4)).astype(np.float32)
Y = RNG.normal(size=(32,)).astype(np.float32)
W = RNG.normal(size=(4,)).astype(np.float32)
close = lambda a, b, rtol=1e-5, atol=1e-6: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol, atol)


def microbatches(x, n):
    """Microbatch j of n, written as a strided slice."""
    return [x[j::n] for j in range(n)]


# ------------------------------------------------------------------ reshape_batch_axis


def test_reshape_batch_axis_is_column_major():
    x = np.arange(12)
    out = np.asarray(reshape_batch_axis(jnp.asarray(x), microbatch_size=3))
    assert out.shape == (4, 3)
    for j in range(4):  # element i of microbatch j is example j + i * num_microbatches
        for i in range(3):
            assert out[j, i] == j + i * 4
    np.testing.assert_array_equal(out, np.reshape(x, (4, 3), order="F"))


def test_reshape_batch_axis_on_another_axis_and_a_tree():
    x = RNG.normal(size=(2, 12, 5))
    out = reshape_batch_axis({"a": jnp.asarray(x), "b": (jnp.arange(36).reshape(3, 12),)}, 4, axis=1)
    assert out["a"].shape == (2, 3, 4, 5)
    for j, piece in enumerate(microbatches(np.moveaxis(x, 1, 0), 3)):
        close(out["a"][:, j], np.moveaxis(piece, 0, 1))
    np.testing.assert_array_equal(out["b"][0][1], np.reshape(np.arange(12, 24), (3, 4), order="F"))


# ------------------------------------------------------------------ microbatch, each accumulator


def test_sum_equals_the_full_batch_sum():
    fun = lambda x, y: {"col": jnp.sum(x, 0), "sq": jnp.sum((x @ W - y) ** 2), "count": jnp.sum(jnp.ones_like(y, int))}
    out = microbatch(fun, (0, 1), 8)(X, Y)  # SUM is the default
    close(out["col"], X.sum(0))
    close(out["sq"], np.sum((X @ W - Y) ** 2), rtol=1e-5)
    assert out["count"] == 32 and out["count"].dtype == jnp.int32


@pytest.mark.parametrize("kind", [MEAN, RUNNING_MEAN])
def test_means_of_equal_microbatches_equal_the_full_batch_mean(kind):
    fun = lambda x: (jnp.mean(x, 0), jnp.mean(x**2))
    col, sq = microbatch(fun, 0, 4, kind)(X)
    close(col, X.mean(0))
    close(sq, np.mean(X.astype(np.float64) ** 2))


def test_concat_joins_the_results_in_the_batch_order():
    per_example, per_batch, per_row = microbatch(lambda x: (2 * x + 1, jnp.sum(x), jnp.sum(x, 1)), 0, 8, CONCAT)(X)
    np.testing.assert_array_equal(per_example, 2 * X + 1)
    close(per_row, X.sum(1))
    close(per_batch, [piece.sum() for piece in microbatches(X, 4)])  # a scalar: one entry per microbatch


def test_a_tree_of_accumulators_as_a_prefix_of_the_output():
    fun = lambda x: (x + 1, {"total": jnp.sum(3 * x), "mean": jnp.mean(x)})
    rows, stats = microbatch(fun, 0, 2, (CONCAT, {"total": SUM, "mean": MEAN}))(X)
    close(rows, X + 1)
    close(stats["total"], 3 * X.sum(), rtol=1e-5)
    close(stats["mean"], X.mean())


def test_a_custom_accumulator_sees_every_microbatch_with_its_index():
    weighted = Accumulator(  # sum over j of (j + 1) * r_j, then squared
        init=lambda s: jnp.zeros(s.shape, s.dtype),
        update=lambda c, r, j: c + (j + 1) * r,
        finalize=lambda c: c**2,
        aggregate=lambda r: r.sum(0),
    )
    out = microbatch(lambda x: jnp.sum(x, 0), 0, 8, weighted)(X)
    close(out, sum((j + 1) * piece.sum(0) for j, piece in enumerate(microbatches(X, 4))) ** 2, rtol=1e-5)
    largest = Accumulator(
        lambda s: jnp.full(s.shape, -jnp.inf), lambda c, r, j: jnp.maximum(c, r), lambda c: c, jnp.max
    )
    close(microbatch(lambda x: jnp.max(x, 0), 0, 4, largest)(X), X.max(0))


def test_mean_loss_and_gradient_equal_the_full_batch():
    params = {"w1": jnp.linspace(-1, 1, 12).reshape(4, 3), "w2": jnp.linspace(0, 1, 3)}
    batch = {"x": jnp.asarray(X), "y": jnp.asarray(Y)}
    loss = lambda p, b: jnp.mean((jnp.tanh(b["x"] @ p["w1"]) @ p["w2"] - b["y"]) ** 2)
    full_value, full_grads = jax.value_and_grad(loss)(params, batch)
    for size in [1, 4, 8, 32, None]:
        value, grads = jax.jit(microbatch(jax.value_and_grad(loss), 1, size, MEAN))(params, batch)
        close(value, full_value)
        jax.tree.map(lambda a, b: close(a, b, atol=1e-6), grads, full_grads)
    # and differentiating through the microbatched loss gives the same gradient
    grads = jax.grad(lambda p: microbatch(loss, 1, 8, MEAN)(p, batch))(params)
    jax.tree.map(lambda a, b: close(a, b, atol=1e-6), grads, full_grads)


def test_microbatch_size_none_is_one_call_on_the_whole_batch():
    seen = []
    out = microbatch(lambda x: (seen.append(x.shape), jnp.sum(x))[1], 0, None)(X)
    close(out, X.sum(), rtol=1e-5)
    assert set(seen) == {(32, 4)}


def test_argnames_in_axes_and_arguments_left_whole():
    fun = lambda scale, x, *, y: jnp.sum(x, 0) * scale + y  # x: batch axis 1, y: batch axis 0
    out = microbatch(fun, 1, 4, CONCAT, argnames="y", in_axes=(1, 0))(2.0, X.T, y=Y)
    close(out, 2 * X.sum(1) + Y)


# ------------------------------------------------------------------ RUNNING_MEAN, precision


def test_running_mean_equals_mean_up_to_rounding_over_many_microbatches():
    x = RNG.normal(3.0, 1.0, size=(4096, 2)).astype(np.float32)
    mean = microbatch(lambda v: jnp.mean(v, 0), 0, 1, MEAN)(x)
    running = microbatch(lambda v: jnp.mean(v, 0), 0, 1, RUNNING_MEAN)(x)
    exact = x.astype(np.float64).mean(0)
    close(running, exact, rtol=1e-5)
    close(mean, exact, rtol=1e-5)


def test_running_mean_does_not_overflow_where_the_sum_does():
    x = jnp.full((8,), 6e4, jnp.float16)  # the sum of 8 such values is past float16's largest, 65504
    assert np.isinf(microbatch(jnp.mean, 0, 2, MEAN)(x))
    assert float(microbatch(jnp.mean, 0, 2, RUNNING_MEAN)(x)) == 6e4
    wide = microbatch(jnp.mean, 0, 2, MEAN, accumulator_dtype=jnp.float32)(x)
    assert wide.dtype == jnp.float16 and float(wide) == pytest.approx(6e4, rel=1e-3)


def test_accumulator_dtype_keeps_a_low_precision_sum_exact():
    ones = jnp.ones(1024, jnp.bfloat16)  # in bfloat16, 256 + 1 rounds back to 256
    assert float(microbatch(jnp.sum, 0, 1)(ones)) == 256
    total = microbatch(jnp.sum, 0, 1, accumulator_dtype=jnp.float32)(ones)
    assert total.dtype == jnp.bfloat16 and float(total) == 1024


# ------------------------------------------------------------------ num_real_microbatches


@pytest.mark.parametrize("real", [0, 1, 3, 4])
@pytest.mark.parametrize("kind", list(AccumulationType))
def test_num_real_microbatches_ignores_the_padding(kind, real):
    n = 4  # microbatch j holds examples j, j + 4, ...: padding the last microbatches pads those examples
    x = np.where((np.arange(32) % n < real)[:, None], X, np.nan).astype(np.float32)
    fun = (lambda v: 2 * v) if kind is CONCAT else (lambda v: jnp.sum(v, 0) if kind is SUM else jnp.mean(v, 0))
    out = np.asarray(jax.jit(microbatch(fun, 0, 8, kind, num_real_microbatches=real))(x))
    real_rows = X[np.arange(32) % n < real]
    if kind is CONCAT:
        close(out, np.where(np.isnan(x), 0.0, 2 * x))  # the padding's entries are zeros
    elif kind is SUM:
        close(out, real_rows.sum(0), atol=1e-5)
    elif kind is MEAN:  # the sum over all num_microbatches
        close(out, real_rows.sum(0) / 8 / n if real else np.zeros(4), atol=1e-6)
    else:  # the mean over the real microbatches
        close(out, real_rows.mean(0) if real else np.zeros(4), atol=1e-6)


def test_a_traced_num_real_microbatches_compiles_once():
    traces = []
    fun = lambda v: (traces.append(1), jnp.sum(v, 0))[1]
    run = jax.jit(lambda x, real: microbatch(fun, 0, 8, RUNNING_MEAN, num_real_microbatches=real)(x))
    traced = 0
    for real in [1, 2, 3]:
        close(run(X, real), np.mean([piece.sum(0) for piece in microbatches(X, 4)[:real]], 0), atol=1e-5)
        traced = traced if real > 1 else len(traces)
    assert len(traces) == traced  # compiled for the first value only
    close(run(X, 100), np.mean([piece.sum(0) for piece in microbatches(X, 4)], 0), atol=1e-5)  # clipped to 4


# ------------------------------------------------------------------ micro_vmap


def test_micro_vmap_equals_jax_vmap():
    f = lambda x, w, scale: jnp.tanh(x @ w) * scale
    for in_axes, args in [((0, None, 0), (X, W, Y)), ((1, None, None), (X.T, W, 3.0))]:
        expected = jax.vmap(f, in_axes)(*args)
        close(micro_vmap(f, in_axes, microbatch_size=8)(*args), expected)
        close(micro_vmap(f, in_axes)(*args), expected)
        close(micro_vmap(f, in_axes, microbatch_size=4, accumulator=SUM)(*args), np.sum(expected, 0), rtol=1e-5)
        close(micro_vmap(f, in_axes, microbatch_size=4, accumulator=MEAN)(*args), np.mean(expected, 0))
    g = lambda x, y: {"dot": x @ W + y}
    close(micro_vmap(g, microbatch_size=4)(X, y=Y)["dot"], jax.vmap(g)(X, y=Y)["dot"])  # keywords: mapped on axis 0


def test_micro_vmap_uses_the_vmap_fn_given():
    calls = []

    def vmap_fn(f, in_axes, out_axes):
        calls.append((in_axes, out_axes))
        return jax.vmap(f, in_axes, out_axes)

    np.testing.assert_array_equal(micro_vmap(lambda x: x * x, microbatch_size=2, vmap_fn=vmap_fn)(X), X * X)
    assert calls and all(c == ((0,), 0) for c in calls)


def test_micro_vmap_with_a_custom_accumulator_aggregates_each_microbatch_first():
    spread = Accumulator(  # the largest per-microbatch range
        init=lambda s: jnp.zeros(s.shape, s.dtype),
        update=lambda c, r, j: jnp.maximum(c, r),
        finalize=lambda c: c,
        aggregate=lambda r: r.max(0) - r.min(0),
    )
    out = micro_vmap(lambda x: x, microbatch_size=8, accumulator=spread)(X)
    close(out, np.max([p.max(0) - p.min(0) for p in microbatches(X, 4)], 0))


# ------------------------------------------------------------------ micro_grad


def per_example_reference(w, clip):
    """DP-SGD by hand: the loss 0.5 * (x_i . w - y_i)^2 has the gradient (x_i . w - y_i) x_i."""
    residual = X.astype(np.float64) @ w - Y
    grads = residual[:, None] * X
    norms = np.linalg.norm(grads, axis=1)
    clipped = grads * np.minimum(1.0, clip / norms)[:, None]
    return 0.5 * residual**2, grads, norms, clipped


def test_micro_grad_clips_each_example_then_sums_as_dp_sgd_does():
    clip = 1.0

    def loss(w, x, y):  # x: a batch of one example
        return 0.5 * jnp.mean((x @ w - y) ** 2), {"pred": x @ w}

    clip_fn = lambda g: g * jnp.minimum(1.0, clip / jnp.linalg.norm(g))
    values, grads, norms, clipped = per_example_reference(W, clip)
    assert (norms > clip).any() and (norms < clip).any()  # some examples are clipped, some not
    for size in [None, 1, 8]:
        total, aux = jax.jit(
            micro_grad(
                loss,
                has_aux=True,
                batch_argnums=(1, 2),
                microbatch_size=size,
                transform_fn=clip_fn,
                metrics_fn=jnp.linalg.norm,
            )
        )(W, X, Y)
        close(total, clipped.sum(0), rtol=1e-5)
        close(aux.values, values, rtol=1e-5)
        close(aux.metrics, norms, rtol=1e-5)  # of the gradient before the transform
        close(aux.aux["pred"], (X @ W)[:, None], rtol=1e-5)  # each example's aux, with its batch of one


def test_micro_grad_mean_one_example_at_a_time_and_two_argnums():
    values, grads, _, _ = per_example_reference(W, np.inf)
    one = lambda w, x, y: 0.5 * (x @ w - y) ** 2  # a function of one example
    mean, aux = micro_grad(one, batch_argnums=(1, 2), keep_batch_dim=False, accumulator=MEAN)(W, X, Y)
    close(mean, grads.mean(0), rtol=1e-5)
    assert aux.metrics is None and aux.aux is None
    # the per-example gradients themselves, with respect to two arguments
    (gw, gb), _ = micro_grad(
        lambda w, b, x, y: jnp.mean(0.5 * (x @ w + b - y) ** 2),
        argnums=(0, 1),
        batch_argnums=(2, 3),
        accumulator=CONCAT,
    )(W, 0.0, X, Y)
    close(gw, grads, rtol=1e-5)
    close(gb, X @ W - Y, rtol=1e-5)


def test_micro_grad_num_real_microbatches_and_keywords():
    _, grads, _, _ = per_example_reference(W, np.inf)
    loss = lambda w, x, y, *, scale: scale * jnp.mean(0.5 * (x @ w - y) ** 2)
    total, aux = micro_grad(loss, batch_argnums=(1, 2), microbatch_size=8, num_real_microbatches=1)(W, X, Y, scale=2.0)
    close(total, 2 * grads[::4].sum(0), rtol=1e-5)  # microbatch 0: examples 0, 4, 8, ...
    assert np.all(np.asarray(aux.values)[np.arange(32) % 4 != 0] == 0)


# ------------------------------------------------------------------ many devices


SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from gradtx.microbatching import AccumulationType, micro_grad, microbatch, reshape_batch_axis
    assert jax.device_count() == 8
    x, y, w = (np.asarray(v, np.float32) for v in json.loads(input()))
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
    xs, ys = (jax.device_put(v, NamedSharding(mesh, P("batch"))) for v in (x, y))
    reshape = jax.jit(lambda v: reshape_batch_axis(v, 8))
    loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)
    clip = lambda g: g * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(g))
    value_grad = jax.jit(microbatch(jax.value_and_grad(loss), (1, 2), 8, AccumulationType.MEAN))
    squares = jax.jit(microbatch(lambda x: jnp.sum(x**2), 0, 8))
    doubled = jax.jit(microbatch(lambda x: 2 * x, 0, 8, AccumulationType.CONCAT))(xs)
    (value, grad), (clipped, _) = value_grad(w, xs, ys), jax.jit(micro_grad(loss, batch_argnums=(1, 2), microbatch_size=8, transform_fn=clip))(w, xs, ys)
    out = {
        "reshape_spec": str(reshape(xs).sharding.spec),
        "reshape_gathers": reshape.lower(xs).compile().as_text().count("all-gather"),
        "loop_gathers": squares.lower(xs).compile().as_text().count("all-gather"),
        "squares": float(squares(xs)),
        "value": float(value), "grad": np.asarray(grad).tolist(), "clipped": np.asarray(clipped).tolist(),
        "doubled": np.asarray(doubled).tolist(), "doubled_spec": str(doubled.sharding.spec),
    }
    print("RESULT " + json.dumps(out))
    """
)


def test_a_sharded_batch_gives_the_same_results_on_8_devices():
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    data = json.dumps([X.tolist(), Y.tolist(), W.tolist()])
    run = subprocess.run(
        [sys.executable, "-c", SHARDED], input=data, capture_output=True, text=True, env=env, timeout=600
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT ") :])
    assert out["reshape_spec"] == str(jax.sharding.PartitionSpec(None, "batch"))  # microbatch_size axis sharded
    assert out["reshape_gathers"] == 0 and out["loop_gathers"] == 0  # no example moves between devices
    residual = X.astype(np.float64) @ W - Y
    close(out["value"], np.mean(residual**2), rtol=1e-5)
    close(out["grad"], 2 * (residual[:, None] * X).mean(0), rtol=1e-5, atol=1e-6)
    close(out["squares"], np.sum(X.astype(np.float64) ** 2), rtol=1e-5)
    grads = 2 * residual[:, None] * X  # the per-example gradients of the mean over a batch of one
    close(out["clipped"], (grads * np.minimum(1, 1 / np.linalg.norm(grads, axis=1))[:, None]).sum(0), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["doubled"], np.float32), 2 * X)
    assert "batch" in out["doubled_spec"]


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument():
    loss = lambda w, x: jnp.mean(x @ w)
    with pytest.raises(ValueError, match="microbatch_size must divide the batch size 32 of argument 1, got 5"):
        microbatch(loss, 1, 5)(W, X)
    with pytest.raises(ValueError, match="microbatch_size must divide the batch size 32 .*, got 3"):
        micro_grad(loss, microbatch_size=3)(W, X)
    with pytest.raises(ValueError, match="microbatch_size must divide the batch size 12 of .*, got 5"):
        reshape_batch_axis(jnp.arange(12), 5)
    with pytest.raises(ValueError, match="argnums must name positional arguments of the call, got 2 with 2 given"):
        microbatch(loss, 2, 4)(W, X)
    with pytest.raises(ValueError, match="batch_argnums must name positional arguments"):
        micro_grad(loss, batch_argnums=3)(W, X)
    with pytest.raises(ValueError, match="argnames must name keyword arguments"):
        microbatch(lambda *, x: x, (), 4, argnames="x")(y=X)
    for bad in ["sum", 5, None, (MEAN, "concat")]:
        with pytest.raises(TypeError, match="accumulator must be an AccumulationType or an Accumulator"):
            microbatch(loss, 1, 4, bad)
    with pytest.raises(TypeError, match="accumulator must be"):
        micro_vmap(loss, accumulator="mean")
    with pytest.raises(ValueError, match="microbatch_size must be a positive int or None, got 0"):
        microbatch(loss, 1, 0)
    with pytest.raises(ValueError, match="num_real_microbatches must be a non-negative int, got -1"):
        microbatch(loss, 1, 4, num_real_microbatches=-1)
    with pytest.raises(ValueError, match=r"num_real_microbatches must be an int in \[0, 8\] .*, got 9"):
        microbatch(loss, 1, 4, num_real_microbatches=9)(W, X)
    with pytest.raises(ValueError, match="the batch arguments must hold arrays of one batch size"):
        microbatch(lambda x, y: x.sum() + y.sum(), (0, 1), 4)(X, Y[:16])
    with pytest.raises(ValueError, match="argument 0 must have a batch axis 0, got 1.0"):
        microbatch(jnp.sum, 0, 4)(1.0)
    with pytest.raises(ValueError, match=r"tree\['b'\] must have a batch axis 1, got shape \(12,\)"):
        reshape_batch_axis({"a": jnp.ones((2, 12)), "b": jnp.ones(12)}, 4, axis=1)
    with pytest.raises(TypeError, match="the MEAN accumulator must be given floating-point results, got int32"):
        microbatch(jnp.sum, 0, 4, MEAN)(jnp.arange(8))
    with pytest.raises(ValueError, match="accumulator must be a tree prefix of fun's output"):
        microbatch(lambda x: x.sum(), 0, 4, (SUM, SUM))(X)
    with pytest.raises(ValueError, match="in_axes must have one entry per batch argument"):
        microbatch(loss, 1, 4, in_axes=(0, 0))
    with pytest.raises(ValueError, match="out_axes must be 0, got 1"):
        micro_vmap(jnp.sum, out_axes=1)
    with pytest.raises(ValueError, match="in_axes must have one entry per positional argument"):
        micro_vmap(loss, in_axes=(0,))(W, X)
    with pytest.raises(TypeError, match="Accumulator.finalize must be a function"):
        Accumulator(jnp.zeros_like, lambda c, r, j: c, None, jnp.sum)


def test_the_top_level_name_and_optax_values():
    assert gradtx.microbatch is microbatch
    assert [k.value for k in (MEAN, SUM, RUNNING_MEAN, CONCAT)] == [1, 2, 3, 4]
