"""PSGD Kron step by step against the NumPy reference of ``references/kron.py``, which works on the
whole Kronecker product of the factors (dense products and solves) where the library applies
them axis by axis.

The random parts are fed to the reference: the test replays the key schedule documented in
``scale_by_kron`` (split into next / update draw / balance draw / probes, leaf i's probe from
``fold_in(probe_key, i)``) from the same seed. The tree has a vector, a rank-3 leaf, a 0-d leaf and a
(3, 9) matrix whose 9-axis is diagonal when ``max_size_triangular`` < 9.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.kron import ScaleByKronState, kron, precond_update_prob_schedule, scale_by_kron

import references as R
from helpers import run_problem
from references.kron import Kron, ref_kron

SHAPES = {"b": (4,), "t3": (2, 3, 4), "s": (), "wide": (3, 9)}
PARAM_SCALE = {"b": 0.1, "t3": 2.0, "s": 0.5, "wide": 1.0}
GRAD_SCALE = {"b": 0.01, "t3": 5.0, "s": 0.3, "wide": 3.0}
STEPS = 12


def kron_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(PARAM_SCALE[k] * (rng.standard_normal(s) + 0.5), dtype) for k, s in SHAPES.items()}


def kron_grads(dtype, steps=STEPS, seed=1, zero_until=0):
    rng = np.random.default_rng(seed)
    return [
        {
            k: np.asarray(GRAD_SCALE[k] * np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(s), dtype)
            for k, s in SHAPES.items()
        }
        for _ in range(steps)
    ]


TREES = (kron_params, kron_grads)


@jax.jit
def _draws(key):
    """Steps 1, 2, ... of the documented key schedule: the next key, the update and balance
    uniforms, and the key of the probes."""
    next_key, k_update, k_balance, k_probe = jax.random.split(key, 4)
    uniform = functools.partial(jax.random.uniform, dtype=jnp.float32)
    return next_key, uniform(k_update), uniform(k_balance), k_probe


@functools.partial(jax.jit, static_argnums=(1, 2))
def _probes(key, shapes, dtype):
    return [jax.random.normal(jax.random.fold_in(key, i), s, dtype) for i, s in enumerate(shapes)]


LEAF_SHAPES = tuple(SHAPES[k] for k in sorted(SHAPES))  # in the order of the flattened tree


def replay(seed, probability, shapes=LEAF_SHAPES):
    """The function the reference calls for ``(fit, balance, probes)`` at step t = 1, 2, ...: the
    draws of ``key=seed`` as scale_by_kron's docstring says, probes in the float dtype of the
    moment (float64 under x64)."""
    current = [jax.random.PRNGKey(seed)]

    def draws(t):
        current[0], u_update, u_balance, k_probe = _draws(current[0])
        p = probability(t) if callable(probability) else probability
        probes = _probes(k_probe, shapes, jnp.result_type(float))
        return bool(u_update < np.float32(p)), bool(u_balance < 0.01), [np.asarray(v, np.float64) for v in probes]

    return draws


def _seeds(probability=0.5, count=500):
    """The first seed whose STEPS steps fit on some steps and not on others, with no balance, and
    the first that also balances before a fit."""

    def uniforms(key):
        def body(k, _):
            k, u, b, _ = _draws(k)
            return k, jnp.stack([u, b])

        return jax.lax.scan(body, key, None, length=STEPS)[1]

    u = np.asarray(jax.vmap(uniforms)(jax.vmap(jax.random.PRNGKey)(jnp.arange(count))))
    fit, balance = u[..., 0] < np.float32(probability), u[..., 1] < 0.01
    mixed = fit.any(axis=1) & ~fit.all(axis=1)
    balances = (fit & balance).any(axis=1)
    return int(np.argmax(mixed & ~balance.any(axis=1))), int(np.argmax(mixed & balances))


PLAIN, BALANCING = _seeds()

# (factory, id, kwargs, dtypes); p = 0.5 and the seeds above: fits on some steps, not on others.
# Each row compiles the step anew (most of this file's time), so not every row runs in both dtypes.
BOTH, F32, F64 = ("float32", "float64"), ("float32",), ("float64",)
CASES = [
    (
        "scale_by_kron",
        "diagonal_above_max_balancing",
        dict(preconditioner_update_probability=0.5, max_size_triangular=8, key=BALANCING),
        BOTH,
    ),
    (
        "scale_by_kron",
        "one_diag_gradient_fit",
        dict(
            b1=0.5,
            preconditioner_update_probability=0.5,
            memory_save_mode="one_diag",
            momentum_into_precond_update=False,
            preconditioner_lr=0.3,
            preconditioner_init_scale=2.0,
            key=PLAIN,
        ),
        F32,
    ),
    (
        "scale_by_kron",
        "all_diag",
        dict(preconditioner_update_probability=0.5, memory_save_mode="all_diag", key=PLAIN),
        F64,
    ),
    # the default schedule (a fit at every step so early), min_ndim_triangular = 3: only t3 triangular
    (
        "kron",
        "schedule_min_ndim3",
        dict(learning_rate=lambda t: 0.05 / (1 + 0.1 * t), weight_decay=0.01, min_ndim_triangular=3, key=PLAIN),
        BOTH,
    ),
]
FACTORIES = {"scale_by_kron": (scale_by_kron, Kron), "kron": (kron, ref_kron)}


def _reference(name, kwargs):
    kwargs = dict(kwargs)
    seed = kwargs.pop("key", 0)
    probability = kwargs.get("preconditioner_update_probability", precond_update_prob_schedule())
    kwargs["preconditioner_update_probability"] = probability
    return FACTORIES[name][1](**kwargs, draws=replay(seed, probability))


@pytest.mark.parametrize(
    "name,kwargs,dtype",
    [pytest.param(n, kw, d, id=f"{n}-{label}-{d}") for n, label, kw, dtypes in CASES for d in dtypes],
)
def test_matches_reference(name, kwargs, dtype):
    """Under jit; test_jit_equals_eager holds eager to it. Factors fitted on some steps and not on
    others (all steps under the default schedule), balanced where the case says."""
    ref = _reference(name, kwargs)
    # the harness's tolerances: float32 runs were within 1.5e-7 of the float64 reference
    R.run_against_reference(FACTORIES[name][0](**kwargs), ref, dtype, "jit", trees=TREES)
    k = R.find(ref, Kron)
    assert 0 < k.fits < STEPS or name == "kron", k.fits
    assert k.fits == STEPS or name != "kron", k.fits
    assert (k.balances > 0) == (kwargs["key"] == BALANCING), k.balances


def test_layout_of_the_factors():
    params = jax.tree.map(jnp.asarray, kron_params(np.float32))
    qs = scale_by_kron(max_size_triangular=8).init(params).Qs
    shapes = {k: [q.shape for q in v] for k, v in qs.items()}
    assert shapes == {
        "b": [(4,)],  # one axis: fewer than min_ndim_triangular = 2
        "t3": [(2, 2), (3, 3), (4, 4)],
        "s": [()],
        "wide": [(3, 3), (9,)],  # 9 > max_size_triangular
    }
    one = scale_by_kron(memory_save_mode="one_diag").init({"x": jnp.zeros((4, 2, 4))}).Qs["x"]
    assert [q.shape for q in one] == [(4, 4), (2, 2), (4,)]  # the largest axis, the last of equal ones
    qs = scale_by_kron(memory_save_mode="all_diag", preconditioner_init_scale=8.0).init({"x": jnp.zeros((2, 1, 3))})
    assert [q.tolist() for q in qs.Qs["x"]] == [[2.0, 2.0], [2.0], [2.0, 2.0, 2.0]]  # 8 ** (1/3)
    assert scale_by_kron().init({"x": jnp.zeros((1, 5))}).Qs["x"][0].shape == (1,)  # a size-1 axis


def test_state_and_dtypes():
    params = {"w": jnp.zeros((2, 3), jnp.bfloat16), "s": jnp.zeros((), jnp.float32)}
    state = scale_by_kron(mu_dtype=jnp.float32).init(params)
    assert isinstance(state, ScaleByKronState)
    assert state._fields == ("count", "mu", "Qs", "key", "hyperparams")
    assert state.mu["w"].dtype == jnp.float32 and state.Qs["w"][0].dtype == jnp.float32  # at least float32
    state = scale_by_kron(precond_dtype=jnp.bfloat16).init(params)
    assert state.mu["w"].dtype == jnp.bfloat16 and all(q.dtype == jnp.bfloat16 for q in jax.tree.leaves(state.Qs))
    bf16 = {k: jnp.asarray(v, jnp.bfloat16) for k, v in kron_params(np.float32).items() if k in ("t3", "s")}
    for tx in (kron(0.01, preconditioner_update_probability=1.0), kron(0.01, precond_dtype=jnp.bfloat16)):
        state, update, p = tx.init(bf16), jax.jit(tx.update), bf16
        signature = R.state_signature(state)
        for g in kron_grads(np.float32, 3):
            u, state = update({k: jnp.asarray(g[k], jnp.bfloat16) for k in bf16}, state, p)
            p = gradtx.apply_updates(p, u)
            assert all(x.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
            assert R.state_signature(state) == signature
    R.check_empty_tree(kron(), "jit")
    with jax.enable_x64(True):
        state = scale_by_kron().init({"w": jnp.zeros((2, 2), jnp.float64)})
        assert state.Qs["w"][0].dtype == jnp.float64


def test_key_makes_runs_reproducible_and_different():
    params = {"w": jnp.ones((2, 3)), "s": jnp.asarray(1.0)}
    grads = [{"w": jnp.array([[1.0, -2.0, 0.5], [0.3, 1.5, -1.0]]) * c, "s": jnp.asarray(c)} for c in (1.0, -2.0, 0.5)]
    tx = scale_by_kron(preconditioner_update_probability=1.0)
    update = jax.jit(tx.update)  # the key lives in the state: one compiled step for every seed

    def run(key):
        state = scale_by_kron(key=key).init(params)
        for g in grads:
            u, state = update(g, state, params)
        return np.asarray(u["w"])

    np.testing.assert_array_equal(run(5), run(5))
    np.testing.assert_array_equal(run(5), run(jax.random.PRNGKey(5)))
    assert not np.allclose(run(5), run(6))
    typed = scale_by_kron(key=jax.random.key(5))
    state = typed.init(params)
    np.testing.assert_array_equal(state.key, jax.random.PRNGKey(5))  # raw data in the state
    u, state = typed.update(grads[0], state, params)
    assert state.key.dtype == jnp.uint32


def test_no_retrace_and_the_draw_is_taken_under_jit():
    params = {"w": jnp.ones((2, 3))}
    tx = scale_by_kron(preconditioner_update_probability=0.5, key=PLAIN)
    traces = []

    @jax.jit
    def step(g, state):
        traces.append(1)
        return tx.update(g, state, params)

    state, fitted = tx.init(params), []
    for _ in range(12):
        before = state.Qs["w"][0]
        _, state = step({"w": jnp.arange(6.0).reshape(2, 3)}, state)
        fitted.append(not np.array_equal(before, state.Qs["w"][0]))
    assert len(traces) == 1
    assert 0 < sum(fitted) < 12, fitted  # some steps fit, some do not, in one compiled step


def test_hyperparams_are_readable_and_settable():
    keep = ("t3", "s")  # a smaller tree, quicker to compile
    params = {k: jnp.asarray(v) for k, v in kron_params(np.float32).items() if k in keep}
    grads = [{k: jnp.asarray(v) for k, v in g.items() if k in keep} for g in kron_grads(np.float32, 3)]
    tx = kron(0.1, preconditioner_update_probability=0.5, key=2)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "preconditioner_update_probability": 0.5,
        "preconditioner_lr": 0.1,
        "weight_decay": 0.0,
        "learning_rate": 0.1,
    }
    scheduled = gradtx.hyperparams(kron().init(params))["preconditioner_update_probability"]
    assert scheduled == 1.0  # the default schedule's value for the first step
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, b1=0.5, preconditioner_lr=0.3, preconditioner_update_probability=1.0)
    got, _ = update(grads[2], state, params)

    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    shapes = tuple(SHAPES[k] for k in sorted(keep))
    ref = Kron(preconditioner_update_probability=0.5, draws=replay(2, 0.5, shapes))
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    ref.b1, ref.lr_p = 0.5, 0.3
    sure = replay(2, 1.0, shapes)  # the same key schedule, with p = 1 from now on
    ref.draws = lambda t: [sure(s) for s in range(1, t + 1)][-1]
    fits = ref.fits
    want = [-0.1 * u for u in ref.update(leaves(grads[2]), leaves(params))]
    assert ref.fits == fits + 1  # the probability set to 1 made the third step fit
    for g, w in zip(leaves(got), want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-7)


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\)"):
        kron(b1=1.0)
    with pytest.raises(ValueError, match=r"^preconditioner_update_probability must be in \[0.0, 1.0\]"):
        scale_by_kron(preconditioner_update_probability=1.5)
    with pytest.raises(ValueError, match=r"^preconditioner_lr must be in \(0.0, 1.0\]"):
        scale_by_kron(preconditioner_lr=0.0)
    with pytest.raises(ValueError, match=r"^preconditioner_init_scale must be in \(0.0, inf\)"):
        kron(preconditioner_init_scale=-1.0)
    with pytest.raises(ValueError, match="^memory_save_mode must be one of None, 'one_diag', 'all_diag', got 'smart'"):
        kron(memory_save_mode="smart")
    with pytest.raises(ValueError, match="^max_size_triangular must be an integer >= 0, got 2.5"):
        scale_by_kron(max_size_triangular=2.5)
    with pytest.raises(ValueError, match="^min_ndim_triangular must be an integer >= 0"):
        scale_by_kron(min_ndim_triangular=-1)
    with pytest.raises(TypeError, match="^key must be a PRNG key, an int seed or None"):
        kron(key="seed")
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        kron(-1.0)
    with pytest.raises(ValueError, match=r"^min_prob must be at most max_prob=0.5, got 0.6"):
        precond_update_prob_schedule(max_prob=0.5, min_prob=0.6)
    with pytest.raises(ValueError, match=r"^decay must be in \[0.0, inf\)"):
        precond_update_prob_schedule(decay=-1.0)


def test_update_time_errors_and_complex_parameters():
    params = {"w": jnp.ones((2, 3))}
    tx = kron()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones((3, 2))}, state, params)
    jax.jit(lambda g, s: tx.update(g, s, params, value=1.0, obj_fn=None))(params, state)  # extra arguments pass
    with pytest.raises(TypeError, match="^scale_by_kron does not support complex parameters: 'w' is complex64"):
        kron().init({"w": jnp.ones(2, jnp.complex64)})


def test_jit_equals_eager():
    tx = kron(0.05, preconditioner_update_probability=0.5, memory_save_mode="one_diag", key=PLAIN)
    keep = ("t3", "s")  # a smaller tree: eager dispatch is slow
    params = {k: jnp.asarray(v) for k, v in kron_params(np.float32).items() if k in keep}
    R.check_jit_equals_eager(
        tx,
        params,
        [{k: jnp.asarray(v) for k, v in g.items() if k in keep} for g in kron_grads(np.float32, 3)],
        rtol=1e-5,
    )


def test_schedule():
    p = precond_update_prob_schedule(max_prob=0.8, min_prob=0.1, decay=0.01, flat_start=10)
    got = [float(p(t)) for t in (0, 10, 20, 1000)]
    np.testing.assert_allclose(got, [0.8, 0.8, 0.8 * np.exp(-0.1), 0.1], rtol=1e-6)


def test_huge_tiny_and_zero_gradients_stay_finite():
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "v": jnp.ones(3), "s": jnp.asarray(0.5)}
    tx = kron(0.1, preconditioner_update_probability=1.0)
    update = jax.jit(tx.update)
    for scale in (0.0, 1e-30, 1e30):
        state = tx.init(params)
        for sign in (1.0, -0.5, 1.0):
            grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
            updates, state = update(grads, state, params)
            for x in jax.tree.leaves((updates, state[0].Qs)):
                assert bool(jnp.all(jnp.isfinite(x))), (scale, updates, state[0].Qs)


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100), its ten coordinates one vector
    # (one diagonal factor); the whitened steps have an RMS of about 1, so the rate decays.
    # Reached 1.2e8 in 300 steps on CPU, float32.
    initial, final, _ = run_problem(kron(lambda t: 0.1 * 0.98**t), "quadratic", 300)
    assert np.isfinite(final) and initial / final >= 1e6, (initial, final, initial / final)
    # Rosenbrock from (-1.5, 2): two 0-d leaves, each its own scalar factor; reached 2.5e6 in 1000 steps
    initial, final, _ = run_problem(kron(lambda t: 0.05 * 0.995**t), "rosenbrock", 1000)
    assert np.isfinite(final) and initial / final >= 1e4, (initial, final, initial / final)
