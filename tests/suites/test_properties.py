"""Properties every optimizer, transform and wrapper keeps, on pytrees drawn by Hypothesis.

The trees are nested dicts, lists and tuples with ``None`` leaves, empty containers,
0-d scalars and small arrays (up to 3 dimensions, sides 0 to 3), whose leaves mix
float16, bfloat16, float32 and complex64 (and float64 and complex128 when x64 is on).
Parameters and gradients are finite, at most 1e3 in magnitude. For every row of
``helpers.OPTIMIZERS`` and ``helpers.TRANSFORMS``, under ``jax.jit``:

- ``init`` and three ``update`` calls do not fail;
- the updates have the parameters' tree structure, and each leaf its parameter's
  dtype and shape;
- the state keeps its tree structure and every leaf's shape and dtype;
- the updates are finite, and so are the parameters after ``apply_updates``, which
  keeps their dtypes;
- no complex value is silently cast to a real dtype (numpy's ``ComplexWarning`` is an error).

Complex parameters follow the library's convention (docs/design.md, "Complex
parameters"): every transform accepts them, except those in ``COMPLEX_UNSUPPORTED``,
whose ``init`` raises a ``TypeError`` naming the transform, the leaf and its dtype.

The tables are checked against the public API: every public factory in
``gradtx.__all__`` must build a row of OPTIMIZERS (named optimizers) or TRANSFORMS
(the rest), unless it is listed, with its reason, in ``NOT_TRANSFORMS``.

The complex numerics are checked three ways: Adam against a NumPy reference; every
row turns its updates by a phase ``exp(i phi)`` when all its complex inputs are turned so;
and the optimizers built from inner products and norms step on complex parameters
exactly as on their real and imaginary parts stacked.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import gradtx

from helpers import LOOKAHEAD, OPTIMIZERS, TRANSFORMS, step

pytestmark = pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")

# Each new tree is compiled anew by every row under jit (about a second for an Adam
# on the fixed trees below), so two generated examples per row, besides the two fixed
# ones that hold every dtype and edge case, keep the file near a minute on two cores.
# GRADTX_PROPERTY_EXAMPLES=<n> searches deeper (25 runs in about 4 minutes), and
# GRADTX_PROPERTY_SHRINK=0 reports a failure unshrunk (shrinking recompiles each try).
SETTINGS = settings(
    max_examples=int(os.environ.get("GRADTX_PROPERTY_EXAMPLES", "2")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.generate]
    + ([Phase.shrink] if os.environ.get("GRADTX_PROPERTY_SHRINK") != "0" else []),
)

ROWS = {**OPTIMIZERS, **TRANSFORMS}
assert not set(OPTIMIZERS) & set(TRANSFORMS), "a row name is in both OPTIMIZERS and TRANSFORMS"

# Rows whose init refuses complex parameters with a TypeError: "non-negative" has no
# meaning for a complex number, nor has COCOB's bet on the sign of each coordinate, nor
# the Hessian diagonal of Sophia's estimator (of a real function of real numbers).
COMPLEX_UNSUPPORTED = {
    "keep_params_nonnegative",
    "cocob",
    "scale_by_cocob",
    "sophia",
    "scale_by_sophia",
    "adahessian",  # its estimator's Hessian diagonal, as Sophia's
    "scale_by_adahessian",
    "kron",  # its factors are real triangular matrices fitted to real probes
    "shampoo",  # its statistics are real Gram matrices G G^T and their real inverse roots
    "scale_by_shampoo",
    "scale_by_kron",
    "hutchinson_estimator_diag_hessian",
}

# Rows that multiply the update by the parameter block's norm or RMS: with gradients
# and parameters up to 1e3 the exact result (up to ~5e6) is past float16's largest
# number, 65504, so their float16 leaves may overflow; every other dtype must stay finite.
FLOAT16_MAY_OVERFLOW = {"scale_by_param_block_norm", "scale_by_param_block_rms"}

DTYPES = ("float16", "bfloat16", "float32", "complex64")
DTYPES_X64 = DTYPES + ("float64", "complex128")
LIMIT = 1e3  # the largest magnitude of a drawn parameter or gradient (real and imaginary parts)
STEPS = 3


# --------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Leaf:
    """The shape and dtype of one array leaf of a drawn tree."""

    shape: tuple[int, ...]
    dtype: str


@dataclass
class Case:
    """One example: x64 on or off, parameters and ``STEPS`` gradients as NumPy trees."""

    x64: bool
    params: Any
    grads: list[Any]

    def __repr__(self):  # what Hypothesis prints for a failing example
        describe = lambda t: jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}={x.tolist()}", t)  # noqa: E731
        return f"Case(x64={self.x64}, params={describe(self.params)}, grads={[describe(g) for g in self.grads]})"


def _specs(dtypes):
    """Tree skeletons: nested dicts, lists and tuples (possibly empty) of ``Leaf`` or ``None``."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
    leaves = st.one_of(st.none(), st.builds(Leaf, shapes, st.sampled_from(dtypes)))

    def containers(children):
        return st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.sampled_from(["w", "b", "scale", "layer"]), children, max_size=3),
        )

    # The root is never None, since update(updates, state, params=None) means "no parameters
    # given": a drawn None root becomes the empty tree [].
    return st.recursive(leaves, containers, max_leaves=4).map(lambda spec: [] if spec is None else spec)


