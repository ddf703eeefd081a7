"""MultiSteps, apply_every, apply_if_finite, lookahead and flatten against hand-built equivalents."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"a": {"w": jnp.linspace(-1, 1, 6).reshape(2, 3), "b": jnp.ones(3)}, "s": jnp.asarray(0.5), "none": None}


def grads_at(step, scale=1.0):
    return jax.tree.map(lambda p: scale * jnp.cos(p * (step + 1)) + 0.1 * step, PARAMS)


def close(a, b, rtol=1e-6, atol=0.0):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize(
    "make", [lambda: gradtx.adam(0.1), lambda: gradtx.sgd(0.1, momentum=0.9), lambda: gradtx.rmsprop(0.01)]
)
@pytest.mark.parametrize("use_grad_mean", [True, False])
def test_multisteps_equals_one_step_on_the_combined_gradients(make, use_grad_mean):
    k, windows = 3, 4
    multi = gradtx.MultiSteps(make(), every_k_schedule=k, use_grad_mean=use_grad_mean)
    params, state = PARAMS, multi.init(PARAMS)
    structure = jax.tree.structure(state)
    step = jax.jit(multi.update)
    ref_tx = make()
    ref_params, ref_state = PARAMS, ref_tx.init(PARAMS)
    for window in range(windows):
        grads = [grads_at(window * k + i) for i in range(k)]
        for i, g in enumerate(grads):
            updates, state = step(g, state, params)
            assert jax.tree.structure(state) == structure
            assert bool(multi.has_updated(state)) == (i == k - 1)
            if i < k - 1:
                assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))
            params = gradtx.apply_updates(params, updates)
        combined = jax.tree.map(lambda *gs: sum(gs) / (k if use_grad_mean else 1), *grads)
        ref_updates, ref_state = ref_tx.update(combined, ref_state, ref_params)
        ref_params = gradtx.apply_updates(ref_params, ref_updates)
        close(params, ref_params, rtol=2e-5, atol=1e-7)
    assert gradtx.hyperparams(state)["learning_rate"] == gradtx.hyperparams(ref_state)["learning_rate"]
    assert int(state.gradient_step) == windows


def test_multisteps_accumulator_is_one_gradient_buffer_and_schedules_work():
    multi = gradtx.MultiSteps(
        gradtx.sgd(1.0), every_k_schedule=lambda step: jnp.where(step < 1, 1, 2), accumulator_dtype=jnp.float32
    )
    state = multi.init(PARAMS)
    assert jax.tree.structure(state.acc_grads) == jax.tree.structure(PARAMS)
    outs = []
    for _i in range(5):
        updates, state = multi.update(grads_at(0), state, PARAMS)
        outs.append(float(updates["s"]))
    g = float(grads_at(0)["s"])
    np.testing.assert_allclose(outs, [-g, 0.0, -g, 0.0, -g], rtol=1e-6)
    # works as a plain GradientTransformation in a chain
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), multi.gradient_transformation())
    tx.update(grads_at(0), tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize("skip_fn", ["not_finite", "large"])
def test_multisteps_skips_bad_gradients_entirely(skip_fn):
    fn = (
        gradtx.skip_not_finite
        if skip_fn == "not_finite"
        else functools.partial(gradtx.skip_large_updates, max_squared_norm=1e6)
    )
    multi = gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=2, should_skip_update_fn=fn)
    clean = gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=2)
    s_multi, s_clean = multi.init(PARAMS), clean.init(PARAMS)
    p_multi = p_clean = PARAMS
    bad = jax.tree.map(lambda g: g * (jnp.nan if skip_fn == "not_finite" else 1e5), grads_at(0))
    for step in range(6):
        if step in (1, 4):
            u, s_multi = multi.update(bad, s_multi, p_multi)
            assert bool(s_multi.skip_state["should_skip"])
            p_multi = gradtx.apply_updates(p_multi, u)
        u, s_multi = multi.update(grads_at(step), s_multi, p_multi)
        p_multi = gradtx.apply_updates(p_multi, u)
        u, s_clean = clean.update(grads_at(step), s_clean, p_clean)
        p_clean = gradtx.apply_updates(p_clean, u)
    jax.tree.map(np.testing.assert_array_equal, p_multi, p_clean)


def test_apply_every_emits_the_sum_of_k_updates():
    tx = gradtx.chain(gradtx.apply_every(3), gradtx.scale(-1.0))
    state = tx.init(PARAMS)
    for step in range(7):
        updates, state = jax.jit(tx.update)(grads_at(step), state)
        if step % 3 == 2:
            close(updates, jax.tree.map(lambda *g: -sum(g), *[grads_at(s) for s in range(step - 2, step + 1)]))
        else:
            assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("bad_value", [jnp.nan, jnp.inf, -jnp.inf])
def test_apply_if_finite_ends_exactly_where_a_clean_run_ends(bad_value):
    guarded = gradtx.apply_if_finite(gradtx.adamw(0.05), max_consecutive_errors=5)
    plain = gradtx.adamw(0.05)
    step = jax.jit(guarded.update)
    p_guard, s_guard = PARAMS, guarded.init(PARAMS)
    p_plain, s_plain = PARAMS, plain.init(PARAMS)
    for i in range(8):
        if i in (2, 5, 6):  # bad batches in the middle of the run, two of them in a row
            bad = jax.tree.map(lambda g: g.at[..., 0].set(bad_value) if g.ndim else bad_value, grads_at(i))
            inner_before = s_guard.inner_state
            u, s_guard = step(bad, s_guard, p_guard)
            p_guard = gradtx.apply_updates(p_guard, u)
            jax.tree.map(np.testing.assert_array_equal, s_guard.inner_state, inner_before)
        u, s_guard = step(grads_at(i), s_guard, p_guard)
        p_guard = gradtx.apply_updates(p_guard, u)
        u, s_plain = plain.update(grads_at(i), s_plain, p_plain)
        p_plain = gradtx.apply_updates(p_plain, u)
    jax.tree.map(np.testing.assert_array_equal, p_guard, p_plain)
    assert int(s_guard.total_notfinite) == 3 and int(s_guard.notfinite_count) == 0
    assert int(gradtx.step_count(s_guard.inner_state)) == 8


def test_apply_if_finite_gives_up_after_max_consecutive_errors():
    tx = gradtx.apply_if_finite(gradtx.sgd(1.0), max_consecutive_errors=2)
    state = tx.init(jnp.zeros(1))
    outs = []
    for _ in range(3):
        u, state = tx.update(jnp.array([jnp.nan]), state)
        outs.append(bool(jnp.isnan(u[0])))
    assert outs == [False, False, True]


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_the_papers_algorithm(reset_state):
    k, alpha = 3, 0.5
    tx = gradtx.lookahead(gradtx.sgd(0.1, momentum=0.9), sync_period=k, slow_step_size=alpha, reset_state=reset_state)
    params = gradtx.LookaheadParams.init_synced(PARAMS)
    state = tx.init(params)
    inner = gradtx.sgd(0.1, momentum=0.9)
    fast, slow, inner_state = PARAMS, PARAMS, inner.init(PARAMS)
    for step in range(8):
        updates, state = jax.jit(tx.update)(grads_at(step), state, params)
        params = gradtx.apply_updates(params, updates)
        u, inner_state = inner.update(grads_at(step), inner_state, fast)
        fast = gradtx.apply_updates(fast, u)
        if (step + 1) % k == 0:
            slow = jax.tree.map(lambda s, f: s + alpha * (f - s), slow, fast)
            fast = slow
            if reset_state:
                inner_state = inner.init(fast)
        close(params.fast, fast, rtol=1e-5, atol=1e-6)
        close(params.slow, slow, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="LookaheadParams"):
        tx.init(PARAMS)


def test_flatten_equals_the_leafwise_transform():
    params = {k: v for k, v in PARAMS.items() if k != "none"}
    flat_tx, leaf_tx = gradtx.flatten(gradtx.adam(0.1)), gradtx.adam(0.1)
    p1, s1, p2, s2 = params, flat_tx.init(params), params, leaf_tx.init(params)
    for step in range(5):
        g = {k: v for k, v in grads_at(step).items() if k != "none"}
        u1, s1 = flat_tx.update(g, s1, p1)
        u2, s2 = leaf_tx.update(g, s2, p2)
        p1, p2 = gradtx.apply_updates(p1, u1), gradtx.apply_updates(p2, u2)
    close(p1, p2)
    assert len(jax.tree.leaves(s1[0].mu)) == 1


@pytest.mark.parametrize(
    "who, wrap",
    [
        ("MultiSteps", lambda inner: gradtx.MultiSteps(inner, 2)),
        ("apply_if_finite", lambda inner: gradtx.apply_if_finite(inner, 3)),
        ("lookahead", lambda inner: gradtx.lookahead(inner, 5, 0.5)),
    ],
)
def test_a_wrapper_given_its_inner_optimizers_state_says_so(who, wrap):
    inner, p = gradtx.adam(1e-3), {"w": jnp.ones(3)}
    params = gradtx.LookaheadParams(p, p) if who == "lookahead" else p
    with pytest.raises(TypeError, match=f"^{who} was given a state of type tuple, not the \\w+State its init makes"):
        wrap(inner).update(p, inner.init(p), params)


def test_apply_every_given_another_state_says_so():
    with pytest.raises(TypeError, match="^apply_every was given a state of type EmptyState"):
        gradtx.apply_every(2).update(jnp.ones(2), gradtx.EmptyState())
