"""clip and clip_by_global_norm, step by step against NumPy references, in the
clipping, the not-clipping and (for the global norm) the mixed regime."""

import pytest

import gradtx
import references as R

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
