"""Schedule-free learning (Defazio et al., 2024): schedule_free, schedule_free_sgd,
schedule_free_adamw and schedule_free_eval_params.

Step-by-step agreement of both the parameters y and the average x with the NumPy references of
tests/references/schedule_free.py (the paper's Algorithm 1 and its SGD form), on a three-leaf
tree whose gradients come from a fixed non-quadratic loss taken at y, eagerly and under jit,
in float32 and float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib as optax_contrib

import gradtx
from gradtx.optimizers.schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

from references.schedule_free import ref_schedule_free_adamw, ref_schedule_free_sgd

STEPS = 15
RTOL = {"float32": 1e-5, "float64": 1e-10}
SHAPES = {"w": (3, 2), "b": (4,), "s": ()}
RNG = np.random.default_rng(0)
PARAMS0 = {k: 1.5 * RNG.standard_normal(s) + 0.3 for k, s in SHAPES.items()}
CURV = {k: np.exp(RNG.standard_normal(s)) for k, s in SHAPES.items()}  # curvatures in (0.1, 10)
TARGET = {k: RNG.standard_normal(s) for k, s in SHAPES.items()}


def loss(p):
    """A fixed smooth loss: a diagonal quadratic plus a ripple, so the gradient depends on where it is taken."""
    curv, target = ({k: jnp.asarray(v[k], p[k].dtype) for k in p} for v in (CURV, TARGET))  # p's precision
    return sum(jnp.sum(0.5 * curv[k] * (p[k] - target[k]) ** 2 + 0.3 * jnp.sin(2.0 * p[k])) for k in sorted(p))


GRAD = jax.jit(jax.grad(loss))


def np_grad(p):
    return {k: CURV[k] * (p[k] - TARGET[k]) + 0.6 * np.cos(2.0 * p[k]) for k in p}


def run(tx, dtype="float32", mode="eager", steps=STEPS, params=None, hook=None):
    """(y_{t+1}, x_{t+1}) after each of ``steps`` updates, as float64 NumPy dicts; the gradient is
    taken at the parameters y. ``hook(t, state)`` may replace the state after update t."""
    out = []
    with jax.enable_x64(dtype == "float64"):
        y = {k: jnp.asarray(v, dtype) for k, v in (params or PARAMS0).items()}
        state = tx.init(y)
        update = jax.jit(tx.update) if mode == "jit" else tx.update
        for t in range(1, steps + 1):
            grads = GRAD(y)
            updates, state = update(grads, state, y)
            y = gradtx.apply_updates(y, updates)
            assert all(v.dtype == dtype for v in jax.tree.leaves(y))
            x = schedule_free_eval_params(state, y)
            out.append(tuple({k: np.asarray(v, np.float64) for k, v in tree.items()} for tree in (y, x)))
            if hook is not None:
                state = hook(t, state)
    return out


def largest_difference(got, want):
    """The largest difference over all steps, y and x, relative to each leaf's largest magnitude."""
    worst = 0.0
    for got_pair, want_pair in zip(got, want, strict=True):
        for g, w in zip(got_pair, want_pair):
            for k in w:
                worst = max(worst, float(np.max(np.abs(g[k] - w[k])) / max(np.max(np.abs(w[k])), 1e-3)))
    return worst


def decaying(k):
    return 0.2 / (1.0 + 0.3 * k)


# (id, factory, kwargs); the reference takes the same kwargs
CASES = [
    ("sgd-warmup-decay", schedule_free_sgd, dict(learning_rate=0.2, warmup_steps=4, weight_decay=0.05)),
    ("sgd-b1-power", schedule_free_sgd, dict(learning_rate=0.15, b1=0.5, weight_lr_power=1.0)),
    ("sgd-schedule", schedule_free_sgd, dict(learning_rate=decaying, warmup_steps=3)),
    ("sgd-schedule-max", schedule_free_sgd, dict(learning_rate=decaying, weight_by_max_lr=True)),
    ("adamw-warmup", schedule_free_adamw, dict(learning_rate=0.1, warmup_steps=5, weight_decay=0.02)),
    ("adamw-defaults", schedule_free_adamw, dict()),
    (
        "adamw-optax-placement",
        schedule_free_adamw,
        dict(learning_rate=0.1, b2=0.99, eps=1e-3, weight_decay=0.1, bias_correction_in_denominator=True),
    ),
    ("adamw-schedule-max", schedule_free_adamw, dict(learning_rate=decaying, b1=0.7, weight_by_max_lr=True)),
]


