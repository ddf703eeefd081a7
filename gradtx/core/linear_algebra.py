"""Numerical linear algebra for the preconditioners: the dominant eigenpair, inverse p-th roots, NNLS.

Every routine runs under ``jit``: loops are ``lax.while_loop`` / ``lax.fori_loop``, shapes and the
root's order ``p`` are the only static values. Arithmetic is carried out in at least float32 and
the results come back in the dtype of the input.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core.aliases import PyTree
from gradtx.core.numerics import compute_dtype
from gradtx.core.validation import check_nonnegative, check_positive, check_that, concrete_value

HIGHEST = jax.lax.Precision.HIGHEST


def _checked(who: str, check: Callable[..., Any], name: str, value: Any, *args: Any) -> Any:
    try:
        return check(name, value, *args)
    except ValueError as error:
        raise ValueError(f"{who}: {error}") from None


def _count(who: str, name: str, value: Any) -> Any:
    """An iteration count: an integer >= 0 when it is known now; a traced count passes."""
    ok = lambda n: isinstance(n, int) and n >= 0
    return _checked(who, check_that, name, value, ok, "an integer >= 0")


def _square(who: str, matrix: Any) -> jax.Array:
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{who}: matrix must be a square 2-D array, got shape {matrix.shape}")
    return matrix


def _float_dtype(x: jax.Array) -> Any:
    """The dtype results are returned in: ``x``'s own when it is floating, else the default float."""
    return x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.result_type(float)


def _vdot(u: PyTree, v: PyTree, precision: Any) -> jax.Array:
    products = jax.tree.map(lambda a, b: jnp.vdot(a, b, precision=precision), u, v)
    return sum(jax.tree.leaves(products), start=jnp.zeros((), jnp.result_type(*jax.tree.leaves(u))))


def power_iteration(
    matrix: jax.Array | Callable[[PyTree], PyTree],
    *,
    v0: PyTree | None = None,
    num_iters: int | jax.Array = 100,
    error_tolerance: float | jax.Array = 1e-6,
    precision: jax.lax.Precision = HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, PyTree]:
    r"""The dominant eigenpair ``(eigenvalue, eigenvector)`` of a symmetric matrix, by power iteration.

    Starting from :math:`v_0 / \|v_0\|`, each step is :math:`v_{k+1} = M v_k / \|M v_k\|`; the
    eigenvalue is the Rayleigh quotient :math:`\lambda_k = v_k^\top M v_k` of the returned vector.
    The loop stops after ``num_iters`` steps, or as soon as the direction moves by at most
    ``error_tolerance``: :math:`\|v_{k+1} - s\, v_k\| \le` ``error_tolerance`` with
    :math:`s = \operatorname{sign}(v_{k+1}^\top v_k)` (so a negative dominant eigenvalue converges too).
    The eigenvalue returned is the one of largest magnitude, with its sign. A matrix whose product
    with the current vector is zero (the zero matrix) gives eigenvalue 0 and the starting vector.

    Args:
        matrix: a square 2-D array, or a function ``v -> M v`` on arrays or pytrees shaped like ``v0``.
        v0: the starting vector (a pytree when ``matrix`` is a function, where it is required);
            by default a standard normal vector drawn with ``key``.
        num_iters: the largest number of steps.
        error_tolerance: the change in the unit eigenvector below which the loop stops.
        precision: the precision of the matrix products and inner products.
        key: the PRNG key ``v0`` is drawn with when not given; ``jax.random.key(0)`` when None.

    Returns:
        ``(eigenvalue, eigenvector)``: a 0-d array and a unit vector shaped like ``v0``, in the
        matrix's dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.linear_algebra import power_iteration
        >>> eigenvalue, eigenvector = power_iteration(jnp.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> print(round(float(eigenvalue), 4), jnp.round(jnp.abs(eigenvector), 4))
        3.0 [0.7071 0.7071]
    """
    who = "power_iteration"
    _count(who, "num_iters", num_iters)
    _checked(who, check_nonnegative, "error_tolerance", error_tolerance)
    if callable(matrix):
        if v0 is None:
            raise ValueError(f"{who}: v0 must be given when matrix is a function, got None")
        matvec = matrix
        v = jax.tree.map(jnp.asarray, v0)
    else:
        a = _square(who, matrix)
        out_dtype = _float_dtype(a)
        a = a.astype(compute_dtype(a))
        n = a.shape[0]
        if v0 is None:
            v = jax.random.normal(jax.random.key(0) if key is None else key, (n,), a.dtype)
        else:
            v = jnp.asarray(v0, a.dtype)
            if v.shape != (n,):
                raise ValueError(f"{who}: v0 must have shape {(n,)} to match matrix, got {v.shape}")
        eigenvalue, v = _dense_power_iteration(a, v, jnp.asarray(num_iters), error_tolerance, precision)
        return eigenvalue.astype(out_dtype), v.astype(out_dtype)
    return _power_loop(matvec, v, num_iters, error_tolerance, precision)


