"""The twelve projections onto convex sets, against float64 NumPy references from the sets' definitions.

For every projection, on a scalar, a vector, a matrix, a 3-d array and a tree of three leaves
(float32, and float64 under x64): the result matches the reference (tests/references/projections.py:
the simplex by bisection on its threshold, the l1 sphere by trying all of its faces, the rest by
their closed forms); it lies in the set; a point of the set is left as it is; no point of 400
points of the set, built to lie in it (200 spread over the set, 200 near the result), is closer;
projecting twice changes nothing; ``jax.jit`` (with the scale or the bounds traced) gives the same.
Then the edge cases (the origin, ``scale = 0``, ``a = 0``, huge and tiny entries, empty trees and
``None`` leaves, low precision, complex leaves, integer leaves, ``jax.vmap``), the signatures
(Optax's names, positions and defaults), and bad input, each error naming the function and the
argument.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx.projections as P

from references import projections as ref

S = 1.5  # the scale of every set that has one
EPS = 0.05  # how far the points near the result are moved
KINDS = {"scalar": (), "vector": (7,), "matrix": (3, 4), "3d": (2, 3, 2), "tree": None}


def make_input(kind, rng, factor=3.0, dtype=np.float32):
    def leaf(shape):
        return (factor * rng.standard_normal(shape)).astype(dtype)

    if kind == "tree":
        return {"w": leaf((3, 2)), "b": leaf((4,)), "layers": [leaf((2,))]}
    return leaf(KINDS[kind])


def like(tree, make):
    """A tree shaped like ``tree`` whose leaves are ``make(leaf)``."""
    return jax.tree.map(lambda x: make(np.asarray(x)), tree)


def scale_rows(z, norms, s, inside_only):
    norms = np.where(norms > 0, norms, 1.0)[:, None]
    return z * (np.minimum(1.0, s / norms) if inside_only else s / norms)


def signs(rng, shape):
    return rng.choice([-1.0, 1.0], size=shape)


# ------------------------------------------------------------------ the table
# Each case: the extra arguments (rng, x) -> kwargs; the reference (v, f) -> flat result, with
# f the arguments flattened (see flat_args); the violation of the set's defining condition
# (y, f) -> number; points of the set built to lie in it, spread out (rng, n, f, m) and near
# a result y (rng, y, f, m).


def _box_args(rng, x):
    if not isinstance(x, dict):
        return {"lower": -0.5, "upper": 1.0}
    lower = {"w": like(x["w"], lambda w: (rng.standard_normal(w.shape) * 0.5 - 0.5).astype(np.float32)), "b": -0.25}
    lower["layers"] = [np.float32(0.0)]
    upper = {"w": like(x["w"], lambda w: np.asarray(lower["w"]) + 0.1 + np.abs(rng.standard_normal(w.shape))), "b": 0.5}
    upper["layers"] = [np.ones(2, np.float32)]
    return {"lower": lower, "upper": upper}


def _affine_args(rng, x, halfspace=False):
    a = like(x, lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32))
    if not halfspace:
        return {"a": a, "b": 0.7}
    v, va = ref.flatten(x)[0], ref.flatten(a)[0]
    return {"a": a, "b": float(va @ v) - 1.0}  # x is outside by construction


def _plane(z, f):
    a = f["a"]
    return z - ((z @ a - f["b"]) / (a @ a))[:, None] * a


def _half(rng, z, f, margin=0.0):
    """Each row moved onto the half-space if outside, then ``margin`` times a random amount further in."""
    a = f["a"]
    excess = np.maximum(z @ a - f["b"], 0) + margin * np.abs(rng.standard_normal(len(z)))
    return z - (excess / (a @ a))[:, None] * a


def _near(rng, y, m):
    return y[None, :] + EPS * rng.standard_normal((m, y.size))


CASES = {
    "projection_simplex": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.simplex(v, f["scale"]),
        violation=lambda y, f: max(-y.min(), abs(y.sum() - f["scale"])),
        spread=lambda rng, n, f, m: rng.dirichlet(np.ones(n), m) * f["scale"],
        near=lambda rng, y, f, m: scale_rows(z := np.maximum(_near(rng, y, m), 0), z.sum(1), f["scale"], False),
    ),
    "projection_l1_ball": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.l1_ball(v, f["scale"]),
        violation=lambda y, f: np.abs(y).sum() - f["scale"],
        spread=lambda rng, n, f, m: rng.dirichlet(np.ones(n), m) * f["scale"] * rng.random((m, 1)) * signs(rng, (m, n)),
        near=lambda rng, y, f, m: scale_rows(z := _near(rng, y, m), np.abs(z).sum(1), f["scale"], True),
    ),
    "projection_l1_sphere": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.l1_sphere(v, f["scale"]),
        violation=lambda y, f: abs(np.abs(y).sum() - f["scale"]),
        spread=lambda rng, n, f, m: rng.dirichlet(np.ones(n), m) * f["scale"] * signs(rng, (m, n)),
        near=lambda rng, y, f, m: scale_rows(z := _near(rng, y, m), np.abs(z).sum(1), f["scale"], False),
    ),
    "projection_l2_ball": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.l2_ball(v, f["scale"]),
        violation=lambda y, f: np.linalg.norm(y) - f["scale"],
        spread=lambda rng, n, f, m: (
            scale_rows(z := rng.standard_normal((m, n)), np.linalg.norm(z, axis=1), f["scale"], False)
            * rng.random((m, 1)) ** (1 / n)
        ),
        near=lambda rng, y, f, m: scale_rows(z := _near(rng, y, m), np.linalg.norm(z, axis=1), f["scale"], True),
    ),
    "projection_l2_sphere": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.l2_sphere(v, f["scale"]),
        violation=lambda y, f: abs(np.linalg.norm(y) - f["scale"]),
        spread=lambda rng, n, f, m: scale_rows(
            z := rng.standard_normal((m, n)), np.linalg.norm(z, axis=1), f["scale"], False
        ),
        near=lambda rng, y, f, m: scale_rows(z := _near(rng, y, m), np.linalg.norm(z, axis=1), f["scale"], False),
    ),
    "projection_linf_ball": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.linf_ball(v, f["scale"]),
        violation=lambda y, f: np.abs(y).max() - f["scale"],
        spread=lambda rng, n, f, m: rng.uniform(-f["scale"], f["scale"], (m, n)),
        near=lambda rng, y, f, m: np.clip(_near(rng, y, m), -f["scale"], f["scale"]),
    ),
    "projection_box": dict(
        args=_box_args,
        ref=lambda v, f: ref.box(v, f["lower"], f["upper"]),
        violation=lambda y, f: max(np.max(f["lower"] - y), np.max(y - f["upper"])),
        spread=lambda rng, n, f, m: f["lower"] + rng.random((m, n)) * (f["upper"] - f["lower"]),
        near=lambda rng, y, f, m: np.clip(_near(rng, y, m), f["lower"], f["upper"]),
    ),
    "projection_hypercube": dict(
        args=lambda rng, x: {"scale": S},
        ref=lambda v, f: ref.box(v, 0.0, f["scale"]),
        violation=lambda y, f: max(-y.min(), y.max() - f["scale"]),
        spread=lambda rng, n, f, m: rng.uniform(0, f["scale"], (m, n)),
        near=lambda rng, y, f, m: np.clip(_near(rng, y, m), 0, f["scale"]),
    ),
    "projection_non_negative": dict(
        args=lambda rng, x: {},
        ref=lambda v, f: ref.non_negative(v),
        violation=lambda y, f: -y.min(),
        spread=lambda rng, n, f, m: 3 * np.abs(rng.standard_normal((m, n))),
        near=lambda rng, y, f, m: np.maximum(_near(rng, y, m), 0),
    ),
    "projection_hyperplane": dict(
        args=_affine_args,
        ref=lambda v, f: ref.hyperplane(v, f["a"], f["b"]),
        violation=lambda y, f: abs(f["a"] @ y - f["b"]) / np.linalg.norm(f["a"]),
        spread=lambda rng, n, f, m: _plane(3 * rng.standard_normal((m, n)), f),
        near=lambda rng, y, f, m: _plane(_near(rng, y, m), f),
    ),
    "projection_halfspace": dict(
        args=lambda rng, x: _affine_args(rng, x, halfspace=True),
        ref=lambda v, f: ref.halfspace(v, f["a"], f["b"]),
        violation=lambda y, f: (f["a"] @ y - f["b"]) / np.linalg.norm(f["a"]),
        spread=lambda rng, n, f, m: _half(rng, 3 * rng.standard_normal((m, n)), f, margin=1.0),
        near=lambda rng, y, f, m: _half(rng, _near(rng, y, m), f),
    ),
    "projection_vector": dict(
        args=lambda rng, x: {"a": _affine_args(rng, x)["a"]},
        ref=lambda v, f: ref.vector(v, f["a"]),
        violation=lambda y, f: np.linalg.norm(y - ref.vector(y, f["a"])),
        spread=lambda rng, n, f, m: 3 * rng.standard_normal((m, 1)) * f["a"],
        near=lambda rng, y, f, m: ((y @ f["a"]) / (f["a"] @ f["a"]) + EPS * rng.standard_normal((m, 1))) * f["a"],
    ),
}
NAMES = list(CASES)


def flat_args(x, args):
    f = {k: float(v) for k, v in args.items() if k in ("scale", "b")}
    for k in ("lower", "upper"):
        if k in args:
            f[k] = ref.flat_bound(args[k], x)
    if "a" in args:
        f["a"] = ref.flatten(args["a"])[0]
    return f


def as_jax(args):
    return {
        k: jax.tree.map(jnp.asarray, v) if k in ("a", "lower", "upper") and not np.isscalar(v) else v
        for k, v in args.items()
    }


def setup(name, kind, seed=0, factor=3.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = make_input(kind, rng, factor, dtype)
    args = CASES[name]["args"](rng, x)
    return rng, x, args, flat_args(x, args)


def project(name, x, args, jit=False):
    fn = getattr(P, name)
    fn = jax.jit(fn) if jit else fn
    return fn(jax.tree.map(jnp.asarray, x), **as_jax(args))


def assert_tree_close(got, want_flat, like_tree, atol, rtol=1e-5):
    assert jax.tree.structure(got) == jax.tree.structure(like_tree)
    wants = ref.unflatten(want_flat, [np.shape(x) for x in jax.tree.leaves(like_tree)])
    for g, w, x in zip(jax.tree.leaves(got), wants, jax.tree.leaves(like_tree)):
        assert g.dtype == np.asarray(x).dtype and g.shape == w.shape
        np.testing.assert_allclose(np.asarray(g, w.dtype), w, rtol=rtol, atol=atol)


def tolerance(v):
    return 2e-5 * (1 + np.abs(v).max(initial=0))


# ------------------------------------------------------------------ against the references


REGIMES = [pytest.param(kind, 3.0, id=f"{kind}-large") for kind in KINDS]
REGIMES += [pytest.param(kind, 0.05, id=f"{kind}-small") for kind in ("vector", "tree")]  # inside the balls


@pytest.mark.parametrize("kind,factor", REGIMES)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference(name, kind, factor):
    _, x, args, f = setup(name, kind, factor=factor)
    v = ref.flatten(x)[0]
    assert_tree_close(project(name, x, args), CASES[name]["ref"](v, f), x, tolerance(v))


@pytest.mark.parametrize("kind", ["vector", "tree"])
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_in_float64(name, kind):
    with jax.enable_x64(True):
        _, x, args, f = setup(name, kind, seed=3, dtype=np.float64)
        v = ref.flatten(x)[0]
        assert_tree_close(project(name, x, args), CASES[name]["ref"](v, f), x, 1e-12 * (1 + np.abs(v).max()), 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_result_is_in_the_set_and_closest(name, kind):
    rng, x, args, f = setup(name, kind, seed=1)
    v = ref.flatten(x)[0]
    y = ref.flatten(project(name, x, args))[0]
    case = CASES[name]
    assert case["violation"](y, f) <= tolerance(v)
    points = np.concatenate([case["spread"](rng, v.size, f, 200), case["near"](rng, y, f, 200)])
    assert max(case["violation"](z, f) for z in points) <= 1e-9 * (1 + np.abs(v).max())  # the samples are in the set
    nearest = np.min(np.linalg.norm(points - v, axis=1))
    assert np.linalg.norm(y - v) <= nearest + tolerance(v), (np.linalg.norm(y - v), nearest)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_a_point_of_the_set_is_unchanged(name, kind):
    rng, x, args, f = setup(name, kind, seed=2)
    shapes = [np.shape(leaf) for leaf in jax.tree.leaves(x)]
    inside = CASES[name]["spread"](rng, ref.flatten(x)[0].size, f, 1)[0]
    point = jax.tree.unflatten(jax.tree.structure(x), [p.astype(np.float32) for p in ref.unflatten(inside, shapes)])
    assert_tree_close(project(name, point, args), ref.flatten(point)[0], point, tolerance(inside))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_idempotent_and_jit(name, kind):
    _, x, args, _ = setup(name, kind, seed=4)
    y = project(name, x, args)
    v = ref.flatten(y)[0]
    assert_tree_close(project(name, y, args), v, x, tolerance(v))
    assert_tree_close(project(name, x, args, jit=True), v, x, 1e-6 * (1 + np.abs(v).max()), 1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if "scale" in inspect.signature(getattr(P, n)).parameters])
def test_scale_forms_and_default(name):
    _, x, _, _ = setup(name, "tree", seed=5)
    v = ref.flatten(x)[0]
    fn = getattr(P, name)
    for scale in (S, np.float32(S), jnp.asarray(S), jnp.asarray(S, jnp.float32)):
        assert_tree_close(fn(x, scale), CASES[name]["ref"](v, {"scale": S}), x, tolerance(v))
    assert_tree_close(jax.jit(fn)(x, jnp.asarray(S)), CASES[name]["ref"](v, {"scale": S}), x, tolerance(v))
    assert_tree_close(fn(x), CASES[name]["ref"](v, {"scale": 1.0}), x, tolerance(v))  # the default, 1
    zero = jax.jit(fn)(x, 0.0)  # the set is the single point 0
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(zero)), zero


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences_of_the_reference(name):
    """At a random point (where the projection is smooth), d<w, P(x)>/dx against central
    differences of the float64 reference."""
    with jax.enable_x64(True):
        rng, x, args, f = setup(name, "vector", seed=9, factor=1.0, dtype=np.float64)
        w = rng.standard_normal(x.size)
        got = jax.grad(lambda x: jnp.vdot(w, getattr(P, name)(x, **as_jax(args))))(jnp.asarray(x))
        h, basis = 1e-6, np.eye(x.size)
        want = [(w @ CASES[name]["ref"](x + h * e, f) - w @ CASES[name]["ref"](x - h * e, f)) / (2 * h) for e in basis]
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def test_l2_gradients_at_the_origin_are_finite():
    jacobian = jax.jacobian(P.projection_l2_ball)(jnp.zeros(3))  # the identity: 0 is inside
    np.testing.assert_array_equal(np.asarray(jacobian), np.eye(3))
    assert np.all(np.isfinite(np.asarray(jax.jacobian(P.projection_l2_sphere)(jnp.zeros(3)))))


# ------------------------------------------------------------------ what Optax does on trees and arrays


def test_simplex_takes_a_matrix_and_a_tree_as_one_vector():
    x = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    y = P.projection_simplex(x)
    # the whole matrix sums to 1: sorted 4, 3, 2, ...; only 4 - theta > 0 with theta = 4 - 1 = 3
    np.testing.assert_allclose(np.asarray(y), [[0, 0, 0], [0, 0, 1]], atol=1e-7)
    rows = jax.vmap(P.projection_simplex)(x)  # one simplex per row, with vmap
    np.testing.assert_allclose(np.asarray(rows), np.stack([ref.simplex(r, 1.0) for r in np.asarray(x)]), atol=1e-6)


def test_l1_ball_under_vmap_inside_and_outside():
    rows = np.array([[0.1, -0.2, 0.3], [2.0, -1.5, 0.25]], np.float32)  # the first is inside
    got = jax.vmap(P.projection_l1_ball)(jnp.asarray(rows))
    np.testing.assert_allclose(np.asarray(got), np.stack([ref.l1_ball(r, 1.0) for r in rows]), atol=1e-6)


# ------------------------------------------------------------------ edge cases


def test_the_origin_has_no_nan():
    s = 2.0
    out = jax.jit(P.projection_l2_sphere)({"a": jnp.zeros(0), "b": jnp.zeros((2, 2)), "c": jnp.zeros(3)}, s)
    assert out["b"].tolist() == [[s, 0.0], [0.0, 0.0]] and out["c"].tolist() == [0.0] * 3  # s e_1
    assert P.projection_l1_sphere(jnp.zeros(4), s).tolist() == [0.5] * 4  # s / n
    for name in ("projection_l1_ball", "projection_l2_ball", "projection_simplex"):
        y = getattr(P, name)(jnp.zeros(3), 0.0)
        assert y.tolist() == [0.0] * 3


def test_affine_sets_with_a_zero_normal():
    x, zero = jnp.array([1.0, -2.0]), jnp.zeros(2)
    assert P.projection_vector(x, zero).tolist() == [0.0, 0.0]  # the line is {0}
    assert P.projection_hyperplane(x, zero, 0.0).tolist() == [1.0, -2.0]  # everything, or nothing: x
    assert jax.jit(P.projection_halfspace)(x, zero, -1.0).tolist() == [1.0, -2.0]


def test_huge_and_tiny_entries():
    out = P.projection_l2_ball({"a": jnp.array([3e30]), "b": jnp.array([4e30])})
    np.testing.assert_allclose([out["a"][0], out["b"][0]], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(P.projection_l2_sphere(jnp.array([3e-30, 4e-30]), 10.0), [6.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(
        P.projection_vector(jnp.array([2.0, 1.0]), jnp.array([1e30, 1e30])), [1.5, 1.5], rtol=1e-6
    )
    got = P.projection_hyperplane(jnp.array([2.0, 1.0]), jnp.array([1e-30, 0.0]), 1e-30)  # x_0 = 1
    np.testing.assert_allclose(got, [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_empty_tree_and_none_leaf(name):
    rng = np.random.default_rng(6)
    x = {"a": make_input("vector", rng), "b": None}
    normal = {"a": rng.standard_normal(7).astype(np.float32), "b": None}
    special = {
        "projection_box": {"lower": -0.5, "upper": 1.0},
        "projection_vector": {"a": normal},
        "projection_hyperplane": {"a": normal, "b": 0.7},
        "projection_halfspace": {"a": normal, "b": float(normal["a"] @ x["a"]) - 1.0},
    }
    args = special[name] if name in special else CASES[name]["args"](rng, x)
    out = project(name, x, args)
    assert out["b"] is None
    assert_tree_close(out, CASES[name]["ref"](ref.flatten(x)[0], flat_args(x, args)), x, tolerance(x["a"]))
    empty = {k: ({} if k == "a" else v) for k, v in args.items()}
    assert getattr(P, name)({}, **empty) == {}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_keeps_dtypes(name, dtype):
    _, x, args, f = setup(name, "tree", seed=7)
    x = jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), x)
    v = ref.flatten(jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), x))[0]
    if name == "projection_halfspace":
        f["b"] = args["b"] = float(f["a"] @ v) - 1.0
    got = getattr(P, name)(x, **as_jax(args))
    assert [leaf.dtype for leaf in jax.tree.leaves(got)] == [dtype] * 3
    want = ref.unflatten(CASES[name]["ref"](v, f), [leaf.shape for leaf in jax.tree.leaves(x)])
    for g, w in zip(jax.tree.leaves(got), want):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, atol=2e-2 * (1 + np.abs(v).max()))


def test_complex_leaves():
    rng = np.random.default_rng(8)
    z = lambda shape: (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)  # noqa: E731
    x, a, b = {"u": z((3,)), "v": z((2, 2))}, {"u": z((3,)), "v": z((2, 2))}, 0.5 + 0.25j
    v, va = ref.flatten(x)[0], ref.flatten(a)[0]
    cases = {
        "projection_l2_ball": ((S,), ref.l2_ball(v, S)),
        "projection_l2_sphere": ((S,), ref.l2_sphere(v, S)),
        "projection_vector": ((a,), ref.vector(v, va)),
        "projection_hyperplane": ((a, b), ref.hyperplane(v, va, b)),
    }
    for name, (args, want) in cases.items():
        got = jax.jit(getattr(P, name))(x, *args)
        assert_tree_close(got, want, x, 1e-5 * (1 + np.abs(v).max()))
    y = ref.flatten(P.projection_hyperplane(x, a, b))[0]
    assert abs(np.vdot(va, y) - b) < 1e-5  # <a, y> = b, with <a, y> = sum conj(a) y


def test_integer_leaves_of_boxes():
    x = jnp.array([-3, 0, 4], jnp.int32)
    assert P.projection_box(x, 0.5, 2.5).tolist() == [1, 1, 2]  # the integers of [0.5, 2.5]
    assert P.projection_box(x, -jnp.inf, 1).tolist() == [-3, 0, 1]
    assert P.projection_non_negative(x).tolist() == [0, 0, 4]
    assert P.projection_linf_ball(x, 1.5).tolist() == [-1, 0, 1]
    assert P.projection_hypercube(x, 2).dtype == jnp.int32


# ------------------------------------------------------------------ signatures, as Optax's

EMPTY = inspect.Parameter.empty
SIGNATURES = {
    "projection_box": [("tree", EMPTY), ("lower", EMPTY), ("upper", EMPTY)],
    "projection_halfspace": [("x", EMPTY), ("a", EMPTY), ("b", EMPTY)],
    "projection_hypercube": [("tree", EMPTY), ("scale", 1)],
    "projection_hyperplane": [("x", EMPTY), ("a", EMPTY), ("b", EMPTY)],
    "projection_l1_ball": [("tree", EMPTY), ("scale", 1)],
    "projection_l1_sphere": [("tree", EMPTY), ("scale", 1)],
    "projection_l2_ball": [("tree", EMPTY), ("scale", 1)],
    "projection_l2_sphere": [("tree", EMPTY), ("scale", 1)],
    "projection_linf_ball": [("tree", EMPTY), ("scale", 1)],
    "projection_non_negative": [("tree", EMPTY)],
    "projection_simplex": [("tree", EMPTY), ("scale", 1)],
    "projection_vector": [("x", EMPTY), ("a", EMPTY)],
}


def test_names_and_signatures():
    assert sorted(P.__all__) == sorted(SIGNATURES) == sorted(NAMES)
    for name, expected in SIGNATURES.items():
        params = inspect.signature(getattr(P, name)).parameters.values()
        assert [(p.name, p.default) for p in params] == expected, name
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params), name


# ------------------------------------------------------------------ bad input

SCALED = [n for n, sig in SIGNATURES.items() if ("scale", 1) in sig]
TREE = {"w": jnp.ones((3, 2)), "b": jnp.ones(4)}


@pytest.mark.parametrize("name", SCALED)
def test_bad_scale(name):
    fn = getattr(P, name)
    with pytest.raises(ValueError, match=rf"^{name}: scale must be in \[0.0, inf\), got -1.0$"):
        fn(TREE, -1.0)
    with pytest.raises(ValueError, match=rf"^{name}: scale must be in \[0.0, inf\), got -2"):
        fn(TREE, jnp.asarray(-2.0))
    with pytest.raises(
        ValueError, match=rf"^{name}: scale must be a number or a 0-d array, got an array of shape \(2,\)"
    ):
        fn(TREE, jnp.ones(2))
    with pytest.raises(TypeError, match=rf"^{name}: scale must be a number or a 0-d array, got str"):
        fn(TREE, "1")
    with pytest.raises(TypeError, match=rf"^{name}: scale must be a real number"):
        fn(TREE, 1j)


@pytest.mark.parametrize("name", NAMES)
def test_bad_leaf_dtypes(name):
    fn, extra = getattr(P, name), {"projection_box": (0.0, 1.0)}.get(name, ())
    bad = {"w": jnp.ones((3, 2)), "b": jnp.ones(4, bool)}
    if name in ("projection_vector", "projection_hyperplane", "projection_halfspace"):
        extra = (TREE, 0.0)[: 1 if name == "projection_vector" else 2]
    with pytest.raises(TypeError, match=rf"^{name} needs .* leaves: 'b' is bool$"):
        fn(bad, *extra)
    if name not in ("projection_box", "projection_hypercube", "projection_non_negative", "projection_linf_ball"):
        with pytest.raises(TypeError, match=rf"^{name} needs floating-point leaves: 'b' is int32$"):
            fn({"w": jnp.ones((3, 2)), "b": jnp.ones(4, jnp.int32)}, *extra)
    if name not in ("projection_l2_ball", "projection_l2_sphere", "projection_vector", "projection_hyperplane"):
        with pytest.raises(TypeError, match=rf"^{name} does not support complex leaves: 'b' is complex64"):
            fn({"w": jnp.ones((3, 2)), "b": jnp.ones(4, jnp.complex64)}, *extra)


@pytest.mark.parametrize("name", ["projection_hyperplane", "projection_halfspace", "projection_vector"])
def test_bad_normal(name):
    fn = getattr(P, name)
    rest = () if name == "projection_vector" else (1.0,)
    with pytest.raises(ValueError, match=rf"^{name}: a does not match x: 'w' is missing from a"):
        fn(TREE, {"b": jnp.ones(4)}, *rest)
    with pytest.raises(ValueError, match=rf"^{name}: a does not match x: 'w' has shape \(2,\) in a but \(3, 2\) in x"):
        fn(TREE, {"w": jnp.ones(2), "b": jnp.ones(4)}, *rest)
    with pytest.raises(ValueError, match=rf"^{name}: a does not match x: '<root>' has shape \(1,\)"):
        fn(jnp.ones(3), jnp.ones(1), *rest)  # no broadcasting
    if rest:
        with pytest.raises(
            ValueError, match=rf"^{name}: b must be a number or a 0-d array, got an array of shape \(2,\)"
        ):
            fn(TREE, TREE, jnp.ones(2))
        with pytest.raises(TypeError, match=rf"^{name}: b must be a number or a 0-d array, got dict"):
            fn(TREE, TREE, {"b": 1.0})
    if name != "projection_halfspace":
        with pytest.raises(TypeError, match=rf"^{name}: a is complex \(complex64\) at 'b', where x is real"):
            fn(TREE, {"w": jnp.ones((3, 2)), "b": jnp.ones(4, jnp.complex64)}, *rest)
    if name == "projection_hyperplane":
        with pytest.raises(TypeError, match=r"^projection_hyperplane: b is complex, but x and a are real$"):
            fn(TREE, TREE, 1j)
    if name == "projection_halfspace":
        with pytest.raises(TypeError, match=r"^projection_halfspace: b must be real, got 1j$"):
            fn(TREE, TREE, 1j)


def test_bad_box_bounds():
    box = P.projection_box
    with pytest.raises(ValueError, match=r"^projection_box: lower does not match tree: 'w' is missing from lower"):
        box(TREE, {"b": 0.0}, 1.0)
    with pytest.raises(
        ValueError, match=r"^projection_box: upper has shape \(2,\) at 'w', where tree has shape \(3, 2\)"
    ):
        box(TREE, 0.0, {"w": jnp.ones(2), "b": 1.0})  # (2,) would broadcast against (3, 2): refused
    with pytest.raises(ValueError, match=r"^projection_box: lower must be at most upper, got lower=2.0 and upper=1.0"):
        box(TREE, 2.0, 1.0)
    with pytest.raises(TypeError, match=r"^projection_box: lower must be real, got complex64 at 'b'"):
        box(TREE, {"w": 0.0, "b": jnp.zeros(4, jnp.complex64)}, 1.0)
    with pytest.raises(
        TypeError, match=r"^projection_box: upper must be a number, a 0-d array or a tree like tree, got None"
    ):
        box(TREE, 0.0, None)
