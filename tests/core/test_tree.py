"""gradtx.tree: arithmetic against NumPy, structure errors that name paths, values by name,
the moment updates against float64 references, and the Optax names of gradtx.tree_utils."""

import dataclasses
import inspect
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import gradtx.tree_utils
from gradtx.core import numerics, paths, tree

from references.tree import (
    as64,
    numpy_bias_correction,
    numpy_block_norm,
    numpy_infinity_moment,
    numpy_moment,
    numpy_moment_per_elem_norm,
)

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


def test_where_clip_allclose_ones_and_random_like():
    picked = tree.where(jnp.asarray(True), tree_x=A, tree_y=B)
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
            reference = float(numerics.stable_rms(x) if rms else numerics.stable_norm(x))
            np.testing.assert_allclose(float(norm), numpy_block_norm(x, rms), rtol=2e-6, err_msg=tree.path_str(path))
            np.testing.assert_allclose(float(norm), reference, rtol=2e-6, err_msg=tree.path_str(path))


def test_block_norms_keep_inf_and_nan_where_the_leaf_has_them():
    n = tree.PACK_BELOW
    t = {"inf": jnp.ones(n).at[3].set(jnp.inf), "nan": jnp.ones(n).at[3].set(jnp.nan), "fine": jnp.full(n, 2.0)}
    got = jax.jit(tree.block_norms)(t)
    assert float(got["inf"]) == np.inf and np.isnan(float(got["nan"]))
    np.testing.assert_allclose(float(got["fine"]), 2.0 * np.sqrt(n), rtol=1e-6)


# ------------------------------------------------ a mixed tree: dict, list, NamedTuple, four dtypes


class Pair(NamedTuple):
    first: jax.Array
    second: dict


def mixed(seed):
    """Leaves of float32, bfloat16 and float16 and of shapes (), (2,), (4,), (3, 4), (2, 2, 1); every
    entry has a magnitude in [0.5, 2], so that it can divide."""
    rng = np.random.default_rng(seed)

    def draw(shape, dtype):
        return jnp.asarray(rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape), dtype)

    return {
        "dense": {"w": draw((3, 4), jnp.float32), "b": draw((4,), jnp.bfloat16)},
        "blocks": [draw((2,), jnp.float16), Pair(draw((), jnp.float32), {"z": draw((2, 2, 1), jnp.float32)})],
    }


X, Y, Z = mixed(0), mixed(1), mixed(2)
COMPLEX = {"z": jnp.asarray([1 + 2j, -3 + 0.5j, 2j], jnp.complex64), "r": jnp.asarray([[1.5, -2.0]], jnp.float32)}
RTOL = {jnp.dtype(jnp.float32): 2e-6, jnp.dtype(jnp.bfloat16): 1e-2, jnp.dtype(jnp.float16): 2e-3}
RTOL[jnp.dtype(jnp.complex64)] = RTOL[jnp.dtype(jnp.float32)]


def flat64(t):
    return np.concatenate([np.ravel(as64(x)) for x in jax.tree.leaves(t)])


def assert_leaves_close(got, like, expected):
    """``got`` has the structure of ``like``, and each leaf is close to the float64 one in ``expected``."""
    assert jax.tree.structure(got) == jax.tree.structure(like)
    for (path, g), e in zip(tree.leaves_with_path(got), expected):
        rtol = RTOL[jnp.dtype(g.dtype)]
        np.testing.assert_allclose(as64(g), e, rtol=rtol, atol=4 * rtol, err_msg=tree.path_str(path))


