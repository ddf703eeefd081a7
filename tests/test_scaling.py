"""scale, scale_by_learning_rate, scale_by_schedule and chains of transforms,
step by step against NumPy references."""

import pytest

import gradtx
import references as R

DTYPES = ["float32", "float64"]
MODES = R.MODES


def schedule(step):
    """Called with 0 on the first update."""
    return 0.1 / (1 + step)


def linear(step):
    return 1.0 - 0.05 * step


SCALE_CASES = [
    ("scale", "half", dict(step_size=0.5), None),
    ("scale", "negative", dict(step_size=-2.0), None),
    ("scale_by_learning_rate", "constant", dict(learning_rate=0.1), None),
    ("scale_by_learning_rate", "no_flip", dict(learning_rate=0.1, flip_sign=False), None),
    ("scale_by_learning_rate", "schedule", dict(learning_rate=schedule), None),
    ("scale_by_learning_rate", "schedule_no_flip", dict(learning_rate=schedule, flip_sign=False), None),
    ("scale_by_schedule", "decaying", dict(step_size_fn=schedule), None),
    ("scale_by_schedule", "linear", dict(step_size_fn=linear), None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(SCALE_CASES))
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


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
            gradtx.clip(2.0), gradtx.scale_by_rms(decay=0.8), gradtx.add_decayed_weights(0.1, mask=R.MASK_TREE),
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


BASIC = {
    "scale": dict(step_size=0.5),
    "scale_by_learning_rate": dict(learning_rate=schedule),
    "scale_by_schedule": dict(step_size_fn=schedule),
}


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