# Finite magnitudes up to LIMIT, with 0, tiny values (0 in float16) and the bounds.
_VALUES = st.one_of(
    st.floats(-LIMIT, LIMIT, allow_subnormal=False),
    st.sampled_from([0.0, 1e-20, -1e-20, 1e-3, LIMIT, -LIMIT]),
)


def _array(draw, leaf: Leaf) -> np.ndarray:
    parts = 2 if leaf.dtype.startswith("complex") else 1
    raw = draw(hnp.arrays(np.float64, (parts, *leaf.shape), elements=_VALUES))
    value = raw[0] + 1j * raw[1] if parts == 2 else raw[0]
    return np.asarray(value).astype(jnp.dtype(leaf.dtype))


def _is_leaf(x):
    return isinstance(x, Leaf)


@st.composite
def cases(draw):
    x64 = draw(st.booleans())
    spec = draw(_specs(DTYPES_X64 if x64 else DTYPES))
    fill = lambda: jax.tree.map(lambda leaf: _array(draw, leaf), spec, is_leaf=_is_leaf)  # noqa: E731
    return Case(x64, fill(), [fill() for _ in range(STEPS)])


def _fixed_case(x64: bool) -> Case:
    """Every dtype, a 0-d leaf, a 0-size leaf, size-1 axes, ``None`` and empty containers, in few leaves
    (each leaf costs compile time in every row)."""
    rng = np.random.default_rng(7)

    def arr(scale, shape, dtype):
        if dtype == "float16" and scale != 1.0:  # small float16 gradients: (1 - b2) g^2 is below float16's range
            scale = scale * 1e-3
        x = scale * rng.standard_normal((2, *shape))
        return np.asarray(x[0] + 1j * x[1] if dtype.startswith("complex") else x[0]).astype(jnp.dtype(dtype))

    def tree(scale):
        if x64:
            return {
                "w": arr(scale, (2, 2), "float64"),
                "b": [arr(scale, (3,), "complex128"), None],
                "s": arr(scale, (), "bfloat16"),
            }
        return {
            "layer": {
                "w": [arr(scale, (2, 3), "float16"), arr(scale, (1, 2), "complex64")],
                "b": (arr(scale, (3,), "bfloat16"),),
            },
            "scale": arr(scale, (), "float32"),
            "empty": [arr(scale, (0, 2), "float32")],
            "none": None,
            "containers": [(), {}, []],
        }

    # gradients exactly 0, then of order 1, then of order 100 (float16 ones 1e-3 of that)
    return Case(x64, tree(1.0), [tree(0.0), tree(2.0), tree(60.0)])