@functools.partial(jax.jit, static_argnums=(4,))
def _dense_power_iteration(a: jax.Array, v: jax.Array, num_iters: Any, error_tolerance: Any, precision: Any):
    """:func:`power_iteration` of a matrix, jitted: an eager call compiles once per shape and dtype."""
    return _power_loop(lambda x: jnp.matmul(a, x, precision=precision), v, num_iters, error_tolerance, precision)


def _power_loop(matvec: Callable[[PyTree], PyTree], v: PyTree, num_iters: Any, error_tolerance: Any, precision: Any):
    def normalized(w: PyTree, fallback: PyTree) -> PyTree:
        norm = jnp.sqrt(_vdot(w, w, precision).real)
        safe = jnp.where(norm > 0, norm, 1)
        return jax.tree.map(lambda wi, fi: jnp.where(norm > 0, wi / safe.astype(wi.dtype), fi), w, fallback)

    def step(state):
        i, v, mv, _, _ = state
        v_next = normalized(mv, v)
        mv_next = matvec(v_next)
        inner = _vdot(v_next, v, precision).real
        sign = jnp.where(inner < 0, -1, 1)
        diff = jax.tree.map(lambda x, y: x - sign.astype(x.dtype) * y, v_next, v)
        error = jnp.sqrt(_vdot(diff, diff, precision).real)
        return i + 1, v_next, mv_next, _vdot(v_next, mv_next, precision), error

    def running(state):
        i, _, _, _, error = state
        return (i < num_iters) & (error > error_tolerance)

    v = normalized(v, v)
    mv = matvec(v)
    eigenvalue = _vdot(v, mv, precision)
    init = (jnp.zeros((), jnp.int32), v, mv, eigenvalue, jnp.asarray(jnp.inf, eigenvalue.real.dtype))
    _, v, _, eigenvalue, _ = jax.lax.while_loop(running, step, init)
    return eigenvalue, v


def _power(x: jax.Array, p: int, precision: Any) -> jax.Array:
    """``x**p`` for a static integer ``p >= 1``, by repeated squaring."""
    result = None
    while p:
        if p & 1:
            result = x if result is None else jnp.matmul(result, x, precision=precision)
        p >>= 1
        if p:
            x = jnp.matmul(x, x, precision=precision)
    assert result is not None
    return result