def reference_of(factory):
    return ref_schedule_free_sgd if factory is schedule_free_sgd else ref_schedule_free_adamw


EAGER = {"sgd-warmup-decay", "adamw-warmup"}  # eager runs are slow: two cases are enough to compare


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "factory,kwargs,mode",
    [pytest.param(f, kw, m, id=f"{i}-{m}") for i, f, kw in CASES for m in ["jit", "eager"] if m == "jit" or i in EAGER],
)
def test_matches_reference(factory, kwargs, dtype, mode):
    got = run(factory(**kwargs), dtype, mode)
    want = reference_of(factory)(np_grad, PARAMS0, STEPS, **kwargs)
    assert largest_difference(got, want) < RTOL[dtype]
    # the run moved: y and x differ, and both differ from the start
    y, x = want[-1]
    assert np.max(np.abs(y["w"] - x["w"])) > 1e-3 and np.max(np.abs(x["w"] - PARAMS0["w"])) > 1e-2


def test_first_step():
    """x_1 = y_1 = z_1, c_2 = 1: after one step x_2 = z_2 = y_2 = y_1 - gamma_1 g_1, gamma_1 = lr / T_warmup."""
    tx = schedule_free_sgd(0.3, warmup_steps=3)
    y = {"a": jnp.array([1.0, -2.0])}
    updates, state = tx.update({"a": jnp.array([3.0, 6.0])}, tx.init(y), y)
    np.testing.assert_allclose(updates["a"], [-0.3, -0.6], rtol=1e-6)
    np.testing.assert_allclose(schedule_free_eval_params(state, gradtx.apply_updates(y, updates))["a"], [0.7, -2.6])
    assert int(state.step_count) == 2 and float(state.max_lr) == pytest.approx(0.1)
    assert float(state.weight_sum) == pytest.approx(0.01)


def test_wrapping_sgd_equals_schedule_free_sgd():
    lr, warmup, wd = 0.2, 4, 0.05

    def schedule(k):  # update t = k + 1 uses lr min(1, t / T_warmup)
        return lr * jnp.minimum(1.0, (jnp.asarray(k, float) + 1) / warmup)

    wrapped = schedule_free(gradtx.chain(gradtx.add_decayed_weights(wd), gradtx.sgd(schedule)), schedule)
    named = schedule_free_sgd(lr, warmup_steps=warmup, weight_decay=wd)
    assert largest_difference(run(wrapped, "float64", "jit"), run(named, "float64", "jit")) < 1e-12
    assert largest_difference(run(wrapped, mode="jit"), run(named, mode="jit")) < 1e-6


def test_agrees_with_optax_where_optax_follows_the_paper_and_documents_where_not():
    def optax_run(tx, steps=STEPS):
        y = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS0.items()}
        state, out, update = tx.init(y), [], jax.jit(tx.update)
        for _ in range(steps):
            updates, state = update(GRAD(y), state, y)
            y = optax.apply_updates(y, updates)
            x = optax_contrib.schedule_free_eval_params(state, y)
            out.append(tuple({k: np.asarray(v, np.float64) for k, v in t.items()} for t in (y, x)))
        return out

    same = [
        (schedule_free_sgd(0.2, weight_decay=0.05), optax_contrib.schedule_free_sgd(0.2, weight_decay=0.05)),
        (
            schedule_free_adamw(0.1, weight_decay=0.1, bias_correction_in_denominator=True),
            optax_contrib.schedule_free_adamw(0.1, weight_decay=0.1),
        ),
        (schedule_free(gradtx.sgd(0.2), 0.2), optax_contrib.schedule_free(optax.sgd(0.2), 0.2)),
    ]
    theirs_runs = [optax_run(theirs) for _, theirs in same]
    for (ours, _), theirs_run in zip(same, theirs_runs):
        assert largest_difference(run(ours, mode="jit"), theirs_run) < 1e-5
    # the paper's sqrt(1 - b2^t) in gamma_t (so in the weights and the decay) is not Optax's placement
    paper = run(schedule_free_adamw(0.1, weight_decay=0.1), mode="jit")
    assert largest_difference(paper, theirs_runs[1]) > 1e-2
    # Optax's warm-up makes a first step of 0; the paper's (t from 1) makes one of lr / T_warmup
    first = run(schedule_free_sgd(0.2, warmup_steps=4), steps=1)[0][0]
    optax_first = optax_run(optax_contrib.schedule_free_sgd(0.2, warmup_steps=4), steps=1)[0][0]
    np.testing.assert_allclose(optax_first["w"], PARAMS0["w"], rtol=1e-6)
    assert np.max(np.abs(first["w"] - PARAMS0["w"])) > 1e-2