FIXED = _fixed_case(False)
FIXED_X64 = _fixed_case(True)


# --------------------------------------------------------------------------- checks


def _x64(on: bool):
    return jax.enable_x64(True) if on else contextlib.nullcontext()


def _signature(tree):
    """The tree structure, and each leaf's path, shape and dtype."""
    leaves = gradtx.tree.leaves_with_path(tree)
    return jax.tree.structure(tree), [(gradtx.tree.path_str(p), jnp.shape(x), jnp.result_type(x)) for p, x in leaves]


def _signature_change(before, after) -> str | None:
    if before[0] != after[0]:
        return f"its tree structure changed from {before[0]} to {after[0]}"
    for was, now in zip(before[1], after[1]):
        if was != now:
            return f"'{was[0]}' had shape {was[1]} and dtype {was[2]}, now {now[1]} and {now[2]}"
    return None


def _finite(x) -> bool:
    return bool(jnp.all(jnp.isfinite(x)))


def _first_complex(params):
    for path, leaf in gradtx.tree.leaves_with_path(params):
        if jnp.iscomplexobj(leaf):
            return gradtx.tree.path_str(path), jnp.result_type(leaf)
    return None


def check_properties(name: str, case: Case) -> None:
    """Run row ``name`` on ``case`` under jit and check the properties of the module docstring."""
    with _x64(case.x64):
        params = jax.tree.map(jnp.asarray, case.params)
        grads = [jax.tree.map(jnp.asarray, g) for g in case.grads]
        tx = ROWS[name]()
        complex_leaf = _first_complex(params)
        if name in LOOKAHEAD:
            params = gradtx.LookaheadParams.init_synced(params)
        if name in COMPLEX_UNSUPPORTED and complex_leaf is not None:
            path, dtype = complex_leaf
            with pytest.raises(TypeError, match=rf"{name}.*'{re.escape(path)}'.*{dtype}"):
                tx.init(params)
            return

        state = jax.jit(tx.init)(params)
        assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state)), "the state holds a non-array leaf"
        before = _signature(state)
        update = jax.jit(lambda g, s, p: step(tx, g, s, p))
        for t, g in enumerate(grads, start=1):
            updates, state = update(g, state, params)
            where = f"{name}, step {t}"
            assert jax.tree.structure(updates) == jax.tree.structure(params), f"{where}: update tree != parameter tree"
            for (path, u), p in zip(gradtx.tree.leaves_with_path(updates), jax.tree.leaves(params)):
                at = f"{where}, update '{gradtx.tree.path_str(path)}'"
                assert u.dtype == p.dtype, f"{at}: dtype {u.dtype}, parameter {p.dtype}"
                assert u.shape == p.shape, f"{at}: shape {u.shape}, parameter {p.shape}"
                if not (name in FLOAT16_MAY_OVERFLOW and u.dtype == jnp.float16):
                    assert _finite(u), f"{at} is not finite: {u}"
            change = _signature_change(before, _signature(state))
            assert change is None, f"{where}: the state changed: {change}"
            new = gradtx.apply_updates(params, updates)
            for (path, q), p in zip(gradtx.tree.leaves_with_path(new), jax.tree.leaves(params)):
                at = f"{where}, parameter '{gradtx.tree.path_str(path)}'"
                assert q.dtype == p.dtype, f"{at}: apply_updates changed the dtype {p.dtype} to {q.dtype}"
                if not (name in FLOAT16_MAY_OVERFLOW and q.dtype == jnp.float16):
                    assert _finite(q), f"{at} is not finite after apply_updates: {q}"
            params = new


@pytest.mark.parametrize("name", sorted(ROWS))  # every optimizer, transform and wrapper
@SETTINGS
@given(case=cases())
@example(case=FIXED)
@example(case=FIXED_X64)
def test_properties(name, case):
    check_properties(name, case)