BINARY = {
    "add": (lambda x, y: tree.add(x, y, Z), lambda a, b, c: a + b + c),
    "sub": (tree.sub, lambda a, b, c: a - b),
    "mul": (tree.mul, lambda a, b, c: a * b),
    "div": (tree.div, lambda a, b, c: a / b),
    "add_scale": (lambda x, y: tree.add_scale(x, -0.75, y), lambda a, b, c: a - 0.75 * b),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", BINARY)
def test_binary_operations_match_numpy_leaf_by_leaf_in_the_promoted_dtype(name, jit):
    op, reference = BINARY[name]
    got = (jax.jit(op) if jit else op)(X, Y)
    leaves = zip(jax.tree.leaves(X), jax.tree.leaves(Y), jax.tree.leaves(Z))
    assert_leaves_close(got, X, [reference(as64(x), as64(y), as64(z)) for x, y, z in leaves])
    for g, x in zip(jax.tree.leaves(got), jax.tree.leaves(X)):
        assert g.dtype == x.dtype  # the same dtypes on both sides: nothing promoted


def test_division_of_integers_is_true_division_and_dtypes_promote():
    got = tree.div({"a": jnp.array([1, 3])}, {"a": jnp.array([2, 4])})["a"]
    assert jnp.issubdtype(got.dtype, jnp.floating) and got.tolist() == [0.5, 0.75]
    mixed_sum = tree.add_scale({"a": jnp.ones(2, jnp.bfloat16)}, 0.5, {"a": jnp.ones(2, jnp.float32)})["a"]
    assert mixed_sum.dtype == jnp.float32 and mixed_sum.tolist() == [1.5, 1.5]
    assert tree.add_scaled({"a": jnp.ones(2, jnp.bfloat16)}, 0.5, {"a": jnp.ones(2)})["a"].dtype == jnp.bfloat16


BROKEN = {"dense": X["dense"], "blocks": [X["blocks"][0], Pair(X["blocks"][1].first, {"y": jnp.ones((2, 2, 1))})]}
MISSING = "'blocks/1/second/z' is missing from {0} \\('blocks/1/second/y' is in its place\\)"


@pytest.mark.parametrize(
    "op, prefix",
    [
        (tree.add, "add: tree_y does not match tree_x"),
        (lambda x, y: tree.add(x, x, y), "add: other_trees\\[0\\] does not match tree_x"),
        (tree.sub, "sub: tree_y does not match tree_x"),
        (tree.mul, "mul: tree_y does not match tree_x"),
        (tree.div, "div: tree_y does not match tree_x"),
        (lambda x, y: tree.add_scale(x, 2.0, y), "add_scale: tree_y does not match tree_x"),
        (tree.vdot, "vdot: tree_y does not match tree_x"),
        (tree.cast_like, "cast_like: other_tree does not match tree"),
        (lambda x, y: tree.where(True, x, y), "where: tree_y does not match tree_x"),
        (lambda x, y: tree.update_moment(x, y, 0.9, 1), "update_moment: moments do not match updates"),
    ],
)
def test_binary_operations_name_the_first_differing_path(op, prefix):
    other = re.search(r": (\S+) do", prefix).group(1).replace("\\", "")
    with pytest.raises(ValueError, match=f"^{prefix}: {MISSING.format(re.escape(other))}$"):
        op(X, BROKEN)


def test_vdot_conjugates_the_first_tree_and_sums_over_every_leaf():
    other = {"z": jnp.asarray([2 - 1j, 1j, -1 + 1j], jnp.complex64), "r": jnp.asarray([[0.5, 3.0]], jnp.float32)}
    expected = np.vdot(flat64(COMPLEX), flat64(other))  # np.vdot conjugates its first argument
    for f in (tree.vdot, jax.jit(tree.vdot)):
        np.testing.assert_allclose(complex(f(COMPLEX, other)), expected, rtol=1e-6)
    np.testing.assert_allclose(float(tree.vdot(X, Y)), flat64(X) @ flat64(Y), rtol=1e-2)


@pytest.mark.parametrize("associative_reduction", [False, True])
def test_sum_pairwise_and_in_turn_match_numpy(associative_reduction):
    many = {f"l{i}": jnp.full((i + 1,), 0.1 * (i + 1), jnp.float32) for i in range(7)}  # 7 leaves: an odd count
    total = sum((i + 1) * 0.1 * (i + 1) for i in range(7))
    for f in (tree.sum, jax.jit(tree.sum, static_argnums=1)):
        np.testing.assert_allclose(float(f(many, associative_reduction)), total, rtol=1e-6)
        np.testing.assert_allclose(float(f(X, associative_reduction)), flat64(X).sum(), rtol=1e-2, atol=0.05)
    assert float(tree.sum({}, associative_reduction)) == 0.0


def test_max_and_min_are_exact_and_name_a_complex_leaf():
    for f in (tree.max, jax.jit(tree.max)):
        assert float(f(X)) == flat64(X).max() and f(X).dtype == jnp.float32
    for f in (tree.min, jax.jit(tree.min)):
        assert float(f(X)) == flat64(X).min()
    ints = {"a": jnp.array([3, 9], jnp.int32), "empty": jnp.zeros((0,), jnp.int32), "none": None}
    assert int(tree.max(ints)) == 9 and tree.max(ints).dtype == jnp.int32 and int(tree.min(ints)) == 3
    assert float(tree.max({})) == -np.inf and float(tree.min({"e": jnp.zeros(0)})) == np.inf
    assert np.isnan(float(tree.max({"a": jnp.array([1.0, jnp.nan])})))
    with pytest.raises(TypeError, match="^max: 'z' is complex64, and complex numbers have no order$"):
        tree.max(COMPLEX)
    with pytest.raises(TypeError, match="^min: 'z' is complex64"):
        tree.min(COMPLEX)


@pytest.mark.parametrize("ord, reference", [(None, 2), (2, 2), (1, 1), ("inf", np.inf), (np.inf, np.inf)])
def test_norm_orders_and_squares_match_numpy(ord, reference):
    x = flat64(X)
    expected = np.linalg.norm(x, reference)
    np.testing.assert_allclose(float(tree.norm(X, ord)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(jax.jit(lambda t: tree.norm(t, ord, squared=True))(X)), expected**2, rtol=1e-5)


@pytest.mark.parametrize("ord", [0, 3, "fro", -np.inf])
def test_norm_rejects_other_orders(ord):
    with pytest.raises(ValueError, match="^norm: ord must be one of None, 1, 2, 'inf', inf, got "):
        tree.norm(X, ord)


def test_conj_and_real_match_numpy_and_leave_real_leaves_alone():
    conj, real = tree.conj(COMPLEX), jax.jit(tree.real)(COMPLEX)
    np.testing.assert_array_equal(np.asarray(conj["z"]), np.conj(np.asarray(COMPLEX["z"])))
    np.testing.assert_array_equal(np.asarray(real["z"]), np.real(np.asarray(COMPLEX["z"])))
    assert real["z"].dtype == jnp.float32 and conj["z"].dtype == jnp.complex64
    for t in (tree.conj(X), tree.real(X)):
        assert_leaves_close(t, X, [as64(x) for x in jax.tree.leaves(X)])


def test_batch_shape_broadcasts_every_leaf_behind_the_batch_axes():
    t = {**X, "scalar": 2.5, "none": None}
    for f in (lambda t: tree.batch_shape(t, (3, 2)), jax.jit(lambda t: tree.batch_shape(t, (3, 2)))):
        got = f(t)
        assert got["none"] is None
        for x, g in zip(jax.tree.leaves(t), jax.tree.leaves(got)):
            np.testing.assert_array_equal(as64(g), np.broadcast_to(as64(x), (3, 2, *np.shape(x))))
            assert g.dtype == jnp.result_type(x)
    assert tree.batch_shape(X)["dense"]["w"].shape == (3, 4)
    for bad in [(-1,), 3, (2.0,), (True,)]:
        with pytest.raises(ValueError, match="^batch_shape: shape must be a tuple of non-negative integers, got"):
            tree.batch_shape(X, bad)


def test_cast_like_takes_the_dtypes_of_the_other_tree():
    other = jax.tree.map(lambda x: x.astype(jnp.float16 if x.dtype == jnp.float32 else jnp.float32), X)
    for f in (tree.cast_like, jax.jit(tree.cast_like)):
        got = f(X, other)
        assert [g.dtype for g in jax.tree.leaves(got)] == [o.dtype for o in jax.tree.leaves(other)]
        assert_leaves_close(got, X, [as64(x) for x in jax.tree.leaves(X)])
    kept = tree.cast_like({"a": jnp.ones(1, jnp.int32)}, {"a": 1.5})  # a Python number has no dtype
    assert kept["a"].dtype == jnp.int32


def test_dtype_of_uniform_mixed_and_empty_trees():
    assert tree.dtype({"a": jnp.ones(2), "b": [jnp.zeros((1, 3)), 1.0]}) == jnp.float32
    assert tree.dtype({}) == jnp.result_type(float) and tree.dtype(None) == jnp.result_type(float)
    message = "^dtype: the leaves of tree have several dtypes: float16 at 'blocks/0', float32 at 'blocks/1/first', "
    with pytest.raises(ValueError, match=message + "bfloat16 at 'dense/b'; pass mixed_dtype_handler="):
        tree.dtype(X)
    assert tree.dtype(X, "promote") == jnp.float32  # float16 and bfloat16 promote to float32
    assert tree.dtype(X, "highest") == jnp.float32  # above both
    with pytest.raises(ValueError, match="^dtype: float16 and bfloat16 have no order .* no lowest dtype"):
        tree.dtype(X, "lowest")
    with pytest.raises(ValueError, match="^dtype: bfloat16 and float16 have no order .* no highest dtype"):
        tree.dtype({"h": jnp.ones(1, jnp.float16), "b": jnp.ones(1, jnp.bfloat16)}, "highest")
    ladder = {"i8": jnp.ones(1, jnp.int8), "i32": jnp.ones(1, jnp.int32), "f32": jnp.ones(1), "bool": jnp.ones(1, bool)}
    assert tree.dtype(ladder, "highest") == jnp.float32 and tree.dtype(ladder, "lowest") == jnp.bool_
    assert tree.dtype({"i8": ladder["i8"], "i32": ladder["i32"]}, "lowest") == jnp.int8
    assert tree.dtype({"c": COMPLEX["z"], "f": jnp.ones(1, jnp.bfloat16)}, "highest") == jnp.complex64
    with pytest.raises(ValueError, match="^dtype: mixed_dtype_handler must be one of None, 'promote', 'highest', "):
        tree.dtype(X, "max")


# ------------------------------------------------------------------------- random trees


def test_split_key_like_and_random_like_use_one_split_key_per_leaf_in_flattening_order():
    key = jax.random.key(3)
    expected_keys = jax.random.split(key, len(jax.tree.leaves(X)))
    keys = tree.split_key_like(key, X)
    assert jax.tree.structure(keys) == jax.tree.structure(X)
    for got, want in zip(jax.tree.leaves(keys), expected_keys):
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
    for f in (tree.random_like, jax.jit(tree.random_like)):
        noise = f(key, X)
        for g, x, k in zip(jax.tree.leaves(noise), jax.tree.leaves(X), expected_keys):
            assert g.dtype == x.dtype and g.shape == x.shape
            np.testing.assert_array_equal(as64(g), as64(jax.random.normal(k, x.shape, x.dtype)))
    uniform = tree.random_like(key, X, lambda k, shape, dtype: jax.random.uniform(k, shape, dtype), jnp.float32)
    assert all(g.dtype == jnp.float32 and 0 <= float(jnp.min(g)) for g in jax.tree.leaves(uniform))
    assert len({float(jnp.ravel(g)[0]) for g in jax.tree.leaves(uniform)}) == len(jax.tree.leaves(X))
    assert tree.split_key_like(key, {}) == {} and tree.random_like(key, {"n": None}) == {"n": None}


def test_unwrap_random_key_data_replaces_typed_keys_only():
    key = jax.random.key(0)
    t = {"key": key, "raw": jax.random.PRNGKey(1), "x": X["dense"]["w"]}
    got = tree.unwrap_random_key_data(t)
    np.testing.assert_array_equal(got["key"], jax.random.key_data(key))
    assert got["key"].dtype == jnp.uint32 and got["raw"] is t["raw"] and got["x"] is t["x"]


# ----------------------------------------------------------------------------- moments


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_moment_matches_numpy_and_keeps_the_moment_dtypes(order, jit):
    f = jax.jit(tree.update_moment, static_argnums=3) if jit else tree.update_moment
    got = f(X, Y, 0.9, order)
    assert_leaves_close(
        got, Y, [numpy_moment(g, m, 0.9, order) for g, m in zip(jax.tree.leaves(X), jax.tree.leaves(Y))]
    )
    assert [g.dtype for g in jax.tree.leaves(got)] == [m.dtype for m in jax.tree.leaves(Y)]
    moments = jax.tree.map(lambda x: x.astype(jnp.complex64), COMPLEX)
    got = f(COMPLEX, moments, 0.5, order)
    expected = [numpy_moment(g, m, 0.5, order) for g, m in zip(jax.tree.leaves(COMPLEX), jax.tree.leaves(moments))]
    assert_leaves_close(got, COMPLEX, expected)


def test_update_moment_keeps_none_and_refuses_to_drop_an_imaginary_part():
    got = tree.update_moment({"a": None, "b": jnp.ones(2)}, {"a": None, "b": jnp.zeros(2, jnp.bfloat16)}, 0.5, 1)
    assert got["a"] is None and got["b"].dtype == jnp.bfloat16 and got["b"].tolist() == [0.5, 0.5]
    with pytest.raises(TypeError, match="^update_moment: the update at 'z' is complex but its moment is float32"):
        tree.update_moment(COMPLEX, tree.real(COMPLEX), 0.9, 1)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_moment_per_elem_norm_averages_the_modulus_to_a_power(order):
    g = {**COMPLEX, "signed": jnp.asarray([-2.0, 0.5], jnp.float32)}
    m = {"z": jnp.ones(3, jnp.float32), "r": jnp.full((1, 2), 0.5, jnp.bfloat16), "signed": jnp.zeros(2, jnp.float32)}
    for f in (tree.update_moment_per_elem_norm, jax.jit(tree.update_moment_per_elem_norm, static_argnums=3)):
        got = f(g, m, 0.8, order)
        expected = [
            numpy_moment_per_elem_norm(a, b, 0.8, order) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(m))
        ]
        assert_leaves_close(got, g, expected)  # |-2|**3 = 8: the odd power of the magnitude, never negative
        assert [x.dtype for x in jax.tree.leaves(got)] == [x.dtype for x in jax.tree.leaves(m)]


def test_update_infinity_moment_is_adamax_norm_with_eps_added_to_the_update():
    u = jax.tree.map(jnp.abs, Y)
    for eps in (0.0, 0.3):
        got = jax.jit(tree.update_infinity_moment)(X, u, 0.7, eps)
        expected = [numpy_infinity_moment(g, m, 0.7, eps) for g, m in zip(jax.tree.leaves(X), jax.tree.leaves(u))]
        assert_leaves_close(got, u, expected)
    z = tree.update_infinity_moment(COMPLEX, tree.zeros_like(tree.real(COMPLEX)), 0.9, 0.0)
    np.testing.assert_allclose(np.asarray(z["z"]), np.abs(np.asarray(COMPLEX["z"])), rtol=1e-6)  # the modulus
    with pytest.raises(TypeError, match="^update_infinity_moment: the moment at 'z' is complex64; it must be real"):
        tree.update_infinity_moment(COMPLEX, COMPLEX, 0.9, 0.0)


@pytest.mark.parametrize("count", [1, 2, 10, 1000])
def test_bias_correction_matches_numpy_and_survives_bfloat16(count):
    for decay in (0.9, 0.999):
        exact = float(np.float32(decay))  # the decay as float32 holds it; 1 - decay**t then loses eps / (1 - decay**t)
        lost = np.finfo(np.float32).eps / (1 - exact**count)
        for f in (tree.bias_correction, jax.jit(tree.bias_correction)):
            got = f(X, decay, jnp.asarray(count))
            assert [g.dtype for g in jax.tree.leaves(got)] == [x.dtype for x in jax.tree.leaves(X)]
            for g, m in zip(jax.tree.leaves(got), jax.tree.leaves(X)):
                rtol = RTOL[jnp.dtype(g.dtype)] + lost
                np.testing.assert_allclose(as64(g), numpy_bias_correction(m, exact, count), rtol=rtol)
    # in bfloat16 itself 0.999 rounds to 1, and 1 / (1 - 0.999**t) is inf; the correction is taken in float32
    assert float(1 / (1 - jnp.asarray(0.999, jnp.bfloat16) ** count)) == np.inf
    one = tree.bias_correction({"m": jnp.ones(1, jnp.bfloat16)}, jnp.asarray(0.999, jnp.float32), count)["m"]
    assert one.dtype == jnp.bfloat16 and float(one[0]) == pytest.approx(1 / (1 - 0.999**count), rel=1e-2)


def test_allclose_counts_nans_as_equal_only_when_asked():
    t = {"a": jnp.array([1.0, jnp.nan])}
    assert not tree.allclose(t, t) and tree.allclose(t, t, equal_nan=True)
    assert tree.allclose(X, tree.add_scale(X, 1e-7, X)) and not tree.allclose(X, Y, rtol=0.1, atol=0.1)


# ----------------------------------------------------------------- values by key, as in Optax

PARAMS = {"w": jnp.zeros(2), "b": jnp.zeros(1)}


def path_strs(found):
    return [tree.path_str(p) for p, _ in found]


def test_keys_name_dict_entries_fields_and_named_tuples_as_optax_does():
    state = gradtx.adam(1e-3).init(PARAMS)
    found = gradtx.tree.get_all_with_path(state, "count")
    assert path_strs(found) == ["0/count", "1/count"]
    assert found[0][0][-1] == gradtx.tree_utils.NamedTupleKey("ScaleByAdamState", "count")
    assert gradtx.tree.get(state, "mu") is state[0].mu and gradtx.tree.get(state, "ScaleByAdamState") is state[0]
    assert gradtx.tree.get(state, "nope") is None and gradtx.tree.get(state, "nope", default=-1) == -1
    assert gradtx.tree.get(state, "0") is None  # a single name is no sequence index ...
    assert gradtx.tree.get(state, "0/mu/w") is state[0].mu["w"]  # ... but a path suffix may hold one
    assert gradtx.tree.get(state, "/count") is None and gradtx.tree.get(state, "/1/count") is state[1].count
    assert gradtx.tree.get_all_with_path(state, "/") == [] and gradtx.tree.get_all_with_path(state, "//") == []
    assert path_strs(gradtx.tree.get_all_with_path({"a": {"a": 1}, "b": [{"a": 2}]}, "a")) == ["a", "a/a", "b/0/a"]
    assert gradtx.tree.get({3: 1, 4: {3: 2}}, 4) == {3: 2}  # any dict key, as in Optax
    assert all(gradtx.tree.node_at(state, p) is v for p, v in found)  # the paths lead back to the values
    assert int(jax.jit(lambda s: gradtx.tree.get(s, "count") + 1)(state)) == 1
    with pytest.raises(KeyError, match="get: 'w' names several values: '0/mu/w', '0/nu/w'; pass a longer path"):
        gradtx.tree.get(state, "w")


def test_filtering_sees_each_match_with_its_optax_path():
    state = gradtx.chain(gradtx.sgd(0.1, momentum=0.9), gradtx.add_noise(0.1, 0.5, 0)).init(PARAMS)
    seen = []

    def filtering(path, value):
        seen.append((tree.path_str(path), type(value).__name__))
        return isinstance(path[-1], paths.NamedTupleKey) and path[-1].tuple_name == "ScaleByScheduleState"

    assert gradtx.tree.get(state, "count", filtering=filtering) is state[0][1].count
    assert seen == [("0/1/count", "ArrayImpl"), ("1/count", "ArrayImpl")]
    assert gradtx.tree.get(state, "count", filtering=lambda p, v: False) is None


def test_attributes_of_registered_dataclasses_are_keys_too():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Slots:
        velocity: jax.Array
        steps: jax.Array

    t = {"opt": Slots(jnp.ones(2), jnp.asarray(3))}
    assert gradtx.tree.get(t, "velocity") is t["opt"].velocity and gradtx.tree.get(t, "opt/steps") is t["opt"].steps


def test_count_is_the_step_count_though_every_block_counts():
    def step(tx, state):
        return tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)[1]

    for tx in (
        gradtx.adam(1e-3),
        gradtx.adamw(1e-3),
        gradtx.lion(1e-3),
        gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(gradtx.schedules.linear_schedule(1.0, 0.0, 9))),
        gradtx.inject_hyperparams(gradtx.adam)(learning_rate=lambda count: 0.1 / (count + 1)),
    ):
        state = tx.init(PARAMS)
        assert len(gradtx.tree.get_all_with_path(state, "count")) > 1
        assert gradtx.tree.get(state, "count") is gradtx.step_count(state) and int(gradtx.tree.get(state, "count")) == 0
        state = jax.jit(lambda s, tx=tx: step(tx, step(tx, step(tx, s))))(state)
        assert int(gradtx.tree.get(state, "count")) == 3
    other = (gradtx.adam(1e-3).init(PARAMS), {"count": jnp.zeros(2)})  # a value named count that counts nothing
    with pytest.raises(KeyError, match="get: 'count' names several values: '0/0/count', '0/1/count', '1/count'"):
        gradtx.tree.get(other, "count")


