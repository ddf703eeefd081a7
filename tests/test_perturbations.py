"""gradtx.perturbations against closed forms and large NumPy Monte-Carlo samples.

The noise: sample shapes and dtypes, the first two moments, and log_prob against the density
formulas. make_perturbed_fun: the value and the gradient of a linear function (closed forms:
E[a.(x + sigma Z)] = a.x + sigma E[Z] sum(a), with E[Z] = Euler's gamma for Gumbel noise, 0
for normal noise; the estimator of the gradient is unbiased, a); the value of a perturbed
one-hot argmax against softmax(x / sigma), which it equals in expectation under Gumbel noise,
and against a NumPy Monte Carlo; the gradient of a scalarised perturbed argmax against the
finite-difference gradient of that softmax; the baseline, exactly (the estimate with it is the
one without minus f(x) times the estimate for f = 1); forward and reverse mode agreeing; pytrees, batches,
jit; and the errors for num_samples and sigma.

Statistical tolerances: an estimate from N samples is compared with its expectation within
Z = 5 standard errors, sd / sqrt(N), with sd the standard deviation of one sample's term, known
in closed form or measured on an independent NumPy sample of 10^6 draws (the chance of a false
failure is below 1e-6 per component). Every seed is fixed.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import perturbations

Z_SCORE = 5.0
EULER_GAMMA = 0.5772156649015329
NOISES = {"gumbel": perturbations.Gumbel(), "normal": perturbations.Normal()}
KEY = jax.random.key(0)


def numpy_noise(kind: str, size, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gumbel(size=size) if kind == "gumbel" else rng.standard_normal(size=size)


def numpy_score(kind: str, z: np.ndarray) -> np.ndarray:
    """The gradient of -log p: 1 - e^{-z} for the standard Gumbel, z for the standard normal."""
    return 1 - np.exp(-z) if kind == "gumbel" else z


def one_hot_argmax(x):
    return jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1])


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ the noise


@pytest.mark.parametrize("kind", list(NOISES))
def test_sample_shapes_and_dtypes(kind):
    noise = NOISES[kind]
    assert noise.sample(KEY).shape == ()
    assert noise.sample(KEY).dtype == jnp.float32
    assert noise.sample(KEY, (2, 3)).shape == (2, 3)
    assert noise.sample(KEY, [4]).shape == (4,)
    assert noise.sample(KEY, (5,), jnp.float16).dtype == jnp.float16
    assert noise.sample(KEY, sample_shape=(5,), dtype=jnp.bfloat16).dtype == jnp.bfloat16
    assert not np.array_equal(noise.sample(KEY, (5,)), noise.sample(jax.random.key(1), (5,)))


def test_method_signatures():
    for noise in NOISES.values():
        sample = inspect.signature(noise.sample).parameters
        assert list(sample) == ["key", "sample_shape", "dtype"]
        assert sample["sample_shape"].default == () and sample["dtype"].default is float
        assert list(inspect.signature(noise.log_prob).parameters) == ["inputs"]
    params = inspect.signature(perturbations.make_perturbed_fun).parameters
    assert list(params) == ["fun", "num_samples", "sigma", "noise", "use_baseline"]
    assert (params["num_samples"].default, params["sigma"].default, params["use_baseline"].default) == (1000, 0.1, True)
    assert isinstance(params["noise"].default, perturbations.Gumbel)


@pytest.mark.parametrize("kind", list(NOISES))
def test_sample_moments(kind):
    n = 200_000
    z = np.asarray(NOISES[kind].sample(jax.random.key(3), (n,)), np.float64)
    # Gumbel: mean gamma, variance pi^2/6, fourth central moment 5.4 var^2; normal: 0, 1, 3
    mean, var, kurtosis = (EULER_GAMMA, np.pi**2 / 6, 5.4) if kind == "gumbel" else (0.0, 1.0, 3.0)
    assert abs(z.mean() - mean) < Z_SCORE * np.sqrt(var / n)
    assert abs(z.var() - var) < Z_SCORE * var * np.sqrt((kurtosis - 1) / n)


def test_log_prob_against_the_density_formulas():
    z = np.linspace(-2.0, 6.0, 15).reshape(3, 5)
    gumbel = np.exp(-(z + np.exp(-z)))  # the standard Gumbel density
    normal = np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
    got_gumbel = perturbations.Gumbel().log_prob(jnp.asarray(z, jnp.float32))
    got_normal = perturbations.Normal().log_prob(jnp.asarray(z, jnp.float32))
    assert got_gumbel.shape == got_normal.shape == (3, 5)  # elementwise, not summed
    np.testing.assert_allclose(got_gumbel, np.log(gumbel), rtol=1e-6, atol=1e-6)
    # the normal's log_prob leaves out the constant -log(2 pi) / 2
    np.testing.assert_allclose(got_normal, np.log(normal) + 0.5 * np.log(2 * np.pi), rtol=1e-6, atol=1e-6)


def test_log_prob_normalisation():
    # the Gumbel log-density integrates to 1 as it is; the normal's to sqrt(2 pi)
    z = np.linspace(-10.0, 40.0, 200_001)
    gumbel = np.exp(np.asarray(perturbations.Gumbel().log_prob(jnp.asarray(z)), np.float64))
    normal = np.exp(np.asarray(perturbations.Normal().log_prob(jnp.asarray(z)), np.float64))
    assert np.trapezoid(gumbel, z) == pytest.approx(1.0, rel=1e-5)
    assert np.trapezoid(normal, z) == pytest.approx(np.sqrt(2 * np.pi), rel=1e-5)


# ------------------------------------------------------------------ a linear function

A = np.array([1.0, -2.0, 0.5, 3.0])
X = np.array([0.1, 0.3, 0.2, -0.5])


@pytest.mark.parametrize("kind", list(NOISES))
def test_linear_value(kind):
    n, sigma = 20_000, 0.3
    f = perturbations.make_perturbed_fun(lambda t: t @ A, num_samples=n, sigma=sigma, noise=NOISES[kind])
    mean, sd = (EULER_GAMMA, np.pi / np.sqrt(6)) if kind == "gumbel" else (0.0, 1.0)
    want = A @ X + sigma * mean * A.sum()
    # one sample's term is a.(x + sigma Z): its sd is sigma |a| sd(Z)
    assert abs(float(f(KEY, jnp.asarray(X, jnp.float32))) - want) < Z_SCORE * sigma * np.linalg.norm(A) * sd / np.sqrt(
        n
    )


def linear_gradient_sd(kind: str, a: np.ndarray, x: np.ndarray, sigma: float, use_baseline: bool) -> np.ndarray:
    """The sd of one sample's term of the gradient estimate of t -> a.t, measured in NumPy:
    (a.(x + sigma z) - b) * score(z) / sigma, b = a.x with the baseline, else 0."""
    z = numpy_noise(kind, (1_000_000, a.size))
    value = (x + sigma * z) @ a - (a @ x if use_baseline else 0.0)
    return (value[:, None] * numpy_score(kind, z) / sigma).std(axis=0)


@pytest.mark.parametrize("use_baseline", [True, False])
@pytest.mark.parametrize("kind", list(NOISES))
def test_linear_gradient_is_unbiased(kind, use_baseline):
    n, sigma = 20_000, 0.3
    f = perturbations.make_perturbed_fun(
        lambda t: t @ A, num_samples=n, sigma=sigma, noise=NOISES[kind], use_baseline=use_baseline
    )
    got = jax.grad(f, argnums=1)(KEY, jnp.asarray(X, jnp.float32))
    tol = Z_SCORE * linear_gradient_sd(kind, A, X, sigma, use_baseline) / np.sqrt(n)
    assert np.all(np.abs(np.asarray(got) - A) < tol), (got, A, tol)


def test_pytree_inputs():
    n, sigma = 20_000, 0.2
    inputs = {"a": jnp.asarray(X[:3], jnp.float32), "b": jnp.asarray(X[3], jnp.float32)}
    fun = lambda t: {"out": t["a"] @ A[:3] + A[3] * t["b"]}
    f = perturbations.make_perturbed_fun(fun, num_samples=n, sigma=sigma)
    value = f(KEY, inputs)
    assert set(value) == {"out"}
    want = A @ X + sigma * EULER_GAMMA * A.sum()
    assert abs(float(value["out"]) - want) < Z_SCORE * sigma * np.linalg.norm(A) * np.pi / np.sqrt(6 * n)
    grads = jax.grad(lambda t: f(KEY, t)["out"])(inputs)
    tol = Z_SCORE * linear_gradient_sd("gumbel", A, X, sigma, True) / np.sqrt(n)
    got = np.r_[np.asarray(grads["a"]), np.asarray(grads["b"])]  # each leaf has its own noise
    assert grads["a"].shape == (3,) and grads["b"].shape == ()
    assert np.all(np.abs(got - A) < tol), (got, A, tol)


# ------------------------------------------------------------------ a perturbed argmax

SIGMA = 0.5
N = 20_000


def numpy_argmax_frequencies(kind: str, x: np.ndarray, sigma: float, m: int = 1_000_000) -> np.ndarray:
    z = numpy_noise(kind, (m, x.size), seed=2)
    return np.bincount(np.argmax(x + sigma * z, axis=1), minlength=x.size) / m


@pytest.mark.parametrize("kind", list(NOISES))
def test_argmax_value(kind):
    f = perturbations.make_perturbed_fun(one_hot_argmax, num_samples=N, sigma=SIGMA, noise=NOISES[kind])
    got = np.asarray(f(KEY, jnp.asarray(X, jnp.float32)))
    reference = numpy_argmax_frequencies(kind, X, SIGMA)
    # each component is a frequency: sd sqrt(p (1 - p)), for both estimates
    p = reference
    assert np.all(np.abs(got - reference) < Z_SCORE * np.sqrt(p * (1 - p) * (1 / N + 1 / 1_000_000)) + 1e-12)
    if kind == "gumbel":  # the Gumbel-max trick: exact in expectation
        p = softmax(X / SIGMA)
        assert np.all(np.abs(got - p) < Z_SCORE * np.sqrt(p * (1 - p) / N))
        assert np.all(np.abs(reference - p) < Z_SCORE * np.sqrt(p * (1 - p) / 1_000_000))


def test_batched_argmax_value():
    batch = np.array([[0.1, 0.3, 0.2, -0.5], [1.0, 0.0, 0.0, 0.5]])
    f = jax.jit(perturbations.make_perturbed_fun(one_hot_argmax, num_samples=N, sigma=SIGMA))
    got = np.asarray(f(KEY, jnp.asarray(batch, jnp.float32)))
    p = softmax(batch / SIGMA)
    assert got.shape == batch.shape
    assert np.all(np.abs(got - p) < Z_SCORE * np.sqrt(p * (1 - p) / N))


def finite_difference_gradient(fn, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(fn(x + h * e) - fn(x - h * e)) / (2 * h) for e in np.eye(x.size)])


@pytest.mark.parametrize("use_baseline", [True, False])
def test_argmax_gradient_against_the_softmax(use_baseline):
    c = np.array([0.5, -1.0, 2.0, 0.3])
    f = perturbations.make_perturbed_fun(one_hot_argmax, num_samples=N, sigma=SIGMA, use_baseline=use_baseline)
    got = np.asarray(jax.grad(lambda t: f(KEY, t) @ c)(jnp.asarray(X, jnp.float32)))
    want = finite_difference_gradient(lambda t: softmax(t / SIGMA) @ c, X)
    # one sample's term: (c.onehot(argmax(x + sigma z)) - b) (1 - e^{-z}) / sigma, sd measured in NumPy
    z = numpy_noise("gumbel", (1_000_000, X.size), seed=3)
    value = c[np.argmax(X + SIGMA * z, axis=1)] - (c[np.argmax(X)] if use_baseline else 0.0)
    sd = (value[:, None] * numpy_score("gumbel", z) / SIGMA).std(axis=0)
    assert np.all(np.abs(got - want) < Z_SCORE * sd / np.sqrt(N)), (got, want, Z_SCORE * sd / np.sqrt(N))


def test_the_baseline_is_f_of_x():
    # a baseline leaves the expectation alone, so this is checked exactly, sample by sample, with
    # one key: the estimate with it is the one without minus f(x) times the estimate for f = 1
    c = np.array([0.5, -1.0, 2.0, 0.3])
    x = jnp.asarray(X, jnp.float32)

    def grad(fun, use_baseline):
        f = perturbations.make_perturbed_fun(fun, num_samples=2000, sigma=SIGMA, use_baseline=use_baseline)
        return np.asarray(jax.grad(lambda t: f(KEY, t))(x), np.float64)

    scalarised = lambda t: one_hot_argmax(t) @ c
    constant = lambda t: jnp.sum(t * 0) + 1.0
    per_unit = grad(constant, False)
    assert np.abs(per_unit).max() > 1e-3  # the score's sample mean is not zero
    np.testing.assert_array_equal(grad(constant, True), 0.0)
    want = grad(scalarised, False) - c[np.argmax(X)] * per_unit
    np.testing.assert_allclose(grad(scalarised, True), want, rtol=1e-4, atol=1e-5)


def test_forward_and_reverse_mode_agree():
    # the same samples, the same linear map: jacfwd and jacrev are transposes of each other
    f = perturbations.make_perturbed_fun(one_hot_argmax, num_samples=2000, sigma=SIGMA, noise=NOISES["normal"])
    x = jnp.asarray(X, jnp.float32)
    forward = jax.jacfwd(f, argnums=1)(KEY, x)
    reverse = jax.jacrev(f, argnums=1)(KEY, x)
    assert forward.shape == (4, 4)
    np.testing.assert_allclose(forward, reverse, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(forward)).max() > 0.1  # not trivially zero, as the true derivative of argmax is


def test_jit_and_the_key():
    f = perturbations.make_perturbed_fun(one_hot_argmax, num_samples=500, sigma=SIGMA)
    x = jnp.asarray(X, jnp.float32)
    np.testing.assert_allclose(jax.jit(f)(KEY, x), f(KEY, x), atol=1e-6)
    np.testing.assert_array_equal(f(KEY, x), f(KEY, x))
    assert not np.array_equal(f(KEY, x), f(jax.random.key(1), x))
    grad = jax.jit(jax.grad(lambda k, t: f(k, t)[0], argnums=1))
    np.testing.assert_allclose(grad(KEY, x), jax.grad(lambda t: f(KEY, t)[0])(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("num_samples", [0, -3, 2.5, True])
def test_num_samples_must_be_a_positive_integer(num_samples):
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        perturbations.make_perturbed_fun(one_hot_argmax, num_samples=num_samples)


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan")])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match="sigma must be in"):
        perturbations.make_perturbed_fun(one_hot_argmax, sigma=sigma)
