"""Independent NumPy references for the gradtx transforms and optimizers, one module per family,
and the harness that runs gradtx step by step against them.

Every reference is written from the papers' equations, cited in each module (Kingma & Ba 2015
for Adam/AdaMax, Dozat 2016 for NAdam, Reddi et al. 2018 for AMSGrad, Loshchilov & Hutter 2019
for decoupled weight decay, Tieleman & Hinton 2012 and Graves 2013 for (centred) RMSProp, Duchi
et al. 2011 for AdaGrad, ...). They work on flat lists of float64 NumPy arrays (one per pytree
leaf) and keep their state in plain Python attributes, so nothing here depends on gradtx: JAX is
only used to flatten pytrees and to feed arrays to the library under test.

A reference is an object with ``init(params)`` and ``update(grads, params)``; ``update`` returns
the list of updates and advances the reference's own state. The step number ``t`` starts at 1 on
the first update.

This module holds the test trees, the base ``Ref`` and ``Chain``, the harness and the tables
``REF_TRANSFORMS`` and ``REF_OPTIMIZERS``; it re-exports the references of the Adam, RMSProp,
SGD, momentum, scaling, clipping and weight-decay families, which tests use as ``R.<name>``
(``import references as R``). The family modules reach these shared pieces the same way, or by
name. pyproject.toml puts tests/ on ``sys.path``, so ``import references`` works from every
test folder.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

STEPS = 12

# --------------------------------------------------------------------------- trees

# Scales per leaf path, so that leaves live at very different magnitudes.
PARAM_SCALES = {"dense/w": 1.0, "dense/b": 0.1, "blocks/0": 2.0, "blocks/1/0": 0.5, "blocks/1/1": 3.0}
GRAD_SCALES = {"dense/w": 1.0, "dense/b": 0.01, "blocks/0": 5.0, "blocks/1/0": 0.3, "blocks/1/1": 30.0}

# A weight-decay mask with the same structure as `param_tree`.
MASK_TREE = {"dense": {"w": True, "b": False}, "blocks": [True, (False, True)]}


def mask_matrices(params):
    """A mask *function*: decay only the leaves with two or more dimensions."""
    return jax.tree.map(lambda x: np.ndim(x) >= 2, params)


def _build(make):
    """The test tree: dicts, a list, a tuple, a 0-d leaf and a 4-d leaf."""
    return {
        "dense": {"w": make("dense/w", (3, 4)), "b": make("dense/b", (4,))},
        "blocks": [make("blocks/0", (2, 1, 3, 2)), (make("blocks/1/0", ()), make("blocks/1/1", (5,)))],
    }


def param_tree(dtype, seed=0):
    rng = np.random.default_rng(seed)

    def make(path, shape):
        return np.asarray(PARAM_SCALES[path] * (rng.standard_normal(shape) + 0.5), dtype)

    return _build(make)


def grad_trees(dtype, steps=STEPS, seed=1, zero_until=0):
    """Deterministic pseudo-random gradients, different at every step, with a
    per-step, per-leaf random magnitude (so second moments also go *down*).

    With ``zero_until=k`` the first element of every leaf is exactly 0 during
    the first ``k`` steps (the whole 0-d leaf then).
    """
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):

        def make(path, shape, step=step):
            g = GRAD_SCALES[path] * np.exp(0.7 * rng.standard_normal()) * rng.standard_normal(shape)
            g = np.array(g, dtype=np.float64).reshape(-1)
            if step < zero_until:
                g[0] = 0.0
            return np.asarray(g.reshape(shape), dtype)

        out.append(_build(make))
    return out


def none_param_tree(dtype, seed=0):
    """A tree with a ``None`` leaf."""
    rng = np.random.default_rng(seed)
    return {"a": np.asarray(rng.standard_normal((3,)) + 0.5, dtype), "b": None}


def none_grad_trees(dtype, steps=STEPS, seed=1, zero_until=0):
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        g = np.exp(0.7 * rng.standard_normal()) * rng.standard_normal((3,))
        if step < zero_until:
            g[0] = 0.0
        out.append({"a": np.asarray(g, dtype), "b": None})
    return out


def leaves64(tree):
    return [np.asarray(x, dtype=np.float64) for x in jax.tree.leaves(tree)]


def leaf_paths(tree):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def value_at(v, count):
    """A hyperparameter that may be a schedule, evaluated at ``count`` (= t - 1)."""
    return float(v(count)) if callable(v) else float(v)


# --------------------------------------------------------------------------- references


class Ref:
    def init(self, params):
        self.t = 0

    def update(self, grads, params):  # pragma: no cover - interface
        raise NotImplementedError


class Chain(Ref):
    def __init__(self, *refs):
        self.refs = [r for r in refs if r is not None]

    def init(self, params):
        for r in self.refs:
            r.init(params)

    def update(self, grads, params):
        for r in self.refs:
            grads = r.update(grads, params)
        return grads


def find(ref, cls):
    """The first reference of type ``cls`` inside ``ref`` (which may be a Chain)."""
    if isinstance(ref, cls):
        return ref
    for r in getattr(ref, "refs", ()):
        found = find(r, cls)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- harness

DTYPES = {"float32": np.float32, "float64": np.float64}

# Tolerances relative to each leaf's own scale (its largest magnitude), for
# updates and params over 12 steps. float64 work is ~1e-16 per operation. In
# float32 it is ~1e-7, but a hyperparameter such as b2 = 0.999 is itself
# rounded by up to 6e-8 absolute, which 1 - b2**t (~1e-3 at t = 1) turns into
# a ~1.3e-5 relative error of v_hat and ~6e-6 of the Adam update: hence 2e-5.
RTOL = {"float32": 2e-5, "float64": 1e-10}


def precision(dtype_name):
    """A context in which JAX computes in ``dtype_name`` (x64 only where needed)."""
    if dtype_name == "float64":
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def state_signature(state):
    """The tree structure of a state and the dtype of each of its leaves."""
    return jax.tree.structure(state), [jnp.asarray(x).dtype for x in jax.tree.leaves(state)]


def assert_close_per_leaf(got_leaves, want_leaves, scales, rtol, what, paths):
    """``|got - want| <= rtol * (|want| + scale)`` leaf by leaf, where a leaf's
    ``scale`` is the largest magnitude it has had so far (so that an entry that
    happens to be near 0, e.g. a 0-d leaf, is not held to a relative bound)."""
    assert len(got_leaves) == len(want_leaves), (what, len(got_leaves), len(want_leaves))
    for path, got, want, scale in zip(paths, got_leaves, want_leaves, scales):
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == want.shape, f"{what} {path}: shape {got.shape} != {want.shape}"
        assert np.all(np.isfinite(want)), f"reference {what} at leaf {path} is not finite"
        np.testing.assert_allclose(
            got,
            want,
            rtol=rtol,
            atol=rtol * max(scale, 1e-30),
            equal_nan=False,
            err_msg=f"{what} at leaf {path}",
        )


def _running_max(scales, leaves):
    return [max(s, float(np.max(np.abs(x))) if x.size else 0.0) for s, x in zip(scales, leaves)]


def run_against_reference(
    tx, ref, dtype_name, mode, *, steps=STEPS, rtol=None, trees=(param_tree, grad_trees), zero_until=0
):
    """Run ``tx`` and ``ref`` side by side for ``steps`` steps and compare the
    params (and the updates) after every step.

    ``mode`` is ``"eager"`` or ``"jit"`` (``jax.jit(tx.update)``). The state
    must keep its tree structure and leaf dtypes across updates, and the params
    their dtypes. Returns the reference, for regime checks by the caller.
    """
    import gradtx

    rtol = RTOL[dtype_name] if rtol is None else rtol
    dtype = DTYPES[dtype_name]
    make_params, make_grads = trees
    with precision(dtype_name):
        params_np = make_params(dtype)
        grads_np = make_grads(dtype, steps, zero_until=zero_until)
        paths = leaf_paths(params_np)
        params = jax.tree.map(jnp.asarray, params_np)
        state = tx.init(params)
        signature = state_signature(state)
        update = jax.jit(tx.update) if mode == "jit" else tx.update

        ref_params = leaves64(params_np)
        ref.init(ref_params)
        param_scales = _running_max([0.0] * len(ref_params), ref_params)
        update_scales = [0.0] * len(ref_params)
        for step, g_np in enumerate(grads_np, start=1):
            grads = jax.tree.map(jnp.asarray, g_np)
            updates, state = update(grads, state, params)
            params = gradtx.apply_updates(params, updates)

            ref_updates = ref.update(leaves64(g_np), ref_params)
            ref_params = [p + u for p, u in zip(ref_params, ref_updates)]

            assert jax.tree.structure(params) == jax.tree.structure(params_np)
            for p in jax.tree.leaves(params):
                assert p.dtype == dtype, f"step {step}: param dtype {p.dtype} != {np.dtype(dtype)}"
            assert state_signature(state) == signature, f"step {step}: state structure/dtypes changed"
            update_scales = _running_max(update_scales, ref_updates)
            param_scales = _running_max(param_scales, ref_params)
            assert_close_per_leaf(
                jax.tree.leaves(updates), ref_updates, update_scales, rtol, f"step {step}: updates", paths
            )
            assert_close_per_leaf(
                jax.tree.leaves(params), ref_params, param_scales, rtol, f"step {step}: params", paths
            )
    return ref


def check_jit_equals_eager(tx, params, grads, rtol=1e-6):
    """``tx.update`` jitted and eager, step by step from the same state, give the same updates and
    states, up to XLA's fusions (``rtol`` of each leaf, relative to its largest entry too)."""
    s_eager = s_jit = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads:
        u_eager, s_eager = tx.update(g, s_eager, params)
        u_jit, s_jit = update(g, s_jit, params)
        for a, b in zip(jax.tree.leaves((u_eager, s_eager)), jax.tree.leaves((u_jit, s_jit))):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.max(np.abs(a), initial=0.0))