def test_hyperparameters_are_readable_and_settable():
    y = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS0.items()}
    assert gradtx.hyperparams(schedule_free_adamw().init(y)) == {
        "learning_rate": 0.0025,
        "b1": 0.9,
        "weight_lr_power": 2.0,
        "warmup_steps": 0.0,
        "b2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert set(gradtx.hyperparams(schedule_free_sgd(warmup_steps=3).init(y))) == {
        "learning_rate",
        "b1",
        "weight_lr_power",
        "warmup_steps",
        "weight_decay",
    }

    # set after update 5: the next update uses them, as the reference with a switch predicts
    def hook(t, state):
        if t != 5:
            return state
        state = gradtx.set_hyperparams(state, learning_rate=0.05, b1=0.6, weight_lr_power=1.0)
        assert gradtx.hyperparams(state)["b1"] == 0.6 and float(state.b1) == pytest.approx(0.9)
        return state

    got = run(schedule_free_sgd(0.2), "float64", "jit", hook=hook)
    want = ref_schedule_free_sgd(
        np_grad,
        PARAMS0,
        STEPS,
        learning_rate=lambda k: 0.2 if k < 5 else 0.05,
        b1=lambda t: 0.9 if t <= 6 else 0.6,
        weight_lr_power=lambda t: 2.0 if t <= 5 else 1.0,
    )
    assert largest_difference(got, want) < 1e-10
    unchanged = ref_schedule_free_sgd(np_grad, PARAMS0, STEPS, learning_rate=0.2)
    assert largest_difference(got, unchanged) > 1e-3

    # the wrapper's learning rate is the base's: setting it changes the step and the weights
    wrapped = schedule_free(gradtx.sgd(0.2), 0.2)
    assert gradtx.hyperparams(wrapped.init(y)) == {"learning_rate": 0.2, "b1": 0.9, "weight_lr_power": 2.0}

    def set_lr(t, state):
        return gradtx.set_hyperparams(state, learning_rate=0.05) if t == 5 else state

    want = ref_schedule_free_sgd(np_grad, PARAMS0, STEPS, learning_rate=lambda k: 0.2 if k < 5 else 0.05)
    assert largest_difference(run(wrapped, "float64", "jit", hook=set_lr), want) < 1e-10

    # a scheduled learning rate reads as the next value and cannot be set
    state = schedule_free_sgd(decaying).init(y)
    _, state = schedule_free_sgd(decaying).update(jax.grad(loss)(y), state, y)
    assert gradtx.hyperparams(state)["learning_rate"] == pytest.approx(decaying(1))
    with pytest.raises(ValueError, match="follows a schedule"):
        gradtx.set_hyperparams(state, learning_rate=0.1)


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: schedule_free_sgd(b1=1.0), ValueError, r"^b1 must be in \[0.0, 1.0\), got 1.0"),
        (lambda: schedule_free_adamw(b1=-0.1), ValueError, r"^b1 must be in"),
        (lambda: schedule_free(gradtx.sgd(0.1), 0.1, b1=1.5), ValueError, r"^b1 must be in"),
        (lambda: schedule_free_sgd(warmup_steps=-1), ValueError, r"^warmup_steps must be a non-negative integer"),
        (lambda: schedule_free_adamw(warmup_steps=2.5), ValueError, r"^warmup_steps must be a non-negative integer"),
        (lambda: schedule_free_sgd(learning_rate=-1.0), ValueError, r"^learning_rate must be in"),
        (lambda: schedule_free(gradtx.sgd(0.1), -0.1), ValueError, r"^learning_rate must be in"),
        (lambda: schedule_free_sgd(weight_lr_power=-2.0), ValueError, r"^weight_lr_power must be in"),
        (lambda: schedule_free_sgd(weight_decay=-1.0), ValueError, r"^weight_decay must be in"),
        (lambda: schedule_free_adamw(b2=1.0), ValueError, r"^b2 must be in"),
        (lambda: schedule_free_adamw(eps=-1e-8), ValueError, r"^eps must be in"),
        (lambda: schedule_free_adamw(weight_decay=-0.1), ValueError, r"^weight_decay must be in"),
        (lambda: schedule_free_sgd(b1=lambda t: 0.9), TypeError, r"^b1 must be a number"),
        (lambda: schedule_free_adamw(b2=lambda t: 0.9), TypeError, r"^b2 must be a number"),
        (lambda: schedule_free_sgd(b1=jnp.ones(2)), ValueError, r"^b1 must be a scalar"),
    ],
)
def test_construction_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_update_errors_name_what_is_missing():
    tx = schedule_free_adamw()
    y = {"a": jnp.ones(2)}
    state = tx.init(y)
    with pytest.raises(ValueError, match="schedule_free_adamw needs the parameters"):
        tx.update(y, state)
    with pytest.raises(ValueError, match="'a' has shape"):
        tx.update({"a": jnp.ones(3)}, state, {"a": jnp.ones(3)})
    with pytest.raises(TypeError, match="needs the state of a schedule-free optimizer"):
        schedule_free_eval_params(gradtx.adam().init(y), y)
    with pytest.raises(ValueError, match="do not match"):
        schedule_free_eval_params(state, {"b": jnp.ones(2)})