@pytest.mark.parametrize("name", sorted(COMPLEX_UNSUPPORTED))
def test_complex_unsupported_names_the_transform_the_leaf_and_the_dtype(name):
    params = {"w": jnp.ones(2), "layer": [jnp.zeros(1), jnp.ones((2, 2), jnp.complex64)]}
    with pytest.raises(TypeError, match=rf"{name}.*'layer/1'.*complex64"):
        ROWS[name]().init(params)
    ROWS[name]().init(jax.tree.map(jnp.real, params))  # the real parts are fine


# ------------------------------------------------------------- the public API is covered

# Public callables that build no gradient transformation, with the reason. Classes
# that are tuples (states, info records, GradientTransformation itself), modules and
# the schedules of gradtx.schedules (functions of the step, tested in test_schedules)
# are recognised without a list.
NOT_TRANSFORMS = {
    "apply_updates": "adds updates to parameters",
    "incremental_update": "averages two trees",
    "periodic_update": "selects one of two trees",
    "path_mask": "builds a mask function for masked()",
    "path_labels": "builds a label function for partition()",
    "skip_not_finite": "a should_skip_update_fn for MultiSteps (row MultiSteps_skip_not_finite)",
    "skip_large_updates": "a should_skip_update_fn for MultiSteps",
    "microbatch": "wraps a loss or gradient function",
    "hyperparams": "reads an optimizer state",
    "set_hyperparams": "changes an optimizer state",
    "step_count": "reads an optimizer state",
    "per_example_global_norm_clip": "a function of per-example gradients (with a batch axis)",
    "per_example_layer_norm_clip": "a function of per-example gradients (with a batch axis)",
    "value_and_grad_from_state": "wraps a loss function",
    "init_empty_state": "an init function, not a transform",
    "global_norm": "a norm (deprecated for gradtx.tree.norm)",
    "measure_with_ema": "returns a measurement, not updates: a measure for monitor (row monitor)",
    "stateless_with_tree_map": "builds a transform from any function (like stateless)",
    "StatefulSchedule": "a protocol for schedules with a state",
    "WrappedSchedule": "a schedule, not a transform",
    "TransformInitFn": "a type",
    "TransformUpdateFn": "a type",
    "TransformUpdateExtraArgsFn": "a type",
    "GradientTransformationExtraArgs": "the protocol's class (GradientTransformation)",
    "scale_by_muon": "refuses a leaf that is not a matrix: row scale_by_muon_on_matrices masks it to the 2-D leaves, "
    "and muon sends the others to Adam",
    "scale_by_normuon": "refuses a leaf that is not a matrix: row scale_by_normuon_on_matrices masks it to the 2-D "
    "leaves, and normuon sends the others to Adam",
    "dpsgd": "takes per-example gradients (a batch axis on every leaf): tests/optimizers/test_privacy.py",
    "differentially_private_aggregate": "takes per-example gradients (a batch axis on every leaf)",
    "schedule_free_eval_params": "reads an optimizer state (the point to evaluate at)",
    "ademamix_alpha_warmup": "a schedule of the step (AdEMAMix's alpha warm-up)",
    "ademamix_b3_warmup": "a schedule of the step (AdEMAMix's beta3 warm-up)",
    "precond_update_prob_schedule": "a schedule of the step (PSGD Kron's preconditioner update probability)",
}
UTILITY_MODULES = (
    "gradtx.schedules",
    "gradtx.losses",
    "gradtx.core.tree",
    "gradtx.core.paths",
    "gradtx.core.numerics",
    "gradtx.core.linear_algebra",
    "gradtx.utilities",
)
TYPE_ALIASES = {"MaskOrFn", "OptState", "Params", "ScalarOrSchedule", "Schedule", "ShouldSkipUpdateFunction", "Updates"}