class Wrapper(NamedTuple):
    hyperparams: dict
    inner_state: tuple


class Inner(NamedTuple):
    hyperparams: dict


def test_a_wrappers_hyperparameter_stands_for_those_it_wraps():
    wrapped = Wrapper({"lr": jnp.asarray(0.1)}, (Inner({"lr": jnp.asarray(0.2)}), Inner({"lr": jnp.asarray(0.3)})))
    assert gradtx.tree.get(wrapped, "lr") is wrapped.hyperparams["lr"]
    with pytest.raises(KeyError, match="'lr' names several values: '0/hyperparams/lr', '1/hyperparams/lr'"):
        gradtx.tree.get(wrapped.inner_state, "lr")  # siblings: neither stands for the other
    beside = (wrapped, {"lr": jnp.asarray(0.4)})  # a value outside any storage
    with pytest.raises(KeyError, match="names several values"):
        gradtx.tree.get(beside, "lr")
    injected = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1).init(PARAMS)
    assert float(gradtx.tree.get(injected, "learning_rate")) == pytest.approx(0.1)
    with pytest.raises(KeyError, match="'b1' names several values"):
        gradtx.tree.get(gradtx.chain(gradtx.adam(1e-3), gradtx.adam(1e-3)).init(PARAMS), "b1")
    assert paths.HYPERPARAMS_FIELD == gradtx.core.hyperparams.HYPERPARAMS_FIELD