def matrix_inverse_pth_root(
    matrix: jax.Array,
    p: int,
    num_iters: int | jax.Array = 100,
    ridge_epsilon: float | jax.Array = 1e-6,
    error_tolerance: float | jax.Array = 1e-6,
    precision: jax.lax.Precision = HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    r"""The inverse p-th root :math:`(A + \epsilon \lambda_{max} I)^{-1/p}` of a symmetric PSD matrix.

    The coupled Newton iteration used by Shampoo (Gupta et al., 2018, :arxiv:`1802.09568`;
    Anil et al., 2020, :arxiv:`2002.09018`). The ridge is relative to the largest eigenvalue
    :math:`\lambda_{max}` of :math:`A` (found by :func:`power_iteration`; taken as 1 when it is 0,
    so that the zero matrix gives :math:`\epsilon^{-1/p} I`). With
    :math:`A_\epsilon = A + \epsilon \lambda_{max} I`, :math:`z = (1 + p) / (2 \|A_\epsilon\|_2)`,
    :math:`X_0 = z^{1/p} I` and :math:`M_0 = z A_\epsilon`, each step is

    .. math::
        T_k = ((p + 1) I - M_k) / p, \qquad X_{k+1} = X_k T_k, \qquad M_{k+1} = T_k^p M_k,

    which keeps :math:`M_k = X_k^p A_\epsilon` and drives every eigenvalue of :math:`M_k` monotonically
    to 1, hence :math:`X_k \to A_\epsilon^{-1/p}`. The error is :math:`\max_{ij} |M_k - I|_{ij}`; the
    loop stops after ``num_iters`` steps, when the error is at most ``error_tolerance``, or when a step
    would not decrease :math:`\|M_k - I\|_F` (exact arithmetic always would: rounding has taken
    over, and that step is discarded). A 1x1 matrix is rooted directly, error 0.

    Args:
        matrix: a symmetric positive semi-definite 2-D array.
        p: the order of the root, a positive integer (static).
        num_iters: the largest number of Newton steps.
        ridge_epsilon: the ridge, relative to the largest eigenvalue of ``matrix``.
        error_tolerance: the error at or below which the iteration stops.
        precision: the precision of the matrix products.

    Returns:
        ``(root, error)``: the root in the matrix's dtype, and the final error (0-d, at least float32).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.linear_algebra import matrix_inverse_pth_root
        >>> root, error = matrix_inverse_pth_root(jnp.diag(jnp.array([4.0, 16.0])), 2, ridge_epsilon=0.0)
        >>> print(jnp.round(root, 4))
        [[0.5  0.  ]
         [0.   0.25]]
    """
    who = "matrix_inverse_pth_root"
    a = _square(who, matrix)
    order = concrete_value(p)
    if not (isinstance(order, (int, float)) and order > 0 and float(order).is_integer()):
        raise ValueError(f"{who}: p must be a positive integer (static), got {p!r}")
    p = int(order)
    _count(who, "num_iters", num_iters)
    _checked(who, check_nonnegative, "ridge_epsilon", ridge_epsilon)
    _checked(who, check_nonnegative, "error_tolerance", error_tolerance)
    out_dtype = _float_dtype(a)
    dtype = compute_dtype(a)
    a = a.astype(dtype)
    n = a.shape[0]
    if n <= 1:
        scale = jnp.where(a > 0, a, 1)
        return ((a + ridge_epsilon * scale) ** (-1.0 / p)).astype(out_dtype), jnp.zeros((), dtype)

    root, error = _newton_root(a, p, jnp.asarray(num_iters), ridge_epsilon, error_tolerance, precision)
    return root.astype(out_dtype), error


# Jitted with the order and the precision static: an eager call compiles once per shape and dtype
# instead of tracing and compiling its loops again at every call.
@functools.partial(jax.jit, static_argnums=(1, 5))
def _newton_root(
    a: jax.Array, p: int, num_iters: jax.Array, ridge_epsilon: Any, error_tolerance: Any, precision: Any
) -> tuple[jax.Array, jax.Array]:
    dtype, n = a.dtype, a.shape[0]
    start = jax.random.normal(jax.random.key(0), (n,), dtype)  # power_iteration's default start
    max_ev, _ = _power_loop(lambda x: jnp.matmul(a, x, precision=precision), start, 100, 1e-6, precision)
    ridge = jnp.asarray(ridge_epsilon, dtype) * jnp.where(max_ev > 0, max_ev, 1)
    identity = jnp.eye(n, dtype=dtype)
    a = a + ridge * identity
    z = (1 + p) / (2 * (max_ev + ridge))
    x0 = z ** (1.0 / p) * identity
    m0 = z * a
    errors = lambda m: (jnp.max(jnp.abs(m - identity)), jnp.sum(jnp.square(m - identity)))

    def step(state):
        i, x, m, error, frobenius, _ = state
        t = ((p + 1) * identity - m) / p
        x_next = jnp.matmul(x, t, precision=precision)
        m_next = jnp.matmul(_power(t, p, precision), m, precision=precision)
        error_next, frobenius_next = errors(m_next)
        better = frobenius_next < frobenius
        keep = lambda new, old: jnp.where(better, new, old)
        return i + 1, keep(x_next, x), keep(m_next, m), keep(error_next, error), keep(frobenius_next, frobenius), better

    def running(state):
        i, _, _, error, _, improving = state
        return (i < num_iters) & (error > error_tolerance) & improving

    init = (jnp.zeros((), jnp.int32), x0, m0, *errors(m0), jnp.asarray(True))
    _, root, _, error, _, _ = jax.lax.while_loop(running, step, init)
    return root, error


def nnls(
    A: jax.Array, b: jax.Array, iters: int, unroll: int | bool = 1, L: float | jax.Array | None = None
) -> jax.Array:
    r"""Non-negative least squares :math:`\min_{x \ge 0} \tfrac12 \|A x - b\|^2`, by accelerated projected gradient.

    FISTA (Beck & Teboulle, 2009) with the projection onto :math:`x \ge 0` and step :math:`1/L`,
    where :math:`L = \lambda_{max}(A^\top A)` is the Lipschitz constant of the gradient
    :math:`A^\top (A x - b)`. From :math:`x_0 = y_0 = 0`, :math:`t_0 = 1`:

    .. math::
        x_{k+1} = \max(0,\ y_k - A^\top (A y_k - b) / L), \qquad
        t_{k+1} = \tfrac{1 + \sqrt{1 + 4 t_k^2}}{2}, \qquad
        y_{k+1} = x_{k+1} + \tfrac{t_k - 1}{t_{k+1}} (x_{k+1} - x_k).

    The objective gap falls as :math:`O(1/k^2)` towards the minimum. ``b`` may hold several
    right-hand sides as columns; each is solved independently.

    Args:
        A: the ``(m, n)`` design matrix.
        b: the targets, shape ``(m,)`` or ``(m, k)``.
        iters: the number of iterations.
        unroll: how many iterations the loop unrolls (``True``: all), as in ``lax.fori_loop``.
        L: the Lipschitz constant; the largest eigenvalue of :math:`A^\top A` when None.

    Returns:
        ``x``, shape ``(n,)`` or ``(n, k)``, non-negative, in the dtype of ``A`` and ``b``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.linear_algebra import nnls
        >>> A = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> print(jnp.round(nnls(A, jnp.array([2.0, -1.0, 1.0]), 200), 4))
        [1.5 0. ]
    """
    who = "nnls"
    A, b = jnp.asarray(A), jnp.asarray(b)
    if A.ndim != 2:
        raise ValueError(f"{who}: A must be a 2-D array, got shape {A.shape}")
    if b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ValueError(f"{who}: b must have shape ({A.shape[0]},) or ({A.shape[0]}, k) to match A, got {b.shape}")
    _count(who, "iters", iters)
    if not (isinstance(unroll, bool) or (isinstance(unroll, numbers.Integral) and unroll >= 1)):
        raise ValueError(f"{who}: unroll must be an integer >= 1 or a bool, got {unroll!r}")
    out_dtype = jnp.result_type(_float_dtype(A), _float_dtype(b))
    dtype = jnp.promote_types(out_dtype, jnp.float32)
    A, b = A.astype(dtype), b.astype(dtype)
    gram = jnp.matmul(A.T, A, precision=HIGHEST)
    atb = jnp.matmul(A.T, b, precision=HIGHEST)
    if L is None:
        L = jnp.linalg.eigvalsh(gram)[-1] if A.size else jnp.zeros((), dtype)
    else:
        _checked(who, check_positive, "L", L)
    L = jnp.asarray(L, dtype)
    step = jnp.where(L > 0, 1 / jnp.where(L > 0, L, 1), 0)

    def body(_, state):
        x, y, t = state
        x_next = jnp.maximum(y - step * (jnp.matmul(gram, y, precision=HIGHEST) - atb), 0)
        t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return x_next, x_next + ((t - 1) / t_next) * (x_next - x), t_next

    x0 = jnp.zeros(A.shape[1:] + b.shape[1:], dtype)
    x, _, _ = jax.lax.fori_loop(0, iters, body, (x0, x0, jnp.ones((), dtype)), unroll=unroll)
    return x.astype(out_dtype)
