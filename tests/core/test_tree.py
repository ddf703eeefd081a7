"""gradtx.tree: arithmetic against NumPy, structure errors that name paths, values by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.core import numerics, tree

from references.tree import numpy_block_norm

A = {"x": jnp.asarray([1.0, -2.0]), "y": [jnp.asarray(3.0), jnp.asarray([[4.0, -5.0]])]}
B = {"x": jnp.asarray([0.5, 0.5]), "y": [jnp.asarray(-1.0), jnp.asarray([[2.0, 1.0]])]}


def flat(t):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(t)])


def test_arithmetic_matches_numpy_on_the_flattened_tree():
    a, b = flat(A), flat(B)
    np.testing.assert_allclose(flat(tree.add(A, B)), a + b)
    np.testing.assert_allclose(flat(tree.sub(A, B)), a - b)
    np.testing.assert_allclose(flat(tree.scale(3.0, A)), 3 * a)
    np.testing.assert_allclose(flat(tree.add_scaled(A, -2.0, B)), a - 2 * b)
    assert float(tree.vdot(A, B)) == pytest.approx(a @ b)
    assert float(tree.sum(A)) == pytest.approx(a.sum())
    assert float(tree.norm(A)) == pytest.approx(np.linalg.norm(a))
    assert float(tree.norm(A, squared=True)) == pytest.approx(a @ a)
    assert float(tree.norm(A, 1)) == pytest.approx(np.abs(a).sum())
    assert float(tree.norm(A, "inf")) == pytest.approx(np.abs(a).max())
    assert tree.size(A) == a.size
    assert float(tree.norm({})) == 0.0


def test_like_and_cast_respect_dtypes():
    z = tree.zeros_like(A, dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 and not np.any(np.asarray(x, np.float32)) for x in jax.tree.leaves(z))
    f = tree.full_like(A, 7.0)
    assert flat(f).tolist() == [7.0] * flat(A).size
    assert all(x.dtype == jnp.float16 for x in jax.tree.leaves(tree.cast(A, jnp.float16)))


@pytest.mark.parametrize(
    "got, message",
    [
        ({"x": A["x"]}, "'y/0' is missing from got"),
        ({**A, "z": jnp.ones(1)}, "'z' is present only in got"),
        ({"x": A["x"], "y": (A["y"][0], A["y"][1])}, "containers differ"),
    ],
)
def test_structure_errors_name_the_first_difference(got, message):
    with pytest.raises(ValueError, match=message):
        tree.check_same_structure(A, got, "expected", "got")


def test_get_set_and_paths():
    state = gradtx.adam().init({"w": jnp.zeros(2)})
    assert [p for p, _ in tree.get_all_with_path(state, "count")] == ["0/count", "1/count"]
    with pytest.raises(KeyError, match="ambiguous"):
        tree.get(state, "count")
    mu = tree.get(state, "mu")
    assert jax.tree.structure(mu) == jax.tree.structure({"w": 0})
    new = tree.set(state, **{"mu": {"w": jnp.ones(2)}, "0/count": 3})
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert tree.get(new, "mu")["w"].tolist() == [1.0, 1.0] and int(tree.get(new, "0/count")) == 3
    assert tree.get(new, "0/count").dtype == jnp.int32
    with pytest.raises(ValueError, match="shape"):
        tree.set(state, **{"mu/w": jnp.ones(3)})
    with pytest.raises(ValueError, match="does not match"):
        tree.set(state, mu={"v": jnp.ones(2)})
    with pytest.raises(KeyError, match="no value named 'nope'"):
        tree.get(state, "nope")


def test_where_clip_allclose_ones_and_random_like():
    picked = tree.where(jnp.asarray(True), A, B)
    assert tree.allclose(picked, A) and not tree.allclose(A, B)
    assert not tree.allclose(A, {"x": A["x"]})
    per_leaf = tree.where(jax.tree.map(lambda x: x > 0, A), A, B)
    np.testing.assert_allclose(flat(per_leaf), np.where(flat(A) > 0, flat(A), flat(B)))
    np.testing.assert_allclose(flat(tree.clip(A, -1.0, 2.0)), np.clip(flat(A), -1, 2))
    assert flat(tree.ones_like(A)).tolist() == [1.0] * flat(A).size
    noise = tree.random_like(jax.random.key(0), A)
    assert jax.tree.structure(noise) == jax.tree.structure(A)
    leaves = [np.asarray(x) for x in jax.tree.leaves(noise)]
    assert not np.allclose(leaves[0][:1], leaves[2].ravel()[:1])  # independent keys per leaf


# ------------------------------------------------ packed reductions (the fast path of tree.norm)


def many_leaves(scale):
    """A tree of 40 small leaves of mixed shapes and dtypes, a leaf above the packing limit, a
    complex leaf and a None: norms take the packed path on one device."""
    rng = np.random.default_rng(0)
    small = {
        f"l{i}": jnp.asarray(rng.normal(size=(i % 5 + 1, 3)) * scale, (jnp.float32, jnp.bfloat16)[i % 2])
        for i in range(40)
    }
    return {
        "small": small,
        "big": jnp.asarray(rng.normal(size=tree.PACK_BELOW + 3) * scale, jnp.float32),
        "complex": jnp.asarray(rng.normal(size=4) + 1j * rng.normal(size=4), jnp.complex64) * scale,
        "none": None,
        "empty": jnp.zeros((0, 2)),
    }


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])
@pytest.mark.parametrize("ord", [1, 2, "inf"])
def test_packed_norm_equals_the_leafwise_norm_and_numpy(monkeypatch, scale, ord):
    t = many_leaves(scale)
    x = np.concatenate([np.abs(np.ravel(np.asarray(v, np.complex128))) for v in jax.tree.leaves(t)])
    expected = {1: np.sum(x), 2: np.sqrt(np.sum((x / x.max()) ** 2)) * x.max(), "inf": np.max(x)}[ord]
    packed = [jax.jit(lambda t: tree.norm(t, ord))(t), tree.norm(t, ord)]
    monkeypatch.setattr(tree, "PACK_BELOW", 0)  # every leaf on its own: the per-leaf reference
    leafwise = jax.jit(lambda t: tree.norm(t, ord))(t)
    assert len(tree._packed([jnp.ones(3), jnp.ones(2)])) == 2
    for got in packed:
        np.testing.assert_allclose(float(got), expected, rtol=2e-6)
        np.testing.assert_allclose(float(got), float(leafwise), rtol=2e-6)


def test_packing_concatenates_only_small_leaves_and_only_on_one_device():
    parts = tree._packed([jnp.ones(3), jnp.ones(tree.PACK_BELOW), jnp.ones((2, 2))])
    assert [p.shape for p in parts] == [(tree.PACK_BELOW,), (7,)]
    assert len(tree._packed([jnp.ones(3)])) == 1


# --------------------------------- block norms (clip_by_block_rms, trust ratios, parameter scales)


def block_tree(scale):
    """Large leaves (one at ``scale``, one always at 1), a small bfloat16 leaf and a complex leaf at
    ``scale``, a None and an empty leaf: at 1e30 and 1e-30 one large leaf leaves the fast path."""
    rng = np.random.default_rng(1)
    n = tree.PACK_BELOW
    return {
        "big": jnp.asarray(rng.normal(size=(2, n // 2 + 5)) * scale, jnp.float32),
        "steady": jnp.asarray(rng.normal(size=n + 7), jnp.float32),
        "small": jnp.asarray(rng.normal(size=(3, 4)) * scale, jnp.bfloat16),
        "complex": jnp.asarray(rng.normal(size=5) + 1j * rng.normal(size=5), jnp.complex64) * scale,
        "none": None,
        "empty": jnp.zeros((0, 3)),
    }


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 0.0])
@pytest.mark.parametrize("rms", [False, True])
def test_block_norms_equal_numpy_and_safe_norm_leaf_by_leaf(scale, rms):
    t = block_tree(scale)
    for got in (tree.block_norms(t, rms), jax.jit(lambda t: tree.block_norms(t, rms))(t)):
        assert jax.tree.structure(got) == jax.tree.structure(t)
        for (path, x), norm in zip(tree.leaves_with_path(t), jax.tree.leaves(got)):
            assert norm.shape == () and norm.dtype == numerics.norm_dtype(x), tree.path_str(path)
            reference = float(numerics.safe_rms(x) if rms else numerics.safe_norm(x))
            np.testing.assert_allclose(float(norm), numpy_block_norm(x, rms), rtol=2e-6, err_msg=tree.path_str(path))
            np.testing.assert_allclose(float(norm), reference, rtol=2e-6, err_msg=tree.path_str(path))


def test_block_norms_keep_inf_and_nan_where_the_leaf_has_them():
    n = tree.PACK_BELOW
    t = {"inf": jnp.ones(n).at[3].set(jnp.inf), "nan": jnp.ones(n).at[3].set(jnp.nan), "fine": jnp.full(n, 2.0)}
    got = jax.jit(tree.block_norms)(t)
    assert float(got["inf"]) == np.inf and np.isnan(float(got["nan"]))
    np.testing.assert_allclose(float(got["fine"]), 2.0 * np.sqrt(n), rtol=1e-6)