def _public_factories() -> dict[str, Any]:
    out = {}
    for name in gradtx.__all__:
        obj = getattr(gradtx, name)
        if inspect.ismodule(obj) or name in NOT_TRANSFORMS or name in TYPE_ALIASES:
            continue
        if inspect.isclass(obj) and issubclass(obj, tuple):
            continue
        if getattr(obj, "__module__", "").startswith(UTILITY_MODULES):
            continue  # functions of the step, losses, tree and numerical helpers: not transforms
        assert callable(obj), f"gradtx.{name} is neither callable nor a module nor a tuple class"
        out[name] = obj
    return out


def _is_optimizer(name: str, factory: Any) -> bool:
    """A named optimizer takes a learning rate (or its cap) and is not a ``scale_by_*`` block."""
    parameters = inspect.signature(factory).parameters
    return not name.startswith("scale_by_") and bool({"learning_rate", "max_learning_rate"} & set(parameters))


def _builders(rows: dict[str, Any], names: list[str]) -> dict[str, str | None]:
    """For each row, the public name whose call returned the row's transform (``None`` if none did).

    Every public factory is replaced in the ``gradtx`` namespace by a spy that records
    what it returns; a factory that returns a function (``inject_hyperparams``) has
    that function spied in its name too.
    """
    made: dict[int, tuple[str, Any]] = {}

    def spy(name, fn):
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            out = fn(*args, **kwargs)
            if inspect.isfunction(out):
                out = spy(name, out)
            made[id(out)] = (name, out)  # holding `out` keeps its id unique
            return out

        return recorded

    originals = {name: getattr(gradtx, name) for name in names}
    try:
        for name, fn in originals.items():
            setattr(gradtx, name, spy(name, fn))
        built = {row: make() for row, make in rows.items()}
    finally:
        for name, fn in originals.items():
            setattr(gradtx, name, fn)
    for row, tx in built.items():
        assert callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)), (
            f"row {row!r} built {tx!r}, which has no init and update"
        )
    return {row: made.get(id(tx), (None,))[0] for row, tx in built.items()}


def test_every_public_optimizer_transform_and_wrapper_has_a_row():
    factories = _public_factories()
    stale = sorted(set(NOT_TRANSFORMS) - set(gradtx.__all__))
    assert not stale, f"NOT_TRANSFORMS lists names that are not public: {stale}"
    aliases: dict[int, list[str]] = {}
    for name, obj in factories.items():
        aliases.setdefault(id(obj), []).append(name)
    optimizers = {name for name, obj in factories.items() if _is_optimizer(name, obj)}

    problems = []
    for table_name, table, wanted in [("OPTIMIZERS", OPTIMIZERS, True), ("TRANSFORMS", TRANSFORMS, False)]:
        builders = _builders(table, list(factories))
        for row, builder in builders.items():
            if builder is None:
                problems.append(f"{table_name}[{row!r}] is not built by a public gradtx factory")
            elif (builder in optimizers) != wanted:
                kind = "an optimizer" if builder in optimizers else "a transform"
                problems.append(f"{table_name}[{row!r}] is built by {builder}, {kind}: move the row")
        built = set(builders.values())
        for group in aliases.values():
            if (group[0] in optimizers) == wanted and not built & set(group):
                problems.append(
                    f"gradtx.{' / gradtx.'.join(group)} builds no row of {table_name} in tests/helpers.py "
                    f"(add one, or list it in NOT_TRANSFORMS with the reason)"
                )
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------- complex numerics


