"""gradtx.experimental.aggregating against float64 NumPy references written here from the definitions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.core.base import EmptyState, GradientTransformation, identity, stateless
from gradtx.experimental import aggregating as agg
from gradtx.optimizers.sgd import sgd

RNG = np.random.default_rng(0)
SHAPES = {"w": (3, 2), "b": (2,), "s": ()}


def per_example(batch: int, offset: float = 0.0, rng=RNG) -> dict[str, np.ndarray]:
    """A float64 tree of per-example gradients: each leaf has a leading batch axis."""
    return {k: offset + rng.normal(size=(batch, *s)) for k, s in SHAPES.items()}


def params64() -> dict[str, jax.Array]:
    return {k: jnp.zeros(s, jnp.float64) for k, s in SHAPES.items()}


def as_jax(tree):
    return jax.tree.map(jnp.asarray, tree)


def close(got, want, tol=1e-12):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), w, rtol=tol, atol=tol), got, want)


# ---------------------------------------------------------------- references


def welford(batches):
    """Mean and sum of squared differences of all examples, merged one example at a time (Welford)."""
    n, mean, m2 = 0, None, None
    for batch in batches:
        for x in batch:
            n += 1
            if mean is None:
                mean, m2 = np.array(x, float), np.zeros_like(x, float)
            delta = x - mean
            mean = mean + delta / n
            m2 = m2 + delta * (x - mean)
    return mean, m2, n


# ---------------------------------------------------------------- batch size and axes


def test_batch_size_of_several_leaves_and_axes():
    g = {"a": np.zeros((4, 3, 2)), "b": [np.zeros((4, 3)), np.zeros((4, 3, 5))]}
    assert agg.get_batch_size_from_per_elt_updates(g, 0) == 4
    assert agg.get_batch_size_from_per_elt_updates(g, [0, 1]) == 12
    assert agg.get_batch_size_from_per_elt_updates({"a": np.zeros((2, 7))}, -1) == 7


MISMATCHED = {"a": jnp.ones((3, 2)), "b": {"c": jnp.ones((4,))}}
MISMATCH_CALLS = {
    "get_batch_size_from_per_elt_updates": lambda: agg.get_batch_size_from_per_elt_updates(MISMATCHED, 0),
    "average_per_element_updates": lambda: agg.average_per_element_updates(0).update(MISMATCHED, EmptyState()),
    "get_per_element_mean_and_sum_sq_diff_grads": lambda: agg.get_per_element_mean_and_sum_sq_diff_grads(0).update(
        MISMATCHED, EmptyState()
    ),
}


@pytest.mark.parametrize("who", sorted(MISMATCH_CALLS))
def test_mismatched_batch_sizes_name_the_function_and_the_leaf(who):
    with pytest.raises(ValueError, match=rf"^{who}: .*got 3 at 'a' and 4 at 'b/c'"):
        MISMATCH_CALLS[who]()


@pytest.mark.parametrize(
    "make",
    [
        lambda: agg.average_incrementally_updates(0, 3),
        lambda: agg.get_per_element_mean_and_sum_sq_diff_grads(0, 3),
        lambda: agg.add_mean_variance_to_opt(sgd(0.1), accumulation_steps=2),
        lambda: agg.process(identity(), agg.average_per_element_updates(), sgd(0.1)),
    ],
)
def test_mismatched_batch_sizes_raise_through_the_compositions_under_jit(make):
    tx = make()
    params = {"a": jnp.zeros(2), "b": {"c": jnp.zeros(())}}
    with pytest.raises(ValueError, match=r"one batch size .* at 'b/c'"):
        jax.jit(tx.update)(MISMATCHED, tx.init(params))


def test_bad_axes_and_steps_raise():
    with pytest.raises(
        ValueError,
        match=r"^average_per_element_updates: .*'a' have shape \(3,\), which lacks an axis of per_elt_axis \(1,\)",
    ):
        agg.average_per_element_updates(1).update({"a": jnp.ones(3)}, EmptyState())
    with pytest.raises(ValueError, match="names an axis twice"):
        agg.get_batch_size_from_per_elt_updates({"a": jnp.ones((2, 3))}, [0, -2])
    with pytest.raises(ValueError, match="no leaves"):
        agg.get_batch_size_from_per_elt_updates({}, 0)
    for bad in ("0", [], [0.5], True):
        with pytest.raises(ValueError, match="per_elt_axis must be"):
            agg.average_per_element_updates(bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=rf"accumulation_steps must be a positive integer, got {bad!r}"):
            agg.accumulate_avg_updates(bad)
        with pytest.raises(ValueError, match="accumulation_steps must be"):
            agg.get_per_element_mean_and_sum_sq_diff_grads(0, bad)


# ---------------------------------------------------------------- averaging


@pytest.mark.parametrize("axes", [0, [0, 1]])
def test_average_per_element_updates_is_the_mean_over_the_batch_axes(axes):
    with jax.enable_x64(True):
        g = {"w": RNG.normal(size=(4, 5, 3)), "b": RNG.normal(size=(4, 5))}
        tx = agg.average_per_element_updates(axes)
        assert isinstance(tx, agg.Aggregator)
        out, state = jax.jit(tx.update)(as_jax(g), tx.init(None))
        close(out, {k: v.mean(axis=tuple(np.atleast_1d(axes))) for k, v in g.items()})
        assert state == EmptyState()


def test_accumulate_avg_updates_over_many_calls():
    steps, rounds = 4, 3
    with jax.enable_x64(True):
        tx = agg.accumulate_avg_updates(steps)
        state = tx.init(params64())
        update = jax.jit(tx.update)
        calls = [{k: RNG.normal(size=s) for k, s in SHAPES.items()} for _ in range(steps * rounds)]
        for i, g in enumerate(calls):
            out, state = update(as_jax(g), state)
            done = (i + 1) % steps == 0
            first = i + 1 - steps if done else i - i % steps
            want = {k: np.mean([c[k] for c in calls[first : i + 1]], axis=0) for k in SHAPES}
            if done:
                close(out, want)
                close(state.avg_grad, {k: np.zeros(s) for k, s in SHAPES.items()})
            else:
                close(out, {k: np.zeros(s) for k, s in SHAPES.items()})
                close(state.avg_grad, want)  # the running mean of this round so far
            assert bool(state.ready) == done
            assert int(state.micro_step) == (i + 1) % steps


def test_one_accumulation_step_is_the_identity():
    tx = agg.accumulate_avg_updates(1)
    out, state = tx.update({"a": jnp.array([2.0])}, tx.init({"a": jnp.zeros(1)}))
    assert out["a"].tolist() == [2.0] and state == EmptyState()


def test_average_incrementally_updates_equals_the_mean_of_all_examples():
    steps, batch = 3, 5
    with jax.enable_x64(True):
        tx = agg.average_incrementally_updates(per_elt_axis=0, accumulation_steps=steps)
        assert isinstance(tx, agg.Aggregator)
        state = tx.init(params64())
        assert state[0] == EmptyState() and isinstance(state[1], agg.AccumulateAvgUpdatesState)
        update = jax.jit(tx.update)
        batches = [per_example(batch) for _ in range(2 * steps)]
        outs = []
        for g in batches:
            out, state = update(as_jax(g), state)
            outs.append(out)
        for r in range(2):
            round_ = batches[r * steps : (r + 1) * steps]
            close(outs[(r + 1) * steps - 1], {k: np.concatenate([b[k] for b in round_]).mean(0) for k in SHAPES})
            close(outs[r * steps], {k: np.zeros(s) for k, s in SHAPES.items()})


def test_average_incrementally_updates_without_axis_or_steps():
    g = {"a": jnp.array([[1.0], [3.0]])}
    plain = agg.average_incrementally_updates(None, 1)
    assert isinstance(plain, GradientTransformation) and not isinstance(plain, agg.Aggregator)
    assert plain.update(g, plain.init(None))[0]["a"].tolist() == [[1.0], [3.0]]
    accumulate = agg.average_incrementally_updates(None, 2)
    assert isinstance(accumulate.init({"a": jnp.zeros(1)}), agg.AccumulateAvgUpdatesState)
    average = agg.average_incrementally_updates(0, 1)
    state = average.init({"a": jnp.zeros(1)})
    assert state == (EmptyState(), EmptyState())
    assert average.update(g, state)[0]["a"].tolist() == [2.0]


# ---------------------------------------------------------------- mean and sum of squared differences


def test_sum_sq_diff_of_one_batch_is_the_variance_times_n():
    with jax.enable_x64(True):
        g = per_example(7)
        tx = agg.get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis=0)
        (mean, aux), state = jax.jit(tx.update)(as_jax(g), tx.init(params64()))
        close(mean, {k: v.mean(0) for k, v in g.items()})
        close(aux["sum_sq_diff_grads"], {k: np.var(v, axis=0) * 7 for k, v in g.items()})
        assert aux["sample_size"] == 7 and state == EmptyState()


def test_sum_sq_diff_over_two_axes():
    with jax.enable_x64(True):
        g = {"w": RNG.normal(size=(2, 3, 4)), "b": RNG.normal(size=(2, 3))}
        tx = agg.get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis=(0, 1))
        (mean, aux), _ = tx.update(as_jax(g), tx.init(None))
        close(mean, {k: v.mean((0, 1)) for k, v in g.items()})
        close(aux["sum_sq_diff_grads"], {k: np.var(v, axis=(0, 1)) * 6 for k, v in g.items()})
        assert aux["sample_size"] == 6


def test_sum_sq_diff_accumulated_over_calls_is_welford_over_all_examples():
    steps, batch = 3, 4
    with jax.enable_x64(True):
        tx = agg.get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis=0, accumulation_steps=steps)
        state = tx.init(params64())
        update = jax.jit(tx.update)
        # a large offset: the naive E[x^2] - E[x]^2 would lose most digits here
        batches = [per_example(batch, offset=1e4) for _ in range(2 * steps)]
        for i, g in enumerate(batches):
            (mean, aux), state = update(as_jax(g), state)
            if (i + 1) % steps:
                close(mean, {k: np.zeros(s) for k, s in SHAPES.items()})
                close(aux["sum_sq_diff_grads"], {k: np.zeros(s) for k, s in SHAPES.items()})
                assert int(aux["sample_size"]) == 0 and not bool(state.ready)
                continue
            round_ = batches[i + 1 - steps : i + 1]
            for k in SHAPES:
                want_mean, want_m2, n = welford([b[k] for b in round_])
                np.testing.assert_allclose(mean[k], want_mean, rtol=1e-12)
                np.testing.assert_allclose(aux["sum_sq_diff_grads"][k], want_m2, rtol=1e-8)
                all_examples = np.concatenate([b[k] for b in round_])
                np.testing.assert_allclose(aux["sum_sq_diff_grads"][k], np.var(all_examples, 0) * n, rtol=1e-8)
            assert int(aux["sample_size"]) == steps * batch and bool(state.ready)
            close(state.mean_grads, {k: np.zeros(s) for k, s in SHAPES.items()})
            assert int(state.micro_step) == 0


def test_mean_and_sum_sq_diff_of_low_precision_and_complex_leaves():
    x = jnp.array([[1.0, 2.0], [3.0, 6.0]], jnp.bfloat16)
    z = jnp.array([[1 + 1j], [3 - 1j]], jnp.complex64)
    (mean, aux), _ = agg.get_per_element_mean_and_sum_sq_diff_grads().update({"x": x, "z": z}, EmptyState())
    assert mean["x"].dtype == jnp.bfloat16 and mean["x"].tolist() == [2.0, 4.0]
    assert aux["sum_sq_diff_grads"]["x"].tolist() == [2.0, 8.0]
    assert mean["z"].tolist() == [2 + 0j]
    assert aux["sum_sq_diff_grads"]["z"].dtype == jnp.float32  # |z - mean|^2 is real
    np.testing.assert_allclose(aux["sum_sq_diff_grads"]["z"], [4.0], rtol=1e-6)


# ---------------------------------------------------------------- moving averages of mean and variance


def ema_reference(means, ssds, sizes, decay):
    """The moving averages of the mean and of M / (n - 1), bias-corrected, by a plain loop."""
    m = {k: np.zeros_like(v) for k, v in means[0].items()}
    v = {k: np.zeros_like(x) for k, x in means[0].items()}
    for mean, ssd, n in zip(means, ssds, sizes):
        for k in m:
            m[k] = decay * m[k] + (1 - decay) * mean[k]
            v[k] = decay * v[k] + (1 - decay) * ssd[k] / (n - 1)
    correction = 1 - decay ** len(means)
    return {k: x / correction for k, x in m.items()}, {k: x / correction for k, x in v.items()}, m, v


def test_track_mean_and_variance_with_ema_against_a_loop():
    decay, steps = 0.8, 6
    with jax.enable_x64(True):
        tx = agg.track_per_element_mean_and_variance_with_ema(ema_decay=decay)
        state = tx.init(params64())
        update = jax.jit(tx.update)
        means = [{k: RNG.normal(size=s) for k, s in SHAPES.items()} for _ in range(steps)]
        ssds = [{k: RNG.uniform(1, 3, size=s) for k, s in SHAPES.items()} for _ in range(steps)]
        sizes = [int(n) for n in RNG.integers(2, 9, size=steps)]
        for mean, ssd, n in zip(means, ssds, sizes):
            out, state = update(as_jax(mean), state, sum_sq_diff_grads=as_jax(ssd), sample_size=jnp.asarray(n))
            close(out, mean)  # the updates pass through
        want_mean, want_var, raw_m, raw_v = ema_reference(means, ssds, sizes, decay)
        close(state.mean_grads_ema, raw_m)
        close(state.variance_grads_ema, raw_v)
        assert int(state.count) == steps
        got_mean, got_var = agg.get_unbiased_mean_and_variance_ema(state)
        close(got_mean, want_mean)
        close(got_var, want_var)
        # the state holds the decay: changing it there changes the averages without a new transform
        state = state._replace(ema_decay=jnp.asarray(0.0, jnp.float64))
        _, state = update(as_jax(means[0]), state, sum_sq_diff_grads=as_jax(ssds[0]), sample_size=jnp.asarray(3))
        close(state.mean_grads_ema, means[0])


def test_track_needs_the_statistics_and_two_examples():
    tx = agg.track_per_element_mean_and_variance_with_ema()
    state = tx.init(jnp.zeros(2))
    with pytest.raises(TypeError, match=r"^track_per_element_mean_and_variance_with_ema needs .*sample_size"):
        tx.update(jnp.ones(2), state, sum_sq_diff_grads=jnp.ones(2))
    with pytest.raises(ValueError, match="at least 2 examples.*sample_size=1"):
        tx.update(jnp.ones(2), state, sum_sq_diff_grads=jnp.zeros(2), sample_size=1)
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0.0, 1.0\), got 1.5"):
        agg.track_per_element_mean_and_variance_with_ema(1.5)


def test_unbiased_mean_and_variance_need_one_ema_state():
    with pytest.raises(ValueError, match=r"^get_unbiased_mean_and_variance_ema: .*found 0"):
        agg.get_unbiased_mean_and_variance_ema((EmptyState(),))
    tx = agg.track_per_element_mean_and_variance_with_ema()
    two = (tx.init(jnp.zeros(1)), tx.init(jnp.zeros(1)))
    with pytest.raises(ValueError, match=r"found 2 at '0', '1'"):
        agg.get_unbiased_mean_and_variance_ema(two)
    mean, _ = agg.get_unbiased_mean_and_variance_ema(two[0])
    assert np.isnan(mean).all()  # before any update the averages are 0/0


# ---------------------------------------------------------------- process and add_mean_variance_to_opt


def test_process_with_sgd_is_sgd_on_the_mean_gradient():
    lr = 0.3
    with jax.enable_x64(True):
        tx = agg.process(identity(), agg.average_per_element_updates(), sgd(lr))
        assert isinstance(tx, agg.Aggregator)
        params = params64()
        state = tx.init(params)
        update = jax.jit(tx.update)
        want = {k: np.zeros(s) for k, s in SHAPES.items()}
        for _ in range(4):
            g = per_example(6)
            out, state = update(as_jax(g), state, params)
            params = jax.tree.map(lambda p, u: p + u, params, out)
            want = {k: want[k] - lr * g[k].mean(0) for k in SHAPES}
        close(params, want)


def test_process_clips_each_example_before_averaging():
    def clip_each(per_elt, _):
        norms = jnp.sqrt(sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in jax.tree.leaves(per_elt)))
        factor = jnp.minimum(1.0, 1.0 / norms)
        return jax.tree.map(lambda x: x * factor.reshape((-1,) + (1,) * (x.ndim - 1)), per_elt)

    with jax.enable_x64(True):
        tx = agg.process(stateless(clip_each), agg.average_per_element_updates(), sgd(1.0))
        g = per_example(5)
        out, _ = jax.jit(tx.update)(as_jax(g), tx.init(params64()))
        norms = np.sqrt(sum((v.reshape(5, -1) ** 2).sum(1) for v in g.values()))
        factor = np.minimum(1.0, 1.0 / norms)
        close(out, {k: -(v * factor.reshape((-1,) + (1,) * (v.ndim - 1))).mean(0) for k, v in g.items()})


def test_process_runs_the_optimizer_only_when_the_accumulation_is_ready():
    lr, mu, steps = 0.1, 0.9, 3
    with jax.enable_x64(True):
        aggregator = agg.average_incrementally_updates(per_elt_axis=0, accumulation_steps=steps)
        tx = agg.process(identity(), aggregator, sgd(lr, momentum=mu))
        params = params64()
        state = tx.init(params)
        update = jax.jit(tx.update)
        want = {k: np.zeros(s) for k, s in SHAPES.items()}
        trace = {k: np.zeros(s) for k, s in SHAPES.items()}
        seen = []
        for i in range(3 * steps):
            g = per_example(4)
            seen.append(g)
            out, state = update(as_jax(g), state, params)
            params = jax.tree.map(lambda p, u: p + u, params, out)
            if (i + 1) % steps:
                close(out, {k: np.zeros(s) for k, s in SHAPES.items()})
                continue
            mean = {k: np.concatenate([b[k] for b in seen[-steps:]]).mean(0) for k in SHAPES}
            trace = {k: mean[k] + mu * trace[k] for k in SHAPES}
            want = {k: want[k] - lr * trace[k] for k in SHAPES}
        close(params, want)


def test_process_passes_the_aggregators_aux_as_extra_arguments():
    seen = {}

    def post_update(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    post = GradientTransformation(lambda p: EmptyState(), post_update)
    aux_agg = agg.Aggregator(lambda p: EmptyState(), lambda g, s, p=None, **kw: ((g.sum(0), {"total": 7}), s))
    tx = agg.process(identity(), aux_agg, post, aggregator_has_aux=True)
    out, _ = tx.update(jnp.ones((3, 2)), tx.init(jnp.zeros(2)), None, loss=1.5)
    assert out.tolist() == [3.0, 3.0] and seen == {"total": 7, "loss": 1.5}
    plain = agg.process(identity(), agg.accumulate_avg_updates(2), identity())
    assert isinstance(plain, GradientTransformation) and not isinstance(plain, agg.Aggregator)
    bad = agg.process(identity(), agg.average_per_element_updates(), post, aggregator_has_aux=True)
    with pytest.raises(ValueError, match=r"^process: with aggregator_has_aux=True"):
        bad.update(jnp.ones((3, 2)), bad.init(jnp.zeros(2)))


def test_process_refuses_several_ready_fields_and_wrong_members():
    double = agg.Aggregator(
        lambda p: (agg.accumulate_avg_updates(2).init(p), agg.accumulate_avg_updates(2).init(p)),
        lambda g, s, p=None, **kw: (g.mean(0), s),
    )
    tx = agg.process(identity(), double, identity())
    with pytest.raises(ValueError, match=r"^process: .*several 'ready' fields \('0/ready', '1/ready'\)"):
        tx.update(jnp.ones((2, 1)), tx.init(jnp.zeros(1)))
    with pytest.raises(TypeError, match="^process: postprocessor must be a GradientTransformation, got function"):
        agg.process(identity(), agg.average_per_element_updates(), lambda u: u)


def test_add_mean_variance_to_opt_against_a_loop():
    lr, decay, steps, batch = 0.2, 0.7, 2, 5
    with jax.enable_x64(True):
        tx = agg.add_mean_variance_to_opt(sgd(lr), ema_decay=decay, per_elt_axis=0, accumulation_steps=steps)
        assert isinstance(tx, agg.Aggregator)
        params = params64()
        state = tx.init(params)
        assert isinstance(state[1], agg.PerElementMeanAndSumSqDiffGradsState)
        assert isinstance(state[2][0], agg.PerElementMeanAndVarianceEMAState)
        update = jax.jit(tx.update)
        want = {k: np.zeros(s) for k, s in SHAPES.items()}
        means, ssds, sizes, seen = [], [], [], []
        for i in range(4 * steps):
            g = per_example(batch, offset=2.0)
            seen.append(g)
            out, state = update(as_jax(g), state, params)
            params = jax.tree.map(lambda p, u: p + u, params, out)
            if (i + 1) % steps == 0:
                all_examples = {k: np.concatenate([b[k] for b in seen[-steps:]]) for k in SHAPES}
                means.append({k: v.mean(0) for k, v in all_examples.items()})
                ssds.append({k: np.var(v, 0) * len(v) for k, v in all_examples.items()})
                sizes.append(steps * batch)
                want = {k: want[k] - lr * means[-1][k] for k in SHAPES}
        close(params, want)
        want_mean, want_var, _, _ = ema_reference(means, ssds, sizes, decay)
        got_mean, got_var = agg.get_unbiased_mean_and_variance_ema(state)
        close(got_mean, want_mean, 1e-10)
        close(got_var, want_var, 1e-10)
        # the unbiased variance of the last round, as np.var(ddof=1) gives it, when decay is 0
        tx0 = agg.add_mean_variance_to_opt(sgd(lr), ema_decay=0.0)
        g = per_example(batch)
        _, state0 = tx0.update(as_jax(g), tx0.init(params64()))
        close(agg.get_unbiased_mean_and_variance_ema(state0)[1], {k: np.var(v, 0, ddof=1) for k, v in g.items()})


def test_float32_matches_the_float64_reference():
    g = per_example(8)
    tx = agg.add_mean_variance_to_opt(sgd(1.0), ema_decay=0.5)
    out, state = jax.jit(tx.update)(
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g),
        tx.init({k: jnp.zeros(s, jnp.float32) for k, s in SHAPES.items()}),
    )
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(out))
    close(out, {k: -v.mean(0) for k, v in g.items()}, 1e-5)
    close(agg.get_unbiased_mean_and_variance_ema(state)[1], {k: np.var(v, 0, ddof=1) for k, v in g.items()}, 1e-5)
