"""gradtx.core.numerics against closed forms and NumPy: step counters, bias correction, the dtype
rules of arithmetic, norms and state, the scaled norms at extreme magnitudes, |x|^2 and the loss check.

Every expected value is written here independently: a table of dtypes read off the documented
rules, a Python or float64 NumPy formula; none is computed with the function under test.
"""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import safe_increment, safe_int32_increment, safe_norm, safe_root_mean_squares
from gradtx.core import numerics

INT32_MAX = 2**31 - 1


def _x64(on):
    return jax.enable_x64(True) if on else contextlib.nullcontext()


# ------------------------------------------------------------------ step counters


def test_zero_count_is_an_int32_scalar_zero():
    count = numerics.zero_count()
    assert isinstance(count, jax.Array)
    assert count.shape == () and count.dtype == jnp.int32 and int(count) == 0


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("start", [0, 1, 41, INT32_MAX - 2, INT32_MAX - 1, INT32_MAX])
def test_safe_increment_adds_one_and_saturates_at_the_int32_maximum(start, jit):
    increment = jax.jit(numerics.safe_increment) if jit else numerics.safe_increment
    count = jnp.asarray(start, jnp.int32)
    for k in range(1, 4):
        count = increment(count)
        assert count.dtype == jnp.int32 and count.shape == ()
        assert int(count) == min(start + k, INT32_MAX)  # never wraps to -2**31


@pytest.mark.parametrize("dtype, top", [(jnp.int8, 127), (jnp.uint8, 255), (jnp.int16, 32767)])
def test_safe_increment_saturates_at_the_largest_value_of_its_own_dtype(dtype, top):
    count = jnp.asarray(top - 1, dtype)
    for want in (top, top, top):
        count = numerics.safe_increment(count)
        assert count.dtype == dtype and int(count) == want


# ------------------------------------------------------------------ bias correction


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
@pytest.mark.parametrize("t", [1, 2, 10, 1000])
def test_bias_correction_is_the_moment_over_one_minus_decay_to_the_count(decay, t, x64):
    """m / (1 - b^t) in float64 from the decay as stored (b = 0.999 is not exact in float32)."""
    dtype = np.float64 if x64 else np.float32
    moment = np.array([0.3, -1.25, 4.0e-3, 2.0e3])
    with _x64(x64):
        got = numerics.bias_correction(jnp.asarray(moment, dtype), jnp.asarray(decay, dtype), jnp.asarray(t, jnp.int32))
        assert got.dtype == dtype and got.shape == moment.shape
    b = float(np.asarray(decay, dtype))
    want = moment.astype(dtype).astype(np.float64) / (1.0 - b**t)
    # float32: 1 - b^t loses the digits that b^t (rounded to ~1e-7) shares with 1
    rtol = 1e-12 if x64 else 1e-6 / (1.0 - b**t)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol)


# ------------------------------------------------------------------ dtype rules

BF16, F16, F32, F64 = jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64
C64, C128 = jnp.complex64, jnp.complex128


def _ones(dtype):
    return jnp.ones(2, dtype)


def _name(dtype):
    return "none" if dtype is None else jnp.dtype(dtype).name


def _rows(table):
    """pytest params named by their dtypes: ``in1+in2-out`` or ``in-requested-out``."""
    rows = []
    for row in table:
        *given, want, x64 = row
        head = "+".join(_name(d) for d in given[0]) if isinstance(given[0], tuple) else _name(given[0])
        rest = [_name(d) for d in given[1:]] + [_name(want)]
        rows.append(pytest.param(*row, id="-".join([head, *rest])))
    return rows


# (input dtypes, compute dtype): their promotion, at least float32
COMPUTE = [
    ((BF16,), F32, False),
    ((F16,), F32, False),
    ((F32,), F32, False),
    ((C64,), C64, False),
    ((F32, BF16), F32, False),
    ((BF16, F16), F32, False),
    ((F16, C64), C64, False),
    ((F64,), F64, True),
    ((F64, BF16), F64, True),
    ((C64, F64), C128, True),
]


