"""Muon (scale_by_muon, muon, newton_schulz): step-by-step agreement with the NumPy references
of tests/references/muon.py (Jordan et al. 2024; Liu et al. 2025), 12 steps in float32 on a
tree with 2-D leaves (wide and tall), a 3-D leaf with a batch axis and Adam's vector leaf;
Optax's numbers with ``bias_correction=True``; hyperparameters; errors; jit, vmap; and the
same steps on 8 host devices with the matrix sharded along either axis.
"""

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
from gradtx.optimizers.muon import MuonState, muon, scale_by_muon
from gradtx.transforms.orthogonalization import MuonDimensionNumbers, newton_schulz

from references.muon import STANDARD, MuonRef
from references.muon import newton_schulz as ref_newton_schulz

D = MuonDimensionNumbers
STEPS = 12
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DION = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)


def tree(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (4, 6), "v": (5, 3), "b": (4,), "k": (2, 3, 4)}
    return {k: jnp.asarray(scale * rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


GRADS = [tree(seed=100 + t, scale=float(np.exp(0.5 * np.sin(t)))) for t in range(STEPS)]
# jax.tree.leaves orders a dict by key: b, k, v, w
BATCH_DIMS = {"w": D(), "v": D(1, 0), "b": None, "k": D(1, 2)}
BATCH_REF = [None, ((1,), (2,)), ((1,), (0,)), ((0,), (1,))]
PLAIN_REF = [None, None, ((0,), (1,)), ((0,), (1,))]


def run(tx, params, grads=GRADS, jit=False):
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    out = []
    for g in grads:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
        out.append(u)
    return params, state, out


def run_ref(ref, params, grads=GRADS):
    p = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
    ref.init(p)
    out = []
    for g in grads:
        u = ref.update([np.asarray(x, np.float64) for x in jax.tree.leaves(g)], p)
        p = [a + b for a, b in zip(p, u)]
        out.append(u)
    return p, out


def assert_close_to_ref(got, want, rtol):
    """Each leaf relative to its own scale (its largest magnitude), at every step."""
    worst = 0.0
    for t, (g_t, w_t) in enumerate(zip(got, want)):
        for a, b in zip(jax.tree.leaves(g_t), w_t):
            err = float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))
            worst = max(worst, err)
            assert err < rtol, f"step {t + 1}: relative difference {err:.2e}"
    return worst


# ------------------------------------------------------------------ Newton-Schulz


@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (6, 6)])
@pytest.mark.parametrize("preconditioning", ["frobenius", "spectral", "schatten", "aol"])
@pytest.mark.parametrize("coeffs", ["standard", "dion"])
def test_newton_schulz_matches_reference(shape, preconditioning, coeffs):
    g = np.random.default_rng(0).standard_normal(shape)
    table = STANDARD if coeffs == "standard" else DION
    got = newton_schulz(jnp.asarray(g, jnp.float32), coeffs, 5, 1e-8, preconditioning)
    want = ref_newton_schulz(g, table, 5, 1e-8, preconditioning)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_newton_schulz_singular_values_in_the_quintic_band():
    g = jax.random.normal(jax.random.key(0), (32, 64))
    sv = np.linalg.svd(np.asarray(newton_schulz(g), np.float64), compute_uv=False)
    assert sv.min() > 0.6 and sv.max() < 1.2, (sv.min(), sv.max())
    z = jax.random.normal(jax.random.key(1), (32, 48)) + 1j * jax.random.normal(jax.random.key(2), (32, 48))
    sv = np.linalg.svd(np.asarray(newton_schulz(z.astype(jnp.complex64)), np.complex128), compute_uv=False)
    assert sv.min() > 0.6 and sv.max() < 1.2, (sv.min(), sv.max())  # X X^H: complex matrices too
    assert np.all(np.asarray(newton_schulz(jnp.zeros((3, 4)), preconditioning="aol")) == 0)


# ------------------------------------------------------------ step by step agreement