def test_complex_adam_matches_numpy():
    """Adam on complex64: the first moment is complex, the second the moving average of
    |g|^2, stored real (float32); the update is complex64."""
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    rng = np.random.default_rng(3)
    p0 = (rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))).astype(np.complex64)
    grads = [
        (s * (rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3)))).astype(np.complex64)
        for s in (1.0, 0.1, 3.0, 0.5)
    ]
    tx = gradtx.adam(lr, b1, b2, eps)
    params = jnp.asarray(p0)
    state = tx.init(params)
    assert state[0].mu.dtype == jnp.complex64 and state[0].nu.dtype == jnp.float32
    m = np.zeros(p0.shape, np.complex128)
    v = np.zeros(p0.shape, np.float64)
    want = p0.astype(np.complex128)
    update = jax.jit(tx.update)
    for t, g in enumerate(grads, start=1):
        updates, state = update(jnp.asarray(g), state, params)
        assert updates.dtype == jnp.complex64
        params = gradtx.apply_updates(params, updates)
        g = g.astype(np.complex128)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g.real**2 + g.imag**2)
        want = want - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(np.asarray(params), want, rtol=2e-5, atol=2e-6, err_msg=f"step {t}")
        # b2 = 0.999 in float32 makes 1 - b2 off by 1.3e-5 relative
        np.testing.assert_allclose(np.asarray(state[0].nu), v, rtol=3e-5, err_msg=f"step {t}: nu")


# Optimizers whose rules use only inner products and norms of whole leaves (no
# elementwise squares): on complex parameters they take exactly the steps they take
# on the real and imaginary parts stacked in one real leaf, since Re<x, y> and |x|
# are the same in both views. L-BFGS (with its line search) is the one that needs
# care: curvature pairs, slopes and the line search's own gradients.
EQUIVARIANT = ["sgd", "sgd_momentum", "lbfgs", "polyak_sgd", "lars", "fromage", "asgd", "optimistic_gradient_descent"]


def _anisotropic(x, y):
    """A convex quadratic in (x, y) with different curvatures and a coupling term."""
    a, b = jnp.asarray([1.0, 3.0, 0.5]), jnp.asarray([2.0, 0.7, 4.0])
    return jnp.sum(a * (x - 1) ** 2 + b * (y + 2) ** 2 + 0.5 * x * y)


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_complex_parameters_step_as_their_stacked_real_and_imaginary_parts(name):
    f_complex = lambda z: _anisotropic(z.real, z.imag)  # noqa: E731
    f_stacked = lambda w: _anisotropic(w[0], w[1])  # noqa: E731
    z = jnp.asarray([0.5 - 1j, -2 + 0.25j, 1.5 + 3j], jnp.complex64)
    w = jnp.stack([z.real, z.imag])
    # gradtx's gradient of a complex parameter is the conjugate of jax.grad's
    grad_complex = lambda z: jnp.conj(jax.grad(f_complex)(z))  # noqa: E731
    runs = {}
    for view, params, f, grad in [
        ("complex", z, f_complex, grad_complex),
        ("stacked", w, f_stacked, jax.grad(f_stacked)),
    ]:
        tx = OPTIMIZERS[name]()
        state = tx.init(params)
        update = jax.jit(lambda g, s, p, v, tx=tx, f=f: tx.update(g, s, p, value=v, grad=g, value_fn=f))
        path = []
        for _ in range(6):
            g = grad(params)
            updates, state = update(g, state, params, f(params))
            params = gradtx.apply_updates(params, updates)
            path.append(params)
        runs[view] = path
    assert runs["complex"][0].dtype == jnp.complex64
    for t, (zc, ws) in enumerate(zip(runs["complex"], runs["stacked"]), start=1):
        np.testing.assert_allclose(
            np.stack([np.real(zc), np.imag(zc)]), np.asarray(ws), rtol=1e-4, atol=1e-5, err_msg=f"{name}, step {t}"
        )
    moved = np.abs(np.asarray(runs["stacked"][-1]) - np.asarray(w)).max()
    assert moved > 1e-3, f"{name} hardly moved ({moved}): the comparison would prove nothing"