def jnp_trees(trees):
    """A list of NumPy trees as trees of JAX arrays."""
    return [jax.tree.map(jnp.asarray, t) for t in trees]


def check_bfloat16(tx, mode, steps=3, finite=True):
    """bfloat16 params and grads: params stay bfloat16, state keeps its signature
    (and, with ``finite``, the params stay finite)."""
    import gradtx

    bf16 = jnp.bfloat16
    params = jax.tree.map(jnp.asarray, param_tree(bf16))
    state = tx.init(params)
    signature = state_signature(state)
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    for step, g_np in enumerate(grad_trees(bf16, steps), start=1):
        updates, state = update(jax.tree.map(jnp.asarray, g_np), state, params)
        params = gradtx.apply_updates(params, updates)
        assert jax.tree.structure(params) == jax.tree.structure(g_np)
        for path, p in zip(leaf_paths(params), jax.tree.leaves(params)):
            assert p.dtype == bf16, f"step {step}: param {path} has dtype {p.dtype}"
            if finite:
                assert np.all(np.isfinite(np.asarray(p, np.float32))), (
                    f"step {step}: bfloat16 param {path} is not finite: {np.asarray(p, np.float32)}"
                )
        assert state_signature(state) == signature, f"step {step}: state structure/dtypes changed"


