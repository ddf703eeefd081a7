"""gradtx.core.linear_algebra against float64 NumPy: eigh for the dominant eigenpair and the inverse
p-th root, a brute-force enumeration of supports (and SciPy when installed) for NNLS.

Every expected value is computed here independently of the function under test: ``numpy.linalg``
in float64, closed forms, or an exhaustive search.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.core.linear_algebra import matrix_inverse_pth_root, nnls, power_iteration

# ------------------------------------------------------------------ helpers


def _symmetric(rng, n, spectrum):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.asarray(spectrum, float)) @ q.T


def _dominant(a):
    """The eigenpair of largest |eigenvalue| by float64 eigh."""
    w, v = np.linalg.eigh(np.asarray(a, np.float64))
    i = np.argmax(np.abs(w))
    return w[i], v[:, i]


def _close_up_to_sign(u, v, atol):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return min(np.abs(u - v).max(), np.abs(u + v).max()) < atol


def _spd(rng, n):
    x = rng.normal(size=(n, n))
    return x @ x.T / n + 0.1 * np.eye(n)


def _root_reference(a, p, eps):
    """(A + eps * lambda_max I)^(-1/p) by float64 eigh."""
    w, v = np.linalg.eigh(np.asarray(a, np.float64))
    return (v * (w + eps * w.max()) ** (-1.0 / p)) @ v.T


def _nnls_brute_force(a, b):
    """min ||a x - b|| over x >= 0 by enumerating every support: least squares on each, the feasible best."""
    n = a.shape[1]
    best, best_x = np.inf, None
    for k in range(n + 1):
        for support in itertools.combinations(range(n), k):
            x = np.zeros(n)
            if support:
                x[list(support)] = np.linalg.lstsq(a[:, support], b, rcond=None)[0]
            if np.all(x >= 0):
                value = np.sum((a @ x - b) ** 2)
                if value < best:
                    best, best_x = value, x
    return best_x


def _problem(seed, m=9, n=4):
    """A random A and b = A x + noise with x of both signs: the solution has active and free coordinates."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, n))
    x = np.resize([1.0, -1.0, 0.5, -0.5, 2.0], n)
    return a, a @ x + 0.1 * rng.normal(size=m)


# ------------------------------------------------------------------ power_iteration


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_power_iteration_matches_eigh_on_random_symmetric_matrices(n, sign):
    rng = np.random.default_rng(n)
    rest = rng.uniform(-0.7, 0.7, size=n - 1)  # |lambda_2 / lambda_1| <= 0.7: converges in float32
    a = _symmetric(rng, n, np.concatenate([[sign * rng.uniform(1, 3)], rest]))
    eigenvalue, eigenvector = power_iteration(jnp.asarray(a, jnp.float32), num_iters=1000, error_tolerance=1e-7)
    expected_value, expected_vector = _dominant(a)
    assert eigenvalue.shape == () and eigenvector.shape == (n,)
    np.testing.assert_allclose(float(eigenvalue), expected_value, rtol=1e-5)
    assert _close_up_to_sign(eigenvector, expected_vector, 1e-4)


def test_power_iteration_takes_a_function_and_a_pytree():
    rng = np.random.default_rng(1)
    a1, a2 = _symmetric(rng, 3, [1.0, 0.3, -0.2]), _symmetric(rng, 2, [2.5, 0.5])
    f1, f2 = jnp.asarray(a1, jnp.float32), jnp.asarray(a2, jnp.float32)
    matvec = lambda t: {"a": f1 @ t["a"], "b": f2 @ t["b"]}
    v0 = {"a": jnp.ones(3), "b": jnp.ones(2)}
    eigenvalue, eigenvector = power_iteration(matvec, v0=v0, num_iters=1000, error_tolerance=1e-7)
    block = np.zeros((5, 5))
    block[:3, :3], block[3:, 3:] = a1, a2
    expected_value, expected_vector = _dominant(block)
    np.testing.assert_allclose(float(eigenvalue), expected_value, rtol=1e-5)
    assert set(eigenvector) == {"a", "b"}
    assert _close_up_to_sign(np.concatenate([eigenvector["a"], eigenvector["b"]]), expected_vector, 1e-4)
    # a plain function on arrays
    value, vector = power_iteration(lambda v: f2 @ v, v0=jnp.ones(2), num_iters=1000, error_tolerance=1e-7)
    expected_value, expected_vector = _dominant(a2)
    np.testing.assert_allclose(float(value), expected_value, rtol=1e-5)
    assert _close_up_to_sign(vector, expected_vector, 1e-4)