@pytest.mark.parametrize("dtypes, want, x64", _rows(COMPUTE))
def test_compute_dtype_is_the_promotion_and_at_least_float32(dtypes, want, x64):
    with _x64(x64):
        assert numerics.compute_dtype(*[_ones(d) for d in dtypes]) == jnp.dtype(want)


# (array dtype, norm dtype): the real dtype, at least float32
NORM = [
    (BF16, F32, False),
    (F16, F32, False),
    (F32, F32, False),
    (C64, F32, False),
    (F64, F64, True),
    (C128, F64, True),
]


@pytest.mark.parametrize("dtype, want, x64", _rows(NORM))
def test_norm_dtype_is_the_real_dtype_and_at_least_float32(dtype, want, x64):
    with _x64(x64):
        assert numerics.norm_dtype(_ones(dtype)) == jnp.dtype(want)


# (dtype, real dtype of the same precision)
REAL = [(C64, F32), (C128, F64), (BF16, BF16), (F16, F16), (F32, F32), (F64, F64)]


@pytest.mark.parametrize("dtype, want", [pytest.param(*row, id=f"{_name(row[0])}-{_name(row[1])}") for row in REAL])
def test_real_dtype_drops_the_imaginary_part_and_keeps_the_precision(dtype, want):
    with _x64(True):
        assert numerics.real_dtype(dtype) == jnp.dtype(want)
        assert numerics.real_dtype(jnp.dtype(dtype)) == jnp.dtype(want)


# (array dtype, requested dtype, state dtype, x64): the request when given, else the array's own;
# a real request for a complex array becomes complex of that precision
MOMENT = [
    (F32, None, F32, False),
    (BF16, None, BF16, False),
    (F16, None, F16, False),
    (C64, None, C64, False),
    (F32, BF16, BF16, False),
    (BF16, F32, F32, False),
    (C64, BF16, C64, False),
    (C64, F16, C64, False),
    (C64, F32, C64, False),
    (F64, None, F64, True),
    (C128, None, C128, True),
    (F64, F32, F32, True),
    (C64, F64, C128, True),
    (C128, F32, C64, True),
    (C64, C128, C128, True),
]


@pytest.mark.parametrize("dtype, requested, want, x64", _rows(MOMENT))
def test_moment_dtype_keeps_complex_moments_complex(dtype, requested, want, x64):
    with _x64(x64):
        assert numerics.moment_dtype(_ones(dtype), requested) == jnp.dtype(want)


# (array dtype, requested dtype, state dtype, x64): always real; the request (made real) when
# given, else the array's real dtype with float16 raised to float32
MAGNITUDE = [
    (F32, None, F32, False),
    (BF16, None, BF16, False),
    (F16, None, F32, False),
    (C64, None, F32, False),
    (F32, BF16, BF16, False),
    (F32, F16, F16, False),
    (BF16, F32, F32, False),
    (C64, BF16, BF16, False),
    (F32, C64, F32, False),
    (F64, None, F64, True),
    (C128, None, F64, True),
    (C64, F64, F64, True),
    (F32, C128, F64, True),
]


@pytest.mark.parametrize("dtype, requested, want, x64", _rows(MAGNITUDE))
def test_magnitude_dtype_is_real_and_raises_float16(dtype, requested, want, x64):
    with _x64(x64):
        assert numerics.magnitude_dtype(_ones(dtype), requested) == jnp.dtype(want)


# ------------------------------------------------------------------ scaled norms

SCALES = [1.0, 1e30, 1e-30, 0.0]


def _values(dtype, scale, shape=(3, 5)):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(scale * x, dtype)


