"""chain, named_chain, masked, partition and the other combinators against hand-built equivalents,
and chains of transforms step by step against the NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R

PARAMS = {"dense": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "norm": {"scale": jnp.ones(3)}, "none": None}
GRADS = jax.tree.map(lambda p: jnp.sin(p) + 0.3, PARAMS)


def run(tx, steps=4, jit=False):
    update = jax.jit(tx.update) if jit else tx.update
    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(steps):
        updates, state = update(GRADS, state, params)
        params = gradtx.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("jit", [False, True])
def test_chain_is_the_members_in_order(jit):
    chained = run(gradtx.chain(gradtx.clip(0.5), gradtx.scale_by_adam(), gradtx.scale(-0.1)), jit=jit)
    adam = gradtx.scale_by_adam()
    params, state = PARAMS, adam.init(PARAMS)
    for _ in range(4):
        clipped = jax.tree.map(lambda g: jnp.clip(g, -0.5, 0.5), GRADS)
        u, state = adam.update(clipped, state, params)
        params = gradtx.apply_updates(params, jax.tree.map(lambda x: -0.1 * x, u))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), chained, params)


def test_named_chain_equals_chain_and_names_its_state():
    named = gradtx.named_chain(("adam", gradtx.scale_by_adam()), ("lr", gradtx.scale(-0.1)))
    assert sorted(named.init(PARAMS)) == ["adam", "lr"]
    plain = gradtx.chain(gradtx.scale_by_adam(), gradtx.scale(-0.1))
    jax.tree.map(np.testing.assert_array_equal, run(named), run(plain))
    with pytest.raises(ValueError, match="unique"):
        gradtx.named_chain(("a", gradtx.identity()), ("a", gradtx.identity()))


def test_chain_rejects_what_is_not_a_transform():
    with pytest.raises(TypeError, match="chain member 1"):
        gradtx.chain(gradtx.identity(), lambda g: g)


# ------------------------------------------------------------ chains against the references

DTYPES = ["float32", "float64"]
MODES = R.MODES


def schedule(step):
    """Called with 0 on the first update."""
    return 0.1 / (1 + step)


def linear(step):
    return 1.0 - 0.05 * step


# chain(*transforms) applies its members in order.
CHAINS = {
    "adam_then_schedule": (
        lambda: gradtx.chain(gradtx.scale_by_adam(b1=0.8), gradtx.scale_by_learning_rate(schedule)),
        lambda: R.Chain(R.Adam(b1=0.8), R.ScaleByLearningRate(schedule)),
    ),
    "clip_trace_scale": (
        lambda: gradtx.chain(gradtx.clip_by_global_norm(60.0), gradtx.trace(0.9), gradtx.scale(-0.01)),
        lambda: R.Chain(R.ClipByGlobalNorm(60.0), R.Trace(0.9), R.Scale(-0.01)),
    ),
    "clip_rms_decay_lr": (
        lambda: gradtx.chain(
            gradtx.clip(2.0),
            gradtx.scale_by_rms(decay=0.8),
            gradtx.add_decayed_weights(0.1, mask=R.MASK_TREE),
            gradtx.scale_by_learning_rate(0.05),
        ),
        lambda: R.Chain(
            R.Clip(2.0), R.RMS(decay=0.8), R.AddDecayedWeights(0.1, mask=R.MASK_TREE), R.ScaleByLearningRate(0.05)
        ),
    ),
    "nested": (
        lambda: gradtx.chain(
            gradtx.chain(gradtx.scale_by_adam(nesterov=True), gradtx.ema(0.5)), gradtx.scale_by_schedule(linear)
        ),
        lambda: R.Chain(R.Chain(R.Adam(nesterov=True), R.EMA(0.5)), R.ScaleBySchedule(linear)),
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", list(CHAINS))
def test_chain_matches_reference(key, dtype, mode):
    make_tx, make_ref = CHAINS[key]
    R.run_against_reference(make_tx(), make_ref(), dtype, mode)


# ------------------------------------------------------------------ masked


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("as_function", [False, True])
def test_masked_equals_running_the_inner_transform_on_the_subset(jit, as_function):
    mask = {"dense": {"w": True, "b": False}, "norm": {"scale": False}, "none": None}
    tx = gradtx.chain(
        gradtx.masked(gradtx.scale_by_adam(), (lambda p: mask) if as_function else mask), gradtx.scale(-0.1)
    )
    got = run(tx, jit=jit)
    # by hand: Adam on w alone, plain -0.1 * g on the rest
    adam = gradtx.scale_by_adam()
    w, state = PARAMS["dense"]["w"], adam.init(PARAMS["dense"]["w"])
    for _ in range(4):
        u, state = adam.update(GRADS["dense"]["w"], state, w)
        w = w - 0.1 * u
    np.testing.assert_allclose(got["dense"]["w"], w, rtol=1e-6)
    np.testing.assert_allclose(got["dense"]["b"], PARAMS["dense"]["b"] - 0.4 * GRADS["dense"]["b"], rtol=1e-6)
    assert got["none"] is None
    inner = tx.init(PARAMS)[0].inner_state
    assert jax.tree.leaves(inner.mu) and len(jax.tree.leaves(inner.mu)) == 1


def test_masks_that_do_not_fit_name_the_path():
    with pytest.raises(ValueError, match="'norm/scale' is missing from the mask"):
        gradtx.masked(gradtx.identity(), {"dense": {"w": True, "b": False}, "none": None}).init(PARAMS)
    with pytest.raises(TypeError, match="at 'dense/w' got"):
        gradtx.masked(gradtx.identity(), {"dense": {"w": 1, "b": False}, "norm": {"scale": True}, "none": None}).init(
            PARAMS
        )


# ------------------------------------------------------------------ partition and friends


def run_subset(tx, keys, steps=4):
    """Hand-built equivalent: ``tx`` alone on the leaves at ``keys`` of PARAMS (a flat dict)."""
    sub = {k: PARAMS["dense"][k] for k in keys}
    grads = {k: GRADS["dense"][k] for k in keys}
    state = tx.init(sub)
    for _ in range(steps):
        updates, state = tx.update(grads, state, sub)
        sub = gradtx.apply_updates(sub, updates)
    return sub


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("as_function", [False, True])
def test_partition_equals_each_optimizer_on_its_own_subset(jit, as_function):
    labels = {"dense": {"w": "adam", "b": "sgd"}, "norm": {"scale": "frozen"}, "none": None}
    tx = gradtx.partition(
        {"adam": gradtx.adam(0.1), "sgd": gradtx.sgd(0.1, momentum=0.9), "frozen": gradtx.set_to_zero()},
        (lambda p: labels) if as_function else labels,
    )
    got = run(tx, jit=jit)
    np.testing.assert_allclose(got["dense"]["w"], run_subset(gradtx.adam(0.1), ["w"])["w"], rtol=1e-6)
    np.testing.assert_allclose(got["dense"]["b"], run_subset(gradtx.sgd(0.1, momentum=0.9), ["b"])["b"], rtol=1e-6)
    np.testing.assert_array_equal(got["norm"]["scale"], PARAMS["norm"]["scale"])
    assert got["none"] is None
    assert gradtx.multi_transform is gradtx.partition


def test_partition_errors_name_the_path():
    with pytest.raises(ValueError, match="label 'adamw' at 'dense/w' has no transform"):
        gradtx.partition(
            {"adam": gradtx.adam()}, {"dense": {"w": "adamw", "b": "adam"}, "norm": {"scale": "adam"}, "none": None}
        ).init(PARAMS)
    with pytest.raises(ValueError, match="'dense/b' is missing from the labels"):
        gradtx.partition(
            {"adam": gradtx.adam()}, {"dense": {"w": "adam"}, "norm": {"scale": "adam"}, "none": None}
        ).init(PARAMS)


@pytest.mark.parametrize("jit", [False, True])
def test_freeze_and_selective_transform_leave_frozen_leaves_exactly(jit):
    frozen = {"dense": {"w": True, "b": False}, "norm": {"scale": True}, "none": None}
    via_freeze = run(gradtx.chain(gradtx.freeze(frozen), gradtx.sgd(0.1)), jit=jit)
    via_selective = run(gradtx.selective_transform(gradtx.sgd(0.1), freeze_mask=frozen), jit=jit)
    for got in (via_freeze, via_selective):
        np.testing.assert_array_equal(got["dense"]["w"], PARAMS["dense"]["w"])
        np.testing.assert_array_equal(got["norm"]["scale"], PARAMS["norm"]["scale"])
        np.testing.assert_allclose(got["dense"]["b"], run_subset(gradtx.sgd(0.1), ["b"])["b"], rtol=1e-6)
    # the selective optimizer keeps state for the trained leaves only
    state = gradtx.selective_transform(gradtx.sgd(0.1, momentum=0.9), freeze_mask=frozen).init(PARAMS)
    assert len(jax.tree.leaves(state.inner_states["trained"][0].trace)) == 1


@pytest.mark.parametrize("jit", [False, True])
def test_conditional_transforms_match_a_hand_written_schedule_of_steps(jit):
    every_other = lambda step: step % 2 == 1  # noqa: E731
    for wrapper, on_skip in [
        (gradtx.conditionally_transform, lambda g: g),
        (gradtx.conditionally_mask, lambda g: 0 * g),
    ]:
        tx = wrapper(gradtx.trace(0.5), every_other)
        update = jax.jit(tx.update) if jit else tx.update
        state = tx.init(PARAMS)
        momentum = jax.tree.map(jnp.zeros_like, PARAMS)
        for step in range(5):
            grads = jax.tree.map(lambda g: g * (step + 1), GRADS)  # noqa: B023 (used at once)
            out, state = update(grads, state, PARAMS)
            if every_other(step):
                momentum = jax.tree.map(lambda g, b: g + 0.5 * b, grads, momentum)
                want = momentum
            else:
                want = jax.tree.map(on_skip, grads)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out, want)


def test_with_extra_args_support_lets_a_plain_pair_sit_in_a_chain():
    legacy = gradtx.GradientTransformation(lambda p: (), lambda u, s, p=None: (jax.tree.map(lambda x: 2 * x, u), s))
    tx = gradtx.chain(gradtx.with_extra_args_support(legacy), gradtx.scale(0.5))
    out, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS, value=jnp.asarray(1.0))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out, GRADS)
    with_kwargs = gradtx.adam()
    assert gradtx.with_extra_args_support(with_kwargs).update is with_kwargs.update