def _numpy_power_steps(a, v0, steps):
    v = v0 / np.linalg.norm(v0)
    changes = []
    for _ in range(steps):
        w = a @ v
        w /= np.linalg.norm(w)
        changes.append(np.linalg.norm(w - np.sign(w @ v) * v))
        v = w
    return v, changes


@pytest.mark.parametrize("tolerance", [1e-1, 1e-2, 1e-3])
def test_power_iteration_stops_at_the_first_step_whose_change_is_within_tolerance(tolerance):
    a = np.diag([1.0, 0.8, -0.5])
    v0 = np.ones(3)
    _, changes = _numpy_power_steps(a, v0, 200)
    stop = next(k for k, c in enumerate(changes, 1) if c <= tolerance)
    expected_vector, _ = _numpy_power_steps(a, v0, stop)
    later_vector, _ = _numpy_power_steps(a, v0, stop + 1)
    assert np.abs(later_vector - expected_vector).max() > 1e-4  # one more step would be visible (atol 1e-5)
    value, vector = power_iteration(
        jnp.asarray(a, jnp.float32), v0=jnp.asarray(v0), num_iters=10**6, error_tolerance=tolerance
    )
    np.testing.assert_allclose(np.asarray(vector), expected_vector, atol=1e-5)
    np.testing.assert_allclose(float(value), expected_vector @ a @ expected_vector, rtol=1e-5)


def test_power_iteration_stops_early_for_a_negative_dominant_eigenvalue():
    calls = []
    a = jnp.diag(jnp.array([-5.0, 1.0, 2.0]))

    def matvec(v):
        jax.debug.callback(lambda: calls.append(1))
        return a @ v

    value, vector = power_iteration(matvec, v0=jnp.ones(3), num_iters=10**6, error_tolerance=1e-6)
    jax.effects_barrier()
    assert 5 < len(calls) < 100
    np.testing.assert_allclose(float(value), -5.0, rtol=1e-6)
    assert _close_up_to_sign(vector, [1.0, 0.0, 0.0], 1e-5)


def test_power_iteration_runs_exactly_num_iters_steps_without_tolerance():
    a = np.diag([1.0, 0.9, 0.5])
    for steps in (0, 1, 3):
        expected, _ = _numpy_power_steps(a, np.ones(3), steps)
        value, vector = power_iteration(jnp.asarray(a), v0=jnp.ones(3), num_iters=steps, error_tolerance=0.0)
        np.testing.assert_allclose(np.asarray(vector), expected, atol=1e-6)
        np.testing.assert_allclose(float(value), expected @ a @ expected, rtol=1e-6)


def test_power_iteration_default_start_is_fixed_and_the_key_changes_it():
    a = jnp.eye(4)
    _, default = power_iteration(a, num_iters=0)
    _, again = power_iteration(a, num_iters=0)
    _, keyed = power_iteration(a, num_iters=0, key=jax.random.key(1))
    np.testing.assert_array_equal(default, again)
    assert np.abs(np.asarray(default) - np.asarray(keyed)).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(np.asarray(keyed, np.float64)), 1.0, rtol=1e-6)


def test_power_iteration_jits_keeps_dtypes_and_handles_the_zero_matrix():
    a = jnp.asarray(_symmetric(np.random.default_rng(2), 4, [3.0, 1.0, 0.5, 0.1]), jnp.float32)
    value, vector = jax.jit(power_iteration)(a)
    assert value.dtype == vector.dtype == jnp.float32
    np.testing.assert_allclose(float(value), 3.0, rtol=1e-5)
    value, vector = power_iteration(a.astype(jnp.bfloat16))
    assert value.dtype == vector.dtype == jnp.bfloat16
    value, vector = power_iteration(jnp.zeros((3, 3)))
    assert float(value) == 0.0 and np.all(np.isfinite(vector))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: power_iteration(jnp.ones((2, 3))), r"power_iteration: matrix must be a square 2-D array"),
        (lambda: power_iteration(jnp.ones(3)), r"power_iteration: matrix must be a square 2-D array"),
        (lambda: power_iteration(lambda v: v), r"power_iteration: v0 must be given"),
        (lambda: power_iteration(jnp.eye(3), v0=jnp.ones(2)), r"power_iteration: v0 must have shape \(3,\)"),
        (lambda: power_iteration(jnp.eye(3), num_iters=-1), r"power_iteration: num_iters must be an integer >= 0"),
        (lambda: power_iteration(jnp.eye(3), error_tolerance=-1.0), r"power_iteration: error_tolerance must be"),
    ],
)
def test_power_iteration_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ matrix_inverse_pth_root