def test_set_replaces_every_match_and_keeps_structure_and_dtypes():
    state = gradtx.adam(1e-3).init(PARAMS)
    new = gradtx.tree.set(state, count=5)
    assert [int(c) for _, c in gradtx.tree.get_all_with_path(new, "count")] == [5, 5]
    assert new[0].count.dtype == jnp.int32 and jax.tree.structure(new) == jax.tree.structure(state)
    only = gradtx.tree.set(state, lambda p, v: p[-1].tuple_name == "ScaleByAdamState", count=7)
    assert (int(only[0].count), int(only[1].count)) == (7, 0)
    both = gradtx.tree.set(state, mu={"w": jnp.ones(2), "b": jnp.ones(1)}, w=jnp.full(2, 3.0))
    assert both[0].mu["w"].tolist() == [1.0, 1.0] and both[0].nu["w"].tolist() == [3.0, 3.0]  # mu's new value wins
    suffix = gradtx.tree.set(state, **{"0/nu/b": jnp.full(1, 2.0), "1/count": 1})
    assert suffix[0].nu["b"].tolist() == [2.0] and int(suffix[1].count) == 1 and int(suffix[0].count) == 0
    traced = jax.jit(lambda s, c: gradtx.tree.set(s, count=c))(state, jnp.asarray(9.0))
    assert traced[0].count.dtype == jnp.int32 and int(traced[0].count) == 9