def check_empty_tree(tx, mode):
    import gradtx

    update = jax.jit(tx.update) if mode == "jit" else tx.update
    state = tx.init({})
    for _ in range(2):
        updates, state = update({}, state, {})
        assert updates == {}
        assert gradtx.apply_updates({}, updates) == {}


# --------------------------------------------------------------------------- shared test bodies

MODES = ["eager", "jit"]


def transform_params(cases):
    """``(transform, id, kwargs, float32 tolerance or None)`` rows as pytest params."""
    return [pytest.param(name, kwargs, tol, id=f"{name}-{label}") for name, label, kwargs, tol in cases]


def check_transform(name, kwargs, f32_tol, dtype_name, mode, **run_kwargs):
    """gradtx.<name>(**kwargs) used alone (``params += updates``) against its reference."""
    import gradtx

    tx = getattr(gradtx, name)(**kwargs)
    ref = REF_TRANSFORMS[name](**kwargs)
    rtol = f32_tol if (dtype_name == "float32" and f32_tol) else None
    return run_against_reference(tx, ref, dtype_name, mode, rtol=rtol, **run_kwargs)


def check_none_leaf(tx, ref, mode):
    """``{"a": array, "b": None}``: "b" stays None, "a" follows the reference."""
    import gradtx

    run_against_reference(tx, ref, "float32", mode, steps=4, trees=(none_param_tree, none_grad_trees))
    params = {"a": jnp.ones(3), "b": None}
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    updates, _ = update({"a": jnp.ones(3), "b": None}, tx.init(params), params)
    assert updates["b"] is None
    assert gradtx.apply_updates(params, updates)["b"] is None