@pytest.mark.parametrize("n", [1, 2, 5, 16])
@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_matrix_inverse_pth_root_matches_eigh_with_a_ridge_relative_to_the_largest_eigenvalue(n, p, eps):
    a = _spd(np.random.default_rng(10 * n + p), n)
    root, error = matrix_inverse_pth_root(jnp.asarray(a, jnp.float32), p, ridge_epsilon=eps)
    expected = _root_reference(a, p, eps)
    assert root.shape == (n, n) and root.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(root, np.float64), expected, atol=2e-5 * np.abs(expected).max())
    assert error.shape == () and 0 <= float(error) < 1e-5
    # the defining property: root^p (A + ridge I) = I
    regularized = a + eps * np.linalg.eigvalsh(a).max() * np.eye(n)
    product = np.linalg.matrix_power(np.asarray(root, np.float64), p) @ regularized
    np.testing.assert_allclose(product, np.eye(n), atol=1e-4)


def test_matrix_inverse_pth_root_of_a_one_by_one_matrix_is_direct_with_error_zero():
    root, error = matrix_inverse_pth_root(jnp.array([[4.0]]), 2, ridge_epsilon=0.5)
    np.testing.assert_allclose(np.asarray(root), [[(4.0 + 0.5 * 4.0) ** -0.5]], rtol=1e-6)
    assert float(error) == 0.0


def test_matrix_inverse_pth_root_stays_finite_on_singular_matrices():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 2))
    a = x @ x.T  # rank 2
    for p in (1, 2, 4):
        root, _ = matrix_inverse_pth_root(jnp.asarray(a, jnp.float32), p, ridge_epsilon=1e-3)
        assert np.all(np.isfinite(root))
        expected = _root_reference(a, p, 1e-3)
        np.testing.assert_allclose(np.asarray(root, np.float64), expected, atol=1e-3 * np.abs(expected).max())
    root, _ = matrix_inverse_pth_root(jnp.zeros((3, 3)), 2)  # documented: a ridge of eps when lambda_max = 0
    np.testing.assert_allclose(np.asarray(root), 1e3 * np.eye(3), rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_matrix_inverse_pth_root_with_no_steps_returns_the_scaled_identity_start(p):
    a = np.diag([2.0, 1.0, 0.5])
    root, error = matrix_inverse_pth_root(jnp.asarray(a), p, num_iters=0, ridge_epsilon=0.0)
    z = (1 + p) / (2 * 2.0)  # (1 + p) / (2 ||A||)
    np.testing.assert_allclose(np.asarray(root), z ** (1 / p) * np.eye(3), rtol=1e-5)
    np.testing.assert_allclose(float(error), np.abs(z * a - np.eye(3)).max(), rtol=1e-5)


def test_matrix_inverse_pth_root_jits_and_keeps_the_dtype():
    a = _spd(np.random.default_rng(4), 4)
    root, error = jax.jit(matrix_inverse_pth_root, static_argnums=1)(jnp.asarray(a, jnp.float32), 2)
    np.testing.assert_allclose(np.asarray(root, np.float64), _root_reference(a, 2, 1e-6), rtol=1e-4, atol=1e-5)
    root, error = matrix_inverse_pth_root(jnp.asarray(a, jnp.bfloat16), 2)
    assert root.dtype == jnp.bfloat16 and error.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(root, np.float64), _root_reference(a, 2, 1e-6), rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((jnp.ones((2, 3)), 2), {}, r"matrix_inverse_pth_root: matrix must be a square 2-D array"),
        ((jnp.eye(2), 0), {}, r"matrix_inverse_pth_root: p must be a positive integer"),
        ((jnp.eye(2), -2), {}, r"matrix_inverse_pth_root: p must be a positive integer"),
        ((jnp.eye(2), 1.5), {}, r"matrix_inverse_pth_root: p must be a positive integer"),
        ((jnp.eye(2), 2), {"ridge_epsilon": -1.0}, r"matrix_inverse_pth_root: ridge_epsilon must be"),
        ((jnp.eye(2), 2), {"num_iters": 2.5}, r"matrix_inverse_pth_root: num_iters must be an integer"),
    ],
)
def test_matrix_inverse_pth_root_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        matrix_inverse_pth_root(*args, **kwargs)


# ------------------------------------------------------------------ nnls


def test_brute_force_reference_is_itself_right_on_a_closed_form():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # unconstrained optimum has x2 < 0; with x2 = 0 the optimum is x1 = (2 + 1) / 2
    np.testing.assert_allclose(_nnls_brute_force(a, np.array([2.0, -1.0, 1.0])), [1.5, 0.0])