# (id, gradtx kwargs, reference kwargs)
CASES = [
    ("default", dict(), dict(dims=PLAIN_REF)),
    ("no_nesterov", dict(nesterov=False), dict(dims=PLAIN_REF, nesterov=False)),
    ("match_rms_adamw", dict(adjust_lr_fn="match_rms_adamw"), dict(dims=PLAIN_REF, adjust="match_rms_adamw")),
    (
        "consistent_rms_decay_mask",
        dict(consistent_rms=0.3, weight_decay=0.1, weight_decay_mask={"w": True, "v": False, "b": True, "k": True}),
        dict(dims=PLAIN_REF, adjust="match_rms_adamw", rms=0.3, weight_decay=0.1, decay=[1, 1, 0, 1]),
    ),
    (
        "batch_axis_adaptive",
        dict(muon_weight_dimension_numbers=BATCH_DIMS, adaptive=True, beta=0.9),
        dict(dims=BATCH_REF, adaptive=True, beta=0.9),
    ),
    (
        "batch_axis_adam_options",
        dict(
            muon_weight_dimension_numbers=lambda p: {**jax.tree.map(lambda _: D(), p), "b": None, "k": D(1, 2)},
            adam_learning_rate=lambda t: 0.01 / (1 + t),
            adam_weight_decay=0.2,
            adam_b1=0.8,
            adam_eps_root=1e-6,
            ns_coeffs="dion",
        ),
        dict(
            dims=[None, ((1,), (2,)), ((0,), (1,)), ((0,), (1,))],
            adam_learning_rate=lambda t: 0.01 / (1 + t),
            adam_weight_decay=0.2,
            adam_b1=0.8,
            adam_eps_root=1e-6,
            coeffs=DION,
        ),
    ),
    (
        "schedule_bias_correction_spectral",
        dict(bias_correction=True, preconditioning="spectral", eps=1e-3),
        dict(dims=PLAIN_REF, bias_correction=True, preconditioning="spectral", eps=1e-3, adam_eps=1e-3),
    ),
]


@pytest.mark.parametrize("kwargs,ref_kwargs", [pytest.param(a, b, id=i) for i, a, b in CASES])
def test_muon_matches_reference(kwargs, ref_kwargs):
    lr = 0.05
    params = tree()
    _, _, got = run(muon(lr, **kwargs), params)
    _, want = run_ref(MuonRef(lr, **ref_kwargs), params)
    assert_close_to_ref(got, want, 1e-5)


def test_muon_no_lr_adjustment_and_schedule():
    params = tree()
    lr = lambda t: 0.1 * 0.9**t  # noqa: E731
    _, _, got = run(muon(lr, adjust_lr_fn=lambda fan_in, fan_out: 1.0), params)
    _, want = run_ref(MuonRef(lr, PLAIN_REF, adjust=None), params)
    assert_close_to_ref(got, want, 1e-5)


@pytest.mark.parametrize("nesterov", [True, False])
def test_scale_by_muon_matches_reference(nesterov):
    params = {k: v for k, v in tree().items() if k in ("w", "v", "k")}
    grads = [{k: g[k] for k in params} for g in GRADS]
    tx = scale_by_muon(beta=0.9, nesterov=nesterov, weight_dimension_numbers={"w": None, "v": None, "k": D(2, 1)})
    _, _, got = run(tx, params, grads)
    dims = [((2,), (1,)), ((0,), (1,)), ((0,), (1,))]  # k, v, w
    _, want = run_ref(MuonRef(1.0, dims, beta=0.9, nesterov=nesterov, muon_only=True), params, grads)
    assert_close_to_ref(got, want, 1e-5)  # want[0] is the first step: m_1 = (1 - beta) g_1


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(nesterov=False, adaptive=True, preconditioning="aol", consistent_rms=0.2, weight_decay=0.1)],
)
def test_bias_correction_gives_optax(kwargs):
    optax_contrib = pytest.importorskip("optax.contrib")
    params = tree()
    got, _, _ = run(muon(0.05, bias_correction=True, **kwargs), params, jit=True)
    want, _, _ = run(optax_contrib.muon(0.05, **kwargs), params, jit=True)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(b))))


# ------------------------------------------------------------------ hyperparameters


def test_hyperparameters_read_and_set():
    params = tree()
    tx = muon(0.05, consistent_rms=0.2, adam_learning_rate=0.01)
    state = tx.init(params)
    h = gradtx.hyperparams(state)
    assert h["beta"] == 0.95 and h["learning_rate"] == 0.05 and h["adam_learning_rate"] == 0.01
    assert h["consistent_rms"] == 0.2 and h["adam_b1"] == 0.9 and h["eps"] == 1e-8
    state = gradtx.set_hyperparams(state, beta=0.5, learning_rate=0.2, consistent_rms=0.4, adam_b1=0.7)
    got = []
    update = jax.jit(tx.update)  # set_hyperparams changes values, not the program
    for g in GRADS[:3]:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
        got.append(u)
    ref = MuonRef(0.2, PLAIN_REF, beta=0.5, adjust="match_rms_adamw", rms=0.4, adam_b1=0.7, adam_learning_rate=0.01)
    _, want = run_ref(ref, tree(), GRADS[:3])
    assert_close_to_ref(got, want, 1e-5)
    assert isinstance(jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, MuonState)), list)