# Turning every complex parameter and gradient by the same phase e^{i phi} turns every
# update by that phase, in every row: the rules depend on complex numbers only through
# |g|, Re<x, y>, z/|z| and linear maps, which all commute with the turn. Squaring
# instead of taking |g|^2, ordering complex numbers with < or >, dropping or
# conjugating an imaginary part would each break it.
# The check runs in complex128 (x64), where rounding cannot make an ill-conditioned
# rule look wrong (bias-corrected centered RMSProp's first variance is exactly 0); the
# tolerance allows for the float32 parts (the tests' loss, Adafactor's float32 momentum).
NOT_EQUIVARIANT = {
    "noisy_sgd": "its noise does not turn with the gradients",
    "add_noise": "its noise does not turn with the gradients",
    "scale_by_distance_over_gradients": (
        "it keeps x_0 in float32 (param_dtype), and its step is proportional to the distance from x_0, "
        "here ~1e-6, which float32 rounding of x_0 changes by ~1e-3 relative"
    ),
    "sam_opaque": "its adversarial gradients come from grad_fn (the tests' loss), which does not turn with the inputs",
    "split_real_and_imaginary": "it runs Adam on the real and imaginary parts apart, which a turn mixes",
}
PHASE = np.exp(0.7j)


@pytest.mark.parametrize("name", sorted(set(ROWS) - COMPLEX_UNSUPPORTED - set(NOT_EQUIVARIANT)))
def test_turning_complex_inputs_by_a_phase_turns_the_updates(name):
    rng = np.random.default_rng(11)

    def draw(shape, scale):
        return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))

    params = {"w": draw((2, 3), 1.0)}  # one leaf: each leaf costs compile time in every row
    grads = [{"w": draw((2, 3), s)} for s in (1.0, 0.3, 2.0)]
    turn = lambda tree: jax.tree.map(lambda x: x * PHASE, tree)  # noqa: E731
    runs = []
    with jax.enable_x64(True):
        tx = ROWS[name]()
        update = jax.jit(lambda g, s, p: step(tx, g, s, p))
        for p, gs in [(params, grads), (turn(params), [turn(g) for g in grads])]:
            p = jax.tree.map(jnp.asarray, p)
            if name in LOOKAHEAD:
                p = gradtx.LookaheadParams.init_synced(p)
            state, out = tx.init(p), []
            for g in gs:
                u, state = update(jax.tree.map(jnp.asarray, g), state, p)
                p = gradtx.apply_updates(p, u)
                out.append(jax.tree.map(np.asarray, u))
            runs.append(out)
    assert all(x.dtype == np.complex128 for x in jax.tree.leaves(runs[0]))
    for t, (plain, turned) in enumerate(zip(*runs), start=1):
        for (path, want), got in zip(gradtx.tree.leaves_with_path(turn(plain)), jax.tree.leaves(turned)):
            scale = float(np.abs(want).max(initial=0))
            np.testing.assert_allclose(
                got,
                want,
                rtol=1e-5,
                atol=1e-7 * scale,
                err_msg=f"{name}, step {t}, '{gradtx.tree.path_str(path)}': the update did not turn with the inputs",
            )


@pytest.mark.parametrize("name", sorted(ROWS))  # every optimizer, transform and wrapper
def test_a_step_can_donate_the_parameters_and_the_state(name):
    """``jax.jit(train_step, donate_argnums=...)`` updates the parameters and the state in place,
    which needs every array of both to be a buffer of its own: a state that keeps the parameters
    themselves (rather than a copy) or one array in two fields fails on the first step with
    "Attempt to donate the same buffer twice"."""
    params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3])}
    if name in LOOKAHEAD:
        params = gradtx.LookaheadParams.init_synced(params)
    state = ROWS[name]().init(params)
    seen: dict[int, str] = {}
    for path, x in gradtx.tree.leaves_with_path({"params": params, "state": state}):
        if isinstance(x, jax.Array) and x.size:
            where = gradtx.tree.path_str(path)
            first = seen.setdefault(x.unsafe_buffer_pointer(), where)
            assert first == where, f"{name}: '{where}' is the same buffer as '{first}'"
