"""Layer-wise scaling: the trust ratio, the parameter block's norm or RMS, and normalization by
the update's norm.

Each is run for 12 steps against an independent NumPy reference written from its paper, on the
nested tree of ``references`` (dicts, a list, a tuple, a 0-d and a 4-d leaf), eagerly and under
``jax.jit``, in float32 and float64; then on zero, tiny and huge gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

import references as R
from helpers import EDGE_SCALES, check_edge_cases
from references.block_scaling import NormalizeByUpdateNorm, ParamBlock, TrustRatio, norm, rms

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]


# ------------------------------------------------------------ step by step agreement

CASES = [
    ("scale_by_trust_ratio", "default", dict(), TrustRatio),
    ("scale_by_trust_ratio", "custom", dict(min_norm=0.5, trust_coefficient=0.02, eps=1e-3), TrustRatio),
    ("scale_by_param_block_norm", "default", dict(), lambda **kw: ParamBlock(norm, **kw)),
    ("scale_by_param_block_norm", "large_floor", dict(min_scale=2.0), lambda **kw: ParamBlock(norm, **kw)),
    ("scale_by_param_block_rms", "default", dict(), lambda **kw: ParamBlock(rms, **kw)),
    ("scale_by_param_block_rms", "large_floor", dict(min_scale=1.0), lambda **kw: ParamBlock(rms, **kw)),
    ("normalize_by_update_norm", "default", dict(), NormalizeByUpdateNorm),
    ("normalize_by_update_norm", "custom", dict(scale_factor=-0.3, eps=0.5), NormalizeByUpdateNorm),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref", [pytest.param(n, kw, ref, id=f"{n}-{label}") for n, label, kw, ref in CASES]
)
def test_matches_reference(name, kwargs, ref, dtype, mode):
    tx, ref = getattr(gradtx, name)(**kwargs), ref(**kwargs)
    if name.startswith(("scale_by", "normalize")):
        # a direction, not an optimizer: step along it with -0.1 (a trust ratio of 1
        # alone would send a 0-d leaf to exactly 0 or double it)
        tx, ref = gradtx.chain(tx, gradtx.scale(-0.1)), R.Chain(ref, R.Scale(-0.1))
    R.run_against_reference(tx, ref, dtype, mode)


@pytest.mark.parametrize("mode", MODES)
def test_zero_params_and_zero_grads_have_a_trust_ratio_of_one(mode):
    """A zero leaf (a fresh bias) still moves, and a zero gradient gives a zero update: no 0/0."""
    tx = gradtx.scale_by_trust_ratio()
    params = {"bias": jnp.zeros(3), "w": jnp.ones(3)}
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    u, _ = update({"bias": jnp.full(3, 0.5), "w": jnp.zeros(3)}, tx.init(params), params)
    np.testing.assert_array_equal(u["bias"], np.full(3, 0.5))
    np.testing.assert_array_equal(u["w"], np.zeros(3))


def test_trust_ratio_keeps_the_update_norm_at_the_param_norm():
    params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.full(4, -2.0)}
    grads = {"w": jnp.full((3, 4), 1e-3), "b": jnp.full(4, 50.0)}
    tx = gradtx.scale_by_trust_ratio(trust_coefficient=0.1)
    u, _ = tx.update(grads, tx.init(params), params)
    for k in params:
        assert float(jnp.linalg.norm(u[k])) == pytest.approx(0.1 * float(jnp.linalg.norm(params[k])), rel=1e-5)


@pytest.mark.parametrize("name", ["scale_by_trust_ratio", "scale_by_param_block_norm", "scale_by_param_block_rms"])
def test_transforms_that_need_params_say_so(name):
    tx = getattr(gradtx, name)()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


TRANSFORMS = {
    "scale_by_trust_ratio": lambda: gradtx.scale_by_trust_ratio(),
    "scale_by_param_block_norm": lambda: gradtx.scale_by_param_block_norm(),
    "scale_by_param_block_rms": lambda: gradtx.scale_by_param_block_rms(),
    "normalize_by_update_norm": lambda: gradtx.normalize_by_update_norm(),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    direction = name.startswith(("scale_by", "normalize"))
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=not direction)
    if scale == 0.0 and direction:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates)), "a zero gradient must give a zero update"


def test_tiny_gradients_are_not_lost_to_underflow():
    """1e-30 squared underflows in float32; the scaled norms still see the true ratio."""
    params = {"w": jnp.full(4, 2.0)}
    tx = gradtx.scale_by_trust_ratio()
    u, _ = tx.update({"w": jnp.full(4, 1e-30)}, tx.init(params), params)
    np.testing.assert_allclose(u["w"], np.full(4, 2.0), rtol=1e-5)  # |u| scaled up to |w|
    tx = gradtx.normalize_by_update_norm(eps=0.0)
    u, _ = tx.update({"w": jnp.full(4, 1e30)}, tx.init(params))
    np.testing.assert_allclose(u["w"], np.full(4, 0.5), rtol=1e-5)