def test_ns_coeffs_live_in_the_state():
    params = {"w": tree()["w"]}
    tx = muon(0.05)
    state = tx.init(params)
    (inner,) = [
        s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, MuonState)) if isinstance(s, MuonState)
    ]
    np.testing.assert_allclose(inner.ns_coeffs, STANDARD, rtol=1e-6)
    assert muon(0.05, ns_coeffs="dion").init(params) is not None


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(beta=1.0), ValueError, "beta must be in"),
        (dict(eps=-1.0), ValueError, "eps must be in"),
        (dict(ns_steps=-1), TypeError, "ns_steps"),
        (dict(ns_steps=2.5), TypeError, "ns_steps"),
        (dict(ns_coeffs=(1.0, 2.0)), ValueError, "ns_coeffs must be a triple"),
        (dict(ns_coeffs="polar"), ValueError, "ns_coeffs must be one of"),
        (dict(ns_coeffs=DION, ns_steps=3), ValueError, "ns_steps=3 is fewer"),
        (dict(preconditioning="qr"), ValueError, "preconditioning must be one of"),
        (dict(adjust_lr_fn="sqrt"), ValueError, "adjust_lr_fn must be one of"),
        (dict(consistent_rms=0.0), ValueError, "consistent_rms must be in"),
        (dict(consistent_rms=0.2, adjust_lr_fn="original"), ValueError, "consistent_rms"),
        (dict(adam_b1=1.5), ValueError, "adam_b1 must be in"),
        (dict(adam_eps_root=-1.0), ValueError, "adam_eps_root"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay must be in"),
        (dict(adam_learning_rate=-1.0), ValueError, "adam_learning_rate"),
    ],
)
def test_construction_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        muon(0.1, **kwargs)


def test_update_errors():
    params = tree()
    tx = muon(0.1)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(GRADS[0], tx.init(params))
    with pytest.raises(ValueError, match="'b' has shape"):
        scale_by_muon().init({"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="do not fit a leaf"):
        muon(0.1, muon_weight_dimension_numbers={"w": D(0, 2), "v": D(), "b": None, "k": None}).init(params)
    with pytest.raises(ValueError, match="repeat"):
        scale_by_muon(weight_dimension_numbers=D(0, 0)).init({"w": jnp.zeros((2, 2))})


# -------------------------------------------------------------- jit, vmap, dtypes, extras


def test_jit_equals_eager_and_extra_args_are_ignored():
    params = tree()
    tx = muon(0.05, weight_decay=0.1, adaptive=True)
    eager, _, _ = run(tx, params)
    jitted, _, _ = run(tx, params, jit=True)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    state = tx.init(params)
    u1, _ = tx.update(GRADS[0], state, params)
    u2, _ = tx.update(GRADS[0], state, params, value=1.0, grad=GRADS[0], value_fn=None, obj_fn=None, grad_fn=None)
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)))


def test_vmap_over_a_batch_of_models():
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), tree(0), tree(1))
    grads = jax.tree.map(lambda *xs: jnp.stack(xs), GRADS[0], GRADS[1])
    tx = muon(0.05)
    u, _ = jax.vmap(lambda g, p: tx.update(g, tx.init(p), p))(grads, stacked)
    for i, (p, g) in enumerate([(tree(0), GRADS[0]), (tree(1), GRADS[1])]):
        want, _ = tx.update(g, tx.init(p), p)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(want)):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)


def test_dtypes():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), tree())
    tx = muon(0.05)
    state = tx.init(params)
    u, state = tx.update(jax.tree.map(lambda x: x.astype(jnp.bfloat16), GRADS[0]), state, params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
    (inner,) = [
        s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, MuonState)) if isinstance(s, MuonState)
    ]
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(inner.mu))
    state = muon(0.05, mu_dtype=jnp.float32).init(params)
    (inner,) = [
        s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, MuonState)) if isinstance(s, MuonState)
    ]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(inner.mu))