@pytest.mark.parametrize("factory", [schedule_free_sgd, schedule_free_adamw])
def test_jit_equals_eager_and_extra_arguments_are_ignored(factory):
    tx = factory(0.1, warmup_steps=2)
    y = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS0.items()}
    eager_state = jit_state = tx.init(y)
    eager_y = jit_y = y
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=loss(p), value_fn=loss, grad_fn=jax.grad(loss)))
    for _ in range(8):
        u, eager_state = tx.update(GRAD(eager_y), eager_state, eager_y, value=1.0, grad=y, obj_fn=loss)
        eager_y = gradtx.apply_updates(eager_y, u)
        u, jit_state = update(GRAD(jit_y), jit_state, jit_y)
        jit_y = gradtx.apply_updates(jit_y, u)
    for a, b in zip(jax.tree.leaves((eager_y, eager_state)), jax.tree.leaves((jit_y, jit_state))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_vmap_equals_a_loop():
    tx = schedule_free_adamw(0.1)
    batch = jnp.asarray(np.random.default_rng(3).standard_normal((4, 3)), jnp.float32)

    def steps(y):
        state = tx.init(y)
        for _ in range(5):
            u, state = tx.update(jnp.tanh(y) + y, state, y)
            y = y + u
        return schedule_free_eval_params(state, y)

    looped = jnp.stack([jax.jit(steps)(b) for b in batch])
    np.testing.assert_allclose(jax.jit(jax.vmap(steps))(batch), looped, rtol=1e-6, atol=1e-7)


def test_dtypes_bfloat16_state_dtype_and_complex():
    y = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((2, 2), jnp.float32)}
    tx = schedule_free_adamw(0.1)
    state = tx.init(y)
    assert state.z["a"].dtype == jnp.bfloat16 and state.base_optimizer_state.nu["a"].dtype == jnp.bfloat16
    updates, state = tx.update(y, state, y)
    assert updates["a"].dtype == jnp.bfloat16 and state.z["a"].dtype == jnp.bfloat16
    assert schedule_free_eval_params(state, y)["a"].dtype == jnp.bfloat16
    assert schedule_free_sgd(state_dtype=jnp.float32).init(y).z["a"].dtype == jnp.float32
    with jax.enable_x64(True):
        z = schedule_free_sgd().init({"a": jnp.ones(2, jnp.float64)}).z["a"]
        assert z.dtype == jnp.float64

    # complex parameters: SF-SGD is linear, so it is SF-SGD on the real and imaginary parts
    w = jnp.array([1.0 + 2.0j, -0.5 + 0.5j], jnp.complex64)
    tx = schedule_free_sgd(0.3, warmup_steps=2, weight_decay=0.1)
    c_state, r_state, pair = tx.init(w), tx.init(jnp.stack([w.real, w.imag])), jnp.stack([w.real, w.imag])
    update = jax.jit(tx.update)
    for _ in range(6):
        u, c_state = update(2 * w, c_state, w)
        w = w + u
        u, r_state = update(2 * pair, r_state, pair)
        pair = pair + u
    x, x_pair = schedule_free_eval_params(c_state, w), schedule_free_eval_params(r_state, pair)
    np.testing.assert_allclose(jnp.stack([x.real, x.imag]), x_pair, rtol=1e-6)
    # SF-AdamW on a complex quadratic: |g|^2 in the second moment, and it descends
    w0 = jnp.array([1.0 + 2.0j, -0.5 + 0.5j], jnp.complex64)
    w, tx = w0, schedule_free_adamw(0.05)
    state, update = tx.init(w), jax.jit(tx.update)
    for _ in range(100):
        u, state = update(w, state, w)  # the gradient of |w|^2 / 2 (as JAX takes it) at w
        w = w + u
    assert state.base_optimizer_state.nu.dtype == jnp.float32
    assert float(jnp.sum(jnp.abs(schedule_free_eval_params(state, w)) ** 2)) < 1e-2 * float(jnp.sum(jnp.abs(w0) ** 2))