def check_bfloat16_empty_and_none(make_tx, mode):
    """A transform keeps bfloat16 dtypes, works on an empty tree, and leaves a ``None`` leaf alone."""
    check_bfloat16(make_tx(), mode)
    check_empty_tree(make_tx(), mode)
    params = {"a": jnp.ones(3), "b": None}
    tx = make_tx()
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    updates, _ = update({"a": jnp.ones(3), "b": None}, tx.init(params), params)
    assert updates["b"] is None and bool(jnp.all(jnp.isfinite(updates["a"])))


# --------------------------------------------------------------------------- the families
# Imported last: each family module builds on Ref, Chain and value_at above.

from references.adam import (  # noqa: E402
    Adam,
    AdaMax,
    AMSGrad,
    ref_adam,
    ref_adamax,
    ref_adamaxw,
    ref_adamw,
    ref_amsgrad,
    ref_nadam,
    ref_nadamw,
)
from references.clipping import Clip, ClipByGlobalNorm  # noqa: E402
from references.momentum import EMA, Trace  # noqa: E402
from references.regularizers import AddDecayedWeights  # noqa: E402
from references.rmsprop import RMS, RSS, Stddev, ref_adagrad, ref_rmsprop  # noqa: E402
from references.scaling import Scale, ScaleByLearningRate, ScaleBySchedule  # noqa: E402
from references.sgd import ref_sgd  # noqa: E402


def _without(keys, make):
    """A constructor that drops keyword arguments the reference has no use for
    (accumulator dtypes: the reference always works in float64)."""

    def build(*args, **kwargs):
        for k in keys:
            kwargs.pop(k, None)
        return make(*args, **kwargs)

    return build


# gradtx transform name -> reference constructor taking the same arguments.
REF_TRANSFORMS = {
    "scale_by_adam": _without(("mu_dtype", "nu_dtype"), Adam),
    "scale_by_amsgrad": _without(("mu_dtype",), AMSGrad),
    "scale_by_adamax": AdaMax,
    "scale_by_rms": RMS,
    "scale_by_stddev": Stddev,
    "scale_by_rss": RSS,
    "trace": _without(("accumulator_dtype",), Trace),
    "ema": _without(("accumulator_dtype",), EMA),
    "add_decayed_weights": AddDecayedWeights,
    "clip": Clip,
    "clip_by_global_norm": ClipByGlobalNorm,
    "scale": Scale,
    "scale_by_learning_rate": ScaleByLearningRate,
    "scale_by_schedule": ScaleBySchedule,
}

# gradtx optimizer name -> reference constructor taking the same keyword arguments.
REF_OPTIMIZERS = {
    "sgd": ref_sgd,
    "adam": ref_adam,
    "adamw": ref_adamw,
    "nadam": ref_nadam,
    "nadamw": ref_nadamw,
    "amsgrad": ref_amsgrad,
    "adamax": ref_adamax,
    "adamaxw": ref_adamaxw,
    "rmsprop": ref_rmsprop,
    "adagrad": ref_adagrad,
}