def test_set_errors_name_the_key_and_the_path():
    state = gradtx.adam(1e-3).init(PARAMS)
    with pytest.raises(KeyError, match="set: no value is named 'nope' in this tree"):
        gradtx.tree.set(state, nope=1)
    with pytest.raises(KeyError, match="set: no value that filtering accepts is named 'count'"):
        gradtx.tree.set(state, lambda p, v: False, count=1)
    with pytest.raises(
        ValueError, match=r"set: the new value for '0/mu/w' has shape \(3,\), but the old one has shape"
    ):
        gradtx.tree.set(state, **{"mu/w": jnp.ones(3)})
    with pytest.raises(ValueError, match="set: the new value for '0/mu' does not match the old one: 'b' is missing"):
        gradtx.tree.set(state, mu={"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="set: '0/count' is named by both 'count' and '0/count'"):
        gradtx.tree.set(state, **{"count": 1, "0/count": 2})
    with pytest.raises(TypeError, match="set: the new value for '0/count' must be an array or a number"):
        gradtx.tree.set(state, count=lambda c: c + 1)


def test_map_params_maps_the_params_shaped_parts_of_a_state():
    tx = gradtx.adam(1e-3)
    state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), tx.init(PARAMS), PARAMS)[1]
    offsets = {"w": jnp.asarray(10.0), "b": jnp.asarray(20.0)}
    for initable in (tx, tx.init):
        got = gradtx.tree.map_params(initable, lambda x, o: x + o, state, offsets)
        for name in ("mu", "nu"):
            for leaf in ("w", "b"):
                np.testing.assert_allclose(
                    got[0]._asdict()[name][leaf], as64(state[0]._asdict()[name][leaf]) + offsets[leaf]
                )
        assert (
            got[0].count is state[0].count
            and got[1].hyperparams["learning_rate"] is state[1].hyperparams["learning_rate"]
        )
    marked = gradtx.tree.map_params(tx, lambda x: "p", state, transform_non_params=lambda v: "n")
    assert (
        marked[0].mu == {"w": "p", "b": "p"}
        and marked[0].count == "n"
        and marked[1].hyperparams == {"learning_rate": "n"}
    )
    blocks = {"blk": {"x": jnp.zeros(2), "y": jnp.zeros(3)}}
    whole = gradtx.tree.map_params(
        gradtx.sgd(0.1, momentum=0.9),
        sorted,
        gradtx.sgd(0.1, momentum=0.9).init(blocks),
        is_leaf=lambda n: isinstance(n, dict) and "x" in n,
    )
    assert whole[0].trace == {"blk": ["x", "y"]}
    with pytest.raises(ValueError, match="map_params: the state does not have the structure initable's init gives"):
        gradtx.tree.map_params(gradtx.sgd(0.1), lambda x: x, state)