def test_complex_matrix_leaf_descends():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((4, 6)) + 1j * rng.standard_normal((4, 6)), jnp.complex64)
    params = {"z": z}
    loss = lambda p: 0.5 * jnp.sum(jnp.abs(p["z"]) ** 2)  # noqa: E731
    tx = muon(lambda t: 0.3 * 0.97**t)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(100):
        g = jax.tree.map(jnp.conj, jax.grad(loss)(params))  # the descent direction for |z|^2
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
    assert params["z"].dtype == jnp.complex64 and float(loss(params)) < 1e-2 * float(loss({"z": z}))


def test_converges_on_a_quadratic():
    """0.5 |x|^2 on an 8x8 matrix and a vector: from 31.8 to below 1e-3 in 150 steps with
    lr = 0.3 * 0.97^t (Muon's steps have a fixed size; the schedule brings them down)."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((8, 8)), jnp.float32), "b": jnp.asarray(rng.standard_normal(8))}
    loss = lambda p: 0.5 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p))  # noqa: E731
    tx = muon(lambda t: 0.3 * 0.97**t)
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(150):
        u, state = step(params, state)
        params = gradtx.apply_updates(params, u)
    assert float(loss(params)) < 1e-3


# ------------------------------------------------------------------ 8 host devices

WORKER = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradtx
    from gradtx.optimizers.muon import muon, MuonState

    mesh = Mesh(np.array(jax.devices()), ("x",))
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((16, 24)), jnp.float32), "b": jnp.asarray(rng.standard_normal(24))}
    grads = [{k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32) for k, v in params.items()} for _ in range(3)]
    tx = muon(0.05, weight_decay=0.1)

    def run(p, gs):
        state = jax.jit(tx.init)(p)
        step = jax.jit(tx.update)
        for g in gs:
            u, state = step(g, state, p)
            p = gradtx.apply_updates(p, u)
        return p, state

    plain, _ = run(params, grads)
    out = {"devices": len(jax.devices())}
    for name, spec in (("rows", P("x", None)), ("cols", P(None, "x"))):
        shard = {"w": NamedSharding(mesh, spec), "b": NamedSharding(mesh, P("x"))}
        p = jax.device_put(params, shard)
        gs = [jax.device_put(g, shard) for g in grads]
        got, state = run(p, gs)
        inner = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, MuonState)) if isinstance(s, MuonState)]
        mu = inner[0].mu["w"]
        out[name] = {
            "diff": max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain))),
            "mu_follows": mu.sharding.is_equivalent_to(shard["w"], 2),
            "params_follow": got["w"].sharding.is_equivalent_to(shard["w"], 2),
        }
    print("RESULT " + json.dumps(out))
    """
)


def test_sharded_matrix_on_8_devices():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["devices"] == 8
    for name in ("rows", "cols"):
        assert result[name]["diff"] < 1e-5, result
        assert result[name]["mu_follows"] and result[name]["params_follow"], result


def test_newton_schulz_runs_once_per_matrix_shape_and_gives_the_per_leaf_directions():
    """Leaves whose matrices have the same shape are orthogonalized in one batched iteration (one
    set of products per shape in the compiled step, however many layers), with each leaf's
    direction what the iteration gives it alone."""
    rng = np.random.default_rng(3)
    shapes = {f"layer{i}": (6, 10) for i in range(5)} | {"wide": (10, 6), "stack": (2, 6, 10), "empty": (0, 4)}
    grads = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
    dims = {k: MuonDimensionNumbers(1, 2) if k == "stack" else MuonDimensionNumbers() for k in shapes}
    tx = scale_by_muon(weight_dimension_numbers=dims, nesterov=False, beta=0.0)
    updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
    for name, g in grads.items():
        if g.size == 0:
            assert updates[name].shape == g.shape
            continue
        alone = newton_schulz(g, ns_steps=5)  # the iteration on this leaf's matrices alone
        np.testing.assert_allclose(updates[name], alone, rtol=1e-5, atol=1e-6, err_msg=name)
    text = jax.jit(tx.update).lower(grads, tx.init(grads)).as_text()
    # (6, 10) and (10, 6) and the (2, 6, 10) stack share the wide shape (6, 10): one batched iteration of
    # 5 steps, 3 products each
    assert text.count("stablehlo.dot_general") == 15, text.count("stablehlo.dot_general")