def _numpy_norm(x, axis=None, keepdims=False):
    """The l2 norm of the given entries in float64, where neither 1e60 nor 1e-60 is out of range."""
    a = np.abs(np.asarray(x, np.complex128))
    return np.sqrt(np.sum(a**2, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", [F32, BF16, C64], ids=_name)
@pytest.mark.parametrize("scale", SCALES)
def test_safe_norm_and_safe_rms_equal_numpy_in_float64_at_every_scale(scale, dtype):
    x = _values(dtype, scale)
    want = _numpy_norm(x)
    for jit in (False, True):
        norm = jax.jit(numerics.stable_norm)(x) if jit else numerics.stable_norm(x)
        rms = jax.jit(numerics.stable_rms)(x) if jit else numerics.stable_rms(x)
        for got in (norm, rms):
            assert got.shape == () and got.dtype == jnp.float32
        np.testing.assert_allclose(float(norm), want, rtol=2e-6)
        np.testing.assert_allclose(float(rms), want / np.sqrt(x.size), rtol=2e-6)
    if scale == 0.0:
        assert float(norm) == 0.0 and float(rms) == 0.0
    else:
        assert float(norm) > 0.0  # not flushed to 0 at 1e-30, nor inf at 1e30


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("axis", [0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_safe_norm_over_axes_equals_numpy(scale, axis, keepdims):
    x = _values(F32, scale)
    got = numerics.stable_norm(x, axis=axis, keepdims=keepdims)
    want = _numpy_norm(x, axis=axis, keepdims=keepdims)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6)


def test_safe_norm_of_an_empty_array_is_zero_and_keeps_inf_and_nan():
    assert float(numerics.stable_norm(jnp.zeros((0, 3)))) == 0.0
    assert float(numerics.stable_rms(jnp.zeros((0,)))) == 0.0
    assert float(numerics.stable_norm(jnp.array([1.0, jnp.inf, -2.0]))) == np.inf
    assert np.isnan(float(numerics.stable_norm(jnp.array([1.0, jnp.nan, -2.0]))))


def test_safe_norm_in_float64_beyond_float32s_range():
    with _x64(True):
        x = jnp.asarray([3e200, -4e200, 0.0], jnp.float64)
        assert float(numerics.stable_norm(x)) == pytest.approx(5e200, rel=1e-14)
        assert float(numerics.stable_rms(x)) == pytest.approx(5e200 / np.sqrt(3), rel=1e-14)
        assert numerics.stable_norm(x).dtype == jnp.float64


# ------------------------------------------------------------------ |x|^2


@pytest.mark.parametrize("x64", [False, True], ids=["complex64", "complex128"])
def test_abs_sq_of_complex_numbers_is_real(x64):
    z = np.array([3 + 4j, -2j, 1 - 1j, 0j, -0.5 + 0.25j])
    with _x64(x64):
        got = numerics.abs_sq(jnp.asarray(z, C128 if x64 else C64))
        assert not jnp.iscomplexobj(got) and got.dtype == (F64 if x64 else F32)
    want = z.real**2 + z.imag**2  # not z**2, which is complex: (3 + 4j)**2 = -7 + 24j
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(got[:4], np.float64), [25.0, 4.0, 2.0, 0.0])


@pytest.mark.parametrize("dtype", [F32, BF16, F16], ids=_name)
def test_abs_sq_of_real_numbers_is_the_square_in_their_dtype(dtype):
    x = np.array([-3.0, 0.5, 0.0, 2.0])
    got = numerics.abs_sq(jnp.asarray(x, dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float64), x**2)


# ------------------------------------------------------------------ the loss


@pytest.mark.parametrize("shape", [(4,), (2, 3), (1,)])
def test_scalar_loss_refuses_an_array_naming_the_transform_and_the_shape(shape):
    message = (
        f"scale_by_polyak needs the loss as one number (value=), got an array of shape {shape}; "
        "average per-example losses first: value=jnp.mean(losses)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        numerics.scalar_loss(jnp.ones(shape), "scale_by_polyak")


@pytest.mark.parametrize("value", [2.5, np.float32(2.5), jnp.asarray(2.5), np.asarray(2.5)])
def test_scalar_loss_returns_a_0d_array_of_the_value(value):
    got = numerics.scalar_loss(value, "polyak_sgd")
    assert isinstance(got, jax.Array) and got.shape == () and float(got) == 2.5


# ------------------------------------------------------------------ Optax's safe norms


@pytest.mark.parametrize(
    "x, kwargs",
    [
        (np.array([3.0, 4.0]), dict()),
        (np.array([[3.0, 4.0], [0.1, 0.0]]), dict(axis=1)),
        (np.array([[3.0, 4.0], [0.1, 0.0]]), dict(axis=1, keepdims=True)),
        (np.array([3.0, -4.0, 1.0]), dict(ord=1)),
        (np.array([3.0, -4.0, 1.0]), dict(ord=np.inf)),
        (np.arange(6.0).reshape(2, 3), dict(keepdims=True)),
    ],
)
def test_safe_norm_is_the_norm_floored_with_a_finite_gradient(x, kwargs):
    for floor in (0.0, 0.5, 100.0):
        expected = np.maximum(np.linalg.norm(x, **kwargs), floor)
        got = safe_norm(jnp.asarray(x, jnp.float32), floor, **kwargs)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    grad = jax.grad(lambda v: jnp.sum(safe_norm(v, 0.5, **kwargs)))(jnp.zeros(x.shape))
    assert np.all(grad == 0)
    big = jax.grad(lambda v: jnp.sum(safe_norm(v, 1e-3)))(jnp.array([3.0, 4.0]))
    np.testing.assert_allclose(big, [0.6, 0.8], rtol=1e-6)


def test_safe_root_mean_squares_and_increments():
    x = np.array([3.0, 4.0, 0.0])
    np.testing.assert_allclose(safe_root_mean_squares(x, 0.1), np.sqrt(np.mean(x**2)), rtol=1e-6)
    assert float(safe_root_mean_squares(np.zeros(3), 0.2)) == pytest.approx(0.2)
    assert np.all(jax.grad(lambda v: safe_root_mean_squares(v, 0.2))(jnp.zeros(3)) == 0)
    assert int(safe_int32_increment(jnp.asarray(2**31 - 1, jnp.int32))) == 2**31 - 1
    assert float(safe_increment(jnp.asarray(1.5))) == 2.5


def test_global_norm_is_deprecated_for_tree_norm():
    with pytest.warns(DeprecationWarning, match="gradtx.tree.norm"):
        value = gradtx.global_norm({"a": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])})
    assert float(value) == pytest.approx(13.0)


def test_scale_gradient_and_multi_normal():
    grads = jax.grad(lambda t: jnp.sum(gradtx.scale_gradient(t, -2.0)["w"] ** 2))({"w": jnp.array([1.0, 3.0])})
    np.testing.assert_allclose(grads["w"], [-4.0, -12.0])
    np.testing.assert_array_equal(gradtx.scale_gradient(jnp.array([1.0, 2.0]), 0.0), [1.0, 2.0])
    loc, log_scale = np.array([1.0, -2.0]), np.log(np.array([0.5, 3.0]))
    dist = gradtx.multi_normal(jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32))
    x = np.array([[0.0, 1.0], [1.0, -2.0]])
    sigma = np.exp(log_scale)
    expected = np.sum(-0.5 * ((x - loc) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi)), axis=-1)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5)
    draws = np.asarray(dist.sample((20000,), jax.random.key(1)))
    # 5 standard errors of the sample mean and of the sample standard deviation
    np.testing.assert_allclose(draws.mean(0), loc, atol=5 * sigma.max() / np.sqrt(20000))
    np.testing.assert_allclose(draws.std(0), sigma, rtol=5 / np.sqrt(2 * 20000))
    with pytest.raises(ValueError, match="multi_normal: loc has shape"):
        gradtx.multi_normal(jnp.zeros(2), jnp.zeros(3))