# ---------------------------------------------------- Optax's names, arguments and defaults

# The parameters of optax.tree's functions (Optax 0.2.8), as ``inspect.signature`` lists them: gradtx
# takes the same names in the same places with the same defaults, and may add keyword-only ones.
OPTAX_PARAMETERS = {
    "add": "tree_x, tree_y, *other_trees",
    "add_scale": "tree_x, scalar, tree_y",
    "allclose": "a, b, rtol=1e-05, atol=1e-08, equal_nan=False",
    "batch_shape": "tree, shape=()",
    "bias_correction": "moment, decay, count",
    "cast": "tree, dtype",
    "cast_like": "tree, other_tree",
    "clip": "tree, min_value=None, max_value=None",
    "conj": "tree",
    "div": "tree_x, tree_y",
    "dtype": "tree, mixed_dtype_handler=None",
    "full_like": "tree, fill_value, dtype=None",
    "get": "tree, key, default=None, filtering=None",
    "get_all_with_path": "tree, key, filtering=None",
    "map_params": "initable, f, state, /, *rest, transform_non_params=None, is_leaf=None",
    "max": "tree",
    "min": "tree",
    "mul": "tree_x, tree_y",
    "norm": "tree, ord=None, squared=False",
    "ones_like": "tree, dtype=None",
    "random_like": "rng_key, target_tree, sampler=normal, dtype=None",
    "real": "tree",
    "scale": "scalar, tree",
    "set": "tree, filtering=None, /, **kwargs",
    "size": "tree",
    "split_key_like": "rng_key, target_tree",
    "sub": "tree_x, tree_y",
    "sum": "tree, associative_reduction=False",
    "unwrap_random_key_data": "input_tree",
    "update_infinity_moment": "updates, moments, decay, eps",
    "update_moment": "updates, moments, decay, order",
    "update_moment_per_elem_norm": "updates, moments, decay, order",
    "vdot": "tree_x, tree_y",
    "where": "condition, tree_x, tree_y",
    "zeros_like": "tree, dtype=None",
}


