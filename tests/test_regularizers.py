"""add_decayed_weights (u + wd * p, optionally masked, wd possibly a schedule),
step by step against a NumPy reference."""

import numpy as np
import pytest

import gradtx
import references as R

DTYPES = ["float32", "float64"]
MODES = R.MODES


def schedule(step):
    """Called with 0 on the first update."""
    return 0.3 / (1 + step)


DECAY_CASES = [
    ("add_decayed_weights", "constant", dict(weight_decay=0.1), None),
    ("add_decayed_weights", "zero", dict(weight_decay=0.0), None),
    ("add_decayed_weights", "mask_tree", dict(weight_decay=0.3, mask=R.MASK_TREE), None),
    ("add_decayed_weights", "mask_fn", dict(weight_decay=0.3, mask=R.mask_matrices), None),
    ("add_decayed_weights", "schedule", dict(weight_decay=schedule), None),
    ("add_decayed_weights", "schedule_mask", dict(weight_decay=schedule, mask=R.MASK_TREE), None),
]


@pytest.mark.parametrize("mode", R.MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,f32_tol", R.transform_params(DECAY_CASES))
def test_matches_reference(name, kwargs, f32_tol, dtype, mode):
    R.check_transform(name, kwargs, f32_tol, dtype, mode)


@pytest.mark.parametrize("mode", R.MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_decoupled_decay_in_a_chain(dtype, mode):
    """p <- p - lr * (g + wd * p), wd applied to the params before the step."""
    tx = gradtx.chain(gradtx.add_decayed_weights(0.5, mask=R.mask_matrices), gradtx.scale(-0.1))
    ref = R.Chain(R.AddDecayedWeights(0.5, mask=R.mask_matrices), R.Scale(-0.1))
    R.run_against_reference(tx, ref, dtype, mode)


def test_masks_are_discriminating():
    """The test masks differ from each other and from "everything"."""
    import jax

    by_tree = jax.tree.leaves(R.MASK_TREE)
    by_fn = jax.tree.leaves(R.mask_matrices(R.param_tree(np.float64)))
    assert by_tree != by_fn and not all(by_tree) and not all(by_fn) and any(by_fn)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_keeps_dtypes(mode):
    R.check_bfloat16(gradtx.add_decayed_weights(0.1), mode, finite=False)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_stays_finite(mode):
    R.check_bfloat16(gradtx.add_decayed_weights(0.1), mode, steps=12, finite=True)


@pytest.mark.parametrize("mode", MODES)
def test_empty_tree(mode):
    R.check_empty_tree(gradtx.add_decayed_weights(0.1), mode)


@pytest.mark.parametrize("mode", MODES)
def test_none_leaf(mode):
    R.check_none_leaf(gradtx.add_decayed_weights(0.1), R.AddDecayedWeights(0.1), mode)