@pytest.mark.parametrize("seed", range(6))
def test_nnls_matches_brute_force_and_satisfies_kkt(seed):
    a, b = _problem(seed)
    x = nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 1000)
    assert x.shape == (4,) and x.dtype == jnp.float32
    x = np.asarray(x, np.float64)
    expected = _nnls_brute_force(a, b)
    np.testing.assert_allclose(x, expected, atol=1e-4)
    assert np.all(x >= 0)
    gradient = a.T @ (a @ x - b)
    assert np.all(gradient[x == 0] >= -1e-4)
    np.testing.assert_allclose(gradient[x > 0], 0.0, atol=1e-4)
    assert 0 < np.count_nonzero(expected) < 4  # the constraint is active somewhere, not everywhere


def test_nnls_matches_scipy_when_installed():
    optimize = pytest.importorskip("scipy.optimize")
    for seed in range(3):
        a, b = _problem(100 + seed, m=12, n=5)
        x = nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 2000)
        np.testing.assert_allclose(np.asarray(x, np.float64), optimize.nnls(a, b)[0], atol=1e-4)


def test_nnls_solves_several_right_hand_sides_column_by_column():
    a, _ = _problem(7)
    b = np.random.default_rng(8).normal(size=(9, 3))
    x = nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 1000)
    assert x.shape == (4, 3)
    for j in range(3):
        np.testing.assert_allclose(np.asarray(x[:, j], np.float64), _nnls_brute_force(a, b[:, j]), atol=1e-4)


def test_nnls_first_steps_follow_fista_from_zero_with_step_one_over_l():
    a, b = _problem(9)
    lipschitz = np.linalg.eigvalsh(a.T @ a).max()
    x, y, t = np.zeros(4), np.zeros(4), 1.0
    for k in range(1, 6):
        x_next = np.maximum(y - a.T @ (a @ y - b) / lipschitz, 0)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        x, y, t = x_next, x_next + (t - 1) / t_next * (x_next - x), t_next
        got = nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), k)
        np.testing.assert_allclose(np.asarray(got, np.float64), x, atol=1e-5)
    # a given L sets the step: one step from zero is max(0, A^T b / L)
    got = nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 1, L=3.0 * lipschitz)
    np.testing.assert_allclose(np.asarray(got, np.float64), np.maximum(a.T @ b / (3.0 * lipschitz), 0), atol=1e-6)
    assert np.all(np.asarray(nnls(jnp.asarray(a), jnp.asarray(b), 0)) == 0)


def test_nnls_unroll_jit_and_dtypes():
    a, b = (jnp.asarray(v, jnp.float32) for v in _problem(11))
    reference = nnls(a, b, 50)
    for unroll in (2, 7, True):
        np.testing.assert_allclose(nnls(a, b, 50, unroll=unroll), reference, atol=1e-6)
    np.testing.assert_allclose(jax.jit(nnls, static_argnums=(2, 3))(a, b, 50, 5), reference, atol=1e-6)
    assert nnls(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), 20).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((jnp.ones(3), jnp.ones(3), 5), {}, r"nnls: A must be a 2-D array"),
        ((jnp.ones((3, 2)), jnp.ones(4), 5), {}, r"nnls: b must have shape \(3,\)"),
        ((jnp.ones((3, 2)), jnp.ones((3, 2, 1)), 5), {}, r"nnls: b must have shape"),
        ((jnp.ones((3, 2)), jnp.ones(3), -1), {}, r"nnls: iters must be an integer >= 0"),
        ((jnp.ones((3, 2)), jnp.ones(3), 5), {"unroll": 0}, r"nnls: unroll must be"),
        ((jnp.ones((3, 2)), jnp.ones(3), 5), {"L": 0.0}, r"nnls: L must be"),
    ],
)
def test_nnls_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nnls(*args, **kwargs)


def test_eager_calls_compile_once_per_shape():
    compiles = []
    listener = lambda name, duration, **kwargs: compiles.append(name) if "backend_compile" in name else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    b = jnp.array([[5.0, 2.0], [2.0, 4.0]])
    calls = [
        lambda m: matrix_inverse_pth_root(m, 2),
        lambda m: power_iteration(m),
    ]
    for call in calls:
        jax.block_until_ready(call(a))
        before = len(compiles)
        out = jax.block_until_ready(call(b))  # other values, same shape: nothing new to compile
        assert len(compiles) == before
    assert np.allclose(out[0], np.linalg.eigvalsh(np.asarray(b)).max(), rtol=1e-5)