def parameters_text(fn):
    """A signature as ``OPTAX_PARAMETERS`` writes it: names, stars, ``/``, ``*`` and defaults."""
    parts, kinds = [], inspect.Parameter
    parameters = list(inspect.signature(fn).parameters.values())
    for i, p in enumerate(parameters):
        if p.kind == kinds.KEYWORD_ONLY and not any(x.startswith("*") for x in parts):
            parts.append("*")
        text = {kinds.VAR_POSITIONAL: "*", kinds.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.default is not inspect.Parameter.empty:
            text += "=" + getattr(p.default, "__name__", repr(p.default))
        parts.append(text)
        if p.kind == kinds.POSITIONAL_ONLY and (i + 1 == len(parameters) or parameters[i + 1].kind != p.kind):
            parts.append("/")
    return ", ".join(parts)


@pytest.mark.parametrize("name", sorted(OPTAX_PARAMETERS))
def test_optax_names_arguments_and_defaults(name):
    fn = getattr(gradtx.tree, name)
    assert getattr(gradtx.tree_utils, f"tree_{name}") is fn
    text = parameters_text(fn)
    assert text == OPTAX_PARAMETERS[name] or text.startswith(OPTAX_PARAMETERS[name] + ", *, "), text


def test_tree_utils_holds_the_tree_names_and_named_tuple_key():
    expected = {f"tree_{name}" for name in OPTAX_PARAMETERS} | {"NamedTupleKey"}
    assert set(gradtx.tree_utils.__all__) == expected
    assert list(inspect.signature(gradtx.tree_utils.NamedTupleKey).parameters) == ["tuple_name", "name"]
    key = gradtx.tree_utils.NamedTupleKey("ScaleByAdamState", "mu")
    assert str(key) == "ScaleByAdamState.mu" and key == paths.NamedTupleKey("ScaleByAdamState", "mu")
    assert gradtx.tree.random_like.__defaults__[0] is jax.random.normal
    assert set(OPTAX_PARAMETERS) <= set(gradtx.tree.__all__)


# ---------------------------------------------------------------- docstrings (house style)


def args_entries(doc):
    lines = inspect.cleandoc(doc).splitlines()
    at = lines.index("Args:")
    assert lines[at - 1] == "", "no blank line before Args:"
    entries = []
    for line in lines[at + 1 :]:
        if line and not line.startswith(" "):
            break
        if line.startswith("    ") and not line.startswith("     "):
            entries.append(line.strip().split(":")[0].lstrip("*"))
    return entries


PUBLIC = [
    (f"{module.__name__}.{name}", fn)
    for module in (tree, paths)
    for name, fn in inspect.getmembers(module, lambda f: inspect.isfunction(f) or inspect.isclass(f))
    if not name.startswith("_") and fn.__module__ == module.__name__ and name not in ("Filtering",)
]


@pytest.mark.parametrize("fn", [fn for _, fn in PUBLIC], ids=[name for name, _ in PUBLIC])
def test_every_public_function_has_args_in_signature_order_and_an_example(fn):
    assert args_entries(fn.__doc__) == list(inspect.signature(fn).parameters)
    assert re.search(r"^Example:\n    >>> ", inspect.cleandoc(fn.__doc__), re.M), "no Example: with a doctest"


def test_the_docstring_check_can_fail():
    def documented(a, b=1):
        """Summary.

        Args:
            b: the second.
            a: the first.

        Example:
            >>> 1
            1
        """

    assert args_entries(documented.__doc__) == ["b", "a"] != list(inspect.signature(documented).parameters)


@pytest.mark.parametrize("jit", [False, True])
def test_a_nan_in_a_large_leaf_is_not_dropped_by_max_min_and_the_inf_norm(jit):
    """XLA:CPU's vectorised max and min skip a NaN in 4,096 or more elements (jax 0.10.2)."""
    wrap = jax.jit if jit else (lambda f: f)
    big = jnp.ones(8192).at[4000].set(jnp.nan)
    tree = {"big": big, "small": jnp.arange(3.0), "ints": jnp.arange(3)}
    for fn in (gradtx.tree.max, gradtx.tree.min, lambda t: gradtx.tree.norm(t, "inf"), gradtx.tree.norm):
        assert np.isnan(float(wrap(fn)(tree)))
    clean = {"big": jnp.ones(8192).at[5].set(-7.0), "ints": jnp.arange(3)}
    assert [float(wrap(f)(clean)) for f in (gradtx.tree.max, gradtx.tree.min)] == [2.0, -7.0]
    assert float(wrap(lambda t: gradtx.tree.norm(t, "inf"))(clean)) == 7.0