def test_b1_zero_and_eval_inside_a_chain():
    # b1 = 0: the gradient is taken at z, and the parameters are z (the average is not kept)
    got = run(schedule_free_sgd(0.2, b1=0.0), "float64", "jit")
    want = ref_schedule_free_sgd(np_grad, PARAMS0, STEPS, learning_rate=0.2, b1=0.0)
    for (y, x), (want_y, _) in zip(got, want):
        for k in y:
            np.testing.assert_allclose(y[k], want_y[k], rtol=1e-10)
            np.testing.assert_array_equal(x[k], y[k])
    # a chain's state holding one schedule-free state
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), schedule_free_adamw(0.1))
    y = {"a": jnp.array([3.0, -1.0])}
    u, state = tx.update(y, tx.init(y), y)
    inner = next(s for s in state if isinstance(s, ScheduleFreeState))
    np.testing.assert_array_equal(
        schedule_free_eval_params(state, gradtx.apply_updates(y, u))["a"],
        schedule_free_eval_params(inner, gradtx.apply_updates(y, u))["a"],
    )


def test_convergence_on_noisy_linear_regression():
    """Least squares with label noise and minibatches of 8: the average x reaches a loss within
    5% of the optimum's in 400 steps with SF-AdamW and SF-SGD, the last SGD iterate does not."""
    rng = np.random.default_rng(7)
    n, d = 512, 10
    a = rng.standard_normal((n, d)).astype(np.float32)
    w_true = rng.standard_normal(d).astype(np.float32)
    b = a @ w_true + 0.5 * rng.standard_normal(n).astype(np.float32)
    w_opt = np.linalg.lstsq(a, b, rcond=None)[0]
    a_, b_ = jnp.asarray(a), jnp.asarray(b)

    def full_loss(w):
        return float(0.5 * np.mean((a @ np.asarray(w) - b) ** 2))

    best = full_loss(w_opt)
    batches = rng.integers(0, n, (400, 8))

    def train(tx):
        w = jnp.zeros(d)
        state = tx.init(w)

        @jax.jit
        def step(w, state, idx):
            g = jax.grad(lambda w: 0.5 * jnp.mean((a_[idx] @ w - b_[idx]) ** 2))(w)
            u, state = tx.update(g, state, w)
            return w + u, state

        for idx in batches:
            w, state = step(w, state, jnp.asarray(idx))
        return w, state

    for tx in [schedule_free_adamw(0.05, warmup_steps=20), schedule_free_sgd(0.1, warmup_steps=20)]:
        w, state = train(tx)
        assert full_loss(schedule_free_eval_params(state, w)) < 1.05 * best
    w, _ = train(gradtx.sgd(0.1))
    assert full_loss(w) > 1.05 * best


def test_a_base_with_another_learning_rate_is_refused():
    tx = schedule_free(gradtx.sgd(0.1), learning_rate=0.5)
    with pytest.raises(ValueError, match=r"base optimizer's learning_rate is 0.1 but schedule_free's is 0.5"):
        tx.init(jnp.zeros(2))
    schedule_free(gradtx.sgd(0.5), learning_rate=0.5).init(jnp.zeros(2))  # the same: accepted
