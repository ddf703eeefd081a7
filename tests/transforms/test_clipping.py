"""The clipping transforms, step by step against NumPy references.

clip and clip_by_global_norm in the clipping, the not-clipping and (for the global norm) the
mixed regime; block RMS clipping, adaptive (unit-wise) gradient clipping and per-example
clipping (Shazeer & Stern 2018; Brock et al. 2021; Abadi et al. 2016; McMahan et al. 2018),
eagerly and under ``jax.jit``, in float32 and float64; edge cases with zero, tiny and huge
gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases
from references.clipping import AGC, BATCH, BlockRMS, ref_global_clip, ref_layer_clip

DTYPES = ["float32", "float64"]
MODES = R.MODES

# The gradients have leaves of scale 0.01 to 30 (times a per-step factor), so
# max_delta = 0.5 clips some entries and not others; 1e4 clips none. Their
# global norm is ~70 * exp(0.7 z): 1.0 always clips, 1e4 never, 60 sometimes.
CLIP_CASES = [
    ("clip", "clipping", dict(max_delta=0.5), None),
    ("clip", "not_clipping", dict(max_delta=1e4), None),
    ("clip_by_global_norm", "clipping", dict(max_norm=1.0), None),
    ("clip_by_global_norm", "not_clipping", dict(max_norm=1e4), None),
    ("clip_by_global_norm", "mixed", dict(max_norm=60.0), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(CLIP_CASES))
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    ref = R.check_transform(name, kwargs, f32_tol, dtype, mode)
    clipped = R.find(ref, R.Clip if name == "clip" else R.ClipByGlobalNorm).clipped
    limit = kwargs.get("max_delta", kwargs.get("max_norm"))
    # the case really is in the regime its name says
    assert clipped == (limit < 100)
    if name == "clip_by_global_norm" and limit == 60.0:
        steps = R.find(ref, R.ClipByGlobalNorm).clipped_steps
        assert any(steps) and not all(steps)


BASIC = {"clip": dict(max_delta=0.5), "clip_by_global_norm": dict(max_norm=1.0)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_keeps_dtypes(name, mode):
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_bfloat16_stays_finite(name, mode):
    """With bfloat16 params and grads the params stay finite for 12 steps."""
    R.check_bfloat16(getattr(gradtx, name)(**BASIC[name]), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_empty_tree(name, mode):
    R.check_empty_tree(getattr(gradtx, name)(**BASIC[name]), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BASIC))
def test_none_leaf(name, mode):
    R.check_none_leaf(getattr(gradtx, name)(**BASIC[name]), R.REF_TRANSFORMS[name](**BASIC[name]), mode)


# ----------------------------------------------------------- block RMS and unit-wise clipping

BLOCK_CASES = [
    ("clip_by_block_rms", "threshold_1", dict(threshold=1.0), BlockRMS),
    ("clip_by_block_rms", "threshold_0.05", dict(threshold=0.05), BlockRMS),
    ("adaptive_grad_clip", "default_eps", dict(clipping=0.5), AGC),
    ("adaptive_grad_clip", "large_eps", dict(clipping=0.2, eps=0.5), AGC),
    ("adaptive_grad_clip", "axis_last", dict(clipping=0.3, axis=-1), AGC),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref", [pytest.param(n, kw, ref, id=f"{n}-{label}") for n, label, kw, ref in BLOCK_CASES]
)
def test_block_and_unit_clipping_matches_reference(name, kwargs, ref, dtype, mode):
    reference = ref(**kwargs)
    tx = gradtx.chain(getattr(gradtx, name)(**kwargs), gradtx.scale(-0.1))
    R.run_against_reference(tx, R.Chain(reference, R.Scale(-0.1)), dtype, mode)
    assert reference.clipped > 0 and reference.kept > 0, "both regimes must be exercised"


def test_adaptive_grad_clip_with_a_tuple_of_axes():
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal((2, 3, 4, 5)), 3 * rng.standard_normal((2, 3, 4, 5))
    tx = gradtx.adaptive_grad_clip(0.3, axis=(0, 2))
    u, _ = tx.update(jnp.asarray(g, jnp.float32), tx.init(w), jnp.asarray(w, jnp.float32))
    (want,) = AGC(0.3, axis=(0, 2)).update([g], [w])
    np.testing.assert_allclose(u, want, rtol=2e-5)


def test_adaptive_grad_clip_units_are_the_outputs():
    w = jnp.ones((3, 2)) * jnp.array([1.0, 10.0])  # column norms sqrt(3) and 10 sqrt(3)
    g = jnp.ones((3, 2))  # column norms sqrt(3)
    tx = gradtx.adaptive_grad_clip(0.5)
    u, _ = tx.update(g, tx.init(w), w)
    np.testing.assert_allclose(u[:, 0], 0.5 * np.ones(3), rtol=1e-6)  # clipped to 0.5 |w_0|
    np.testing.assert_allclose(u[:, 1], np.ones(3), rtol=1e-6)  # within 0.5 |w_1|: kept
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(g, tx.init(w))
    with pytest.raises(ValueError, match="^clipping must be in"):
        gradtx.adaptive_grad_clip(0.0)
    with pytest.raises(ValueError, match="^threshold must be in"):
        gradtx.clip_by_block_rms(-1.0)
    assert gradtx.hyperparams(tx.init(w)) == {"clipping": 0.5, "eps": 1e-3}


# ------------------------------------------------------------------- per example


def per_example_tree(dtype, seed=0, scale=None):
    """Per-example gradients shaped like the reference tree, with a leading batch axis of 5;
    examples have very different norms so that some are clipped and some are not."""
    rng = np.random.default_rng(seed)
    sizes = np.array([0.01, 0.3, 1.0, 4.0, 30.0])

    def make(path, shape):
        x = rng.standard_normal((BATCH,) + shape) * R.GRAD_SCALES[path]
        x = x * sizes.reshape((BATCH,) + (1,) * len(shape))
        return np.asarray(x if scale is None else np.sign(x) * scale, dtype)

    return {
        "dense": {"w": make("dense/w", (3, 4)), "b": make("dense/b", (4,))},
        "blocks": [make("blocks/0", (2, 1, 3, 2)), (make("blocks/1/0", ()), make("blocks/1/1", (5,)))],
    }


def _close(got, want, rtol):
    for g, w in zip(jax.tree.leaves(got), want):
        scale = max(float(np.max(np.abs(w))) if np.size(w) else 0.0, 1e-30)
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [5.0, 100.0])  # the examples' norms are ~0.7, 10, 94, 250, 2250
def test_per_example_global_norm_clip_matches_reference(c, dtype, mode):
    fn = jax.jit(gradtx.per_example_global_norm_clip) if mode == "jit" else gradtx.per_example_global_norm_clip
    with R.precision(dtype):
        grads_np = per_example_tree(R.DTYPES[dtype])
        total, clipped = fn(jax.tree.map(jnp.asarray, grads_np), c)
        want, want_clipped = ref_global_clip(R.leaves64(grads_np), c)
        assert jax.tree.structure(total) == jax.tree.structure(grads_np)
        assert all(
            t.dtype == R.DTYPES[dtype] and t.shape == g.shape[1:]
            for t, g in zip(jax.tree.leaves(total), jax.tree.leaves(grads_np))
        )
        _close(total, want, R.RTOL[dtype])
        assert int(clipped) == want_clipped and 0 < want_clipped < BATCH


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("uniform", [True, False])
def test_per_example_layer_norm_clip_matches_reference(uniform, dtype, mode):
    fn = gradtx.per_example_layer_norm_clip
    if mode == "jit":
        fn = jax.jit(fn, static_argnames="uniform")
    with R.precision(dtype):
        grads_np = per_example_tree(R.DTYPES[dtype])
        total, clipped = fn(jax.tree.map(jnp.asarray, grads_np), 3.0, uniform=uniform)
        want, want_clipped = ref_layer_clip(R.leaves64(grads_np), 3.0, uniform)
        _close(total, want, R.RTOL[dtype])
        assert jax.tree.structure(clipped) == jax.tree.structure(grads_np)
        assert [int(n) for n in jax.tree.leaves(clipped)] == want_clipped
        assert 0 < sum(want_clipped) < BATCH * len(want_clipped)


def test_per_example_clipping_needs_a_common_batch_axis():
    bad = {"a": jnp.ones((4, 2)), "b": jnp.ones((3,))}
    with pytest.raises(ValueError, match="same leading batch dimension.*'a': \\(4, 2\\)"):
        gradtx.per_example_global_norm_clip(bad, 1.0)
    with pytest.raises(ValueError, match="same leading batch dimension"):
        gradtx.per_example_layer_norm_clip({"a": jnp.ones((4, 2)), "s": jnp.asarray(1.0)}, 1.0)
    with pytest.raises(ValueError, match="^l2_norm_clip must be in"):
        gradtx.per_example_global_norm_clip({"a": jnp.ones((4, 2))}, 0.0)


@pytest.mark.parametrize("scale", EDGE_SCALES)
def test_per_example_edge_cases(scale):
    grads = jax.tree.map(jnp.asarray, per_example_tree(np.float32, scale=scale))
    for c in [1.0, 1e-20]:
        total, clipped = jax.jit(gradtx.per_example_global_norm_clip)(grads, c)
        assert all(bool(jnp.all(jnp.isfinite(t))) for t in jax.tree.leaves(total))
        if scale == 0.0:
            assert int(clipped) == 0 and not any(bool(jnp.any(t)) for t in jax.tree.leaves(total))
        elif scale > c:
            # every example is clipped to norm c exactly, so the sum has norm at most B c
            norm = np.sqrt(sum(np.sum((np.asarray(t, np.float64) / c) ** 2) for t in jax.tree.leaves(total)))
            assert int(clipped) == BATCH and norm <= BATCH * (1 + 1e-5)
        else:
            assert int(clipped) == 0  # 1e-30 is below both thresholds
        total, clipped = gradtx.per_example_layer_norm_clip(grads, c, uniform=False)
        assert all(bool(jnp.all(jnp.isfinite(t))) for t in jax.tree.leaves(total))


TRANSFORMS = {
    "clip_by_block_rms": lambda: gradtx.clip_by_block_rms(1.0),
    "adaptive_grad_clip": lambda: gradtx.adaptive_grad_clip(0.1),
}


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=False)
    if scale == 0.0:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))
    if scale == 1e-30:  # far below every threshold: passed through unchanged
        assert all(bool(jnp.all(u == np.float32(1e-30))) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)
