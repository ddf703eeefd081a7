"""split_real_and_imaginary: an inner transform on the real and imaginary parts as separate real
leaves. split(adam) on a complex leaf equals adam on the stacked parts (and the NumPy reference of
Adam on them) for 12 steps; real leaves pass through; parameters, hyperparameters, jit, errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.transforms.complex import (
    SplitRealAndImaginaryArrays,
    SplitRealAndImaginaryState,
    split_real_and_imaginary,
)

import references as R

STEPS = 12


def problem(dtype=np.complex64, seed=0):
    """Params {"z": complex (3, 2), "x": real (4,)} and STEPS gradients of varying magnitude."""
    rng = np.random.default_rng(seed)
    real = np.float32 if dtype == np.complex64 else np.float64

    def c(shape, scale=1.0):
        return (scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))).astype(dtype)

    params = {"z": c((3, 2)), "x": rng.standard_normal(4).astype(real)}
    grads = [
        {"z": c((3, 2), np.exp(rng.standard_normal())), "x": rng.standard_normal(4).astype(real)} for _ in range(STEPS)
    ]
    return params, grads


def stacked(tree):
    """The complex leaf "z" as one real leaf, its real and imaginary parts stacked on a new axis."""
    return dict(tree, z=jnp.stack([jnp.real(tree["z"]), jnp.imag(tree["z"])]))


def unstacked(u):
    return u[0] + 1j * u[1]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(
    "make,ref",
    [
        (lambda: gradtx.adam(0.1), lambda: R.ref_adam(0.1)),
        (lambda: gradtx.adamw(0.1, weight_decay=0.5), lambda: R.ref_adamw(0.1, weight_decay=0.5)),  # reads params
    ],
    ids=["adam", "adamw"],
)
def test_split_adam_equals_adam_on_the_stacked_parts(make, ref, mode):
    params, grads = problem()
    tx, plain, reference = split_real_and_imaginary(make()), make(), ref()
    jit = (lambda f: jax.jit(f)) if mode == "jit" else (lambda f: f)
    update, plain_update = jit(tx.update), jit(plain.update)
    p, q = jax.tree.map(jnp.asarray, params), stacked(jax.tree.map(jnp.asarray, params))
    state, plain_state = tx.init(p), plain.init(q)
    ref_params = R.leaves64(q)
    reference.init(ref_params)
    worst = 0.0
    for g in grads:
        g = jax.tree.map(jnp.asarray, g)
        u, state = update(g, state, p)
        v, plain_state = plain_update(stacked(g), plain_state, q)
        want = reference.update(R.leaves64(stacked(g)), ref_params)
        ref_params = [a + b for a, b in zip(ref_params, want)]
        p, q = gradtx.apply_updates(p, u), gradtx.apply_updates(q, v)
        assert u["z"].dtype == jnp.complex64 and u["x"].dtype == jnp.float32
        np.testing.assert_allclose(u["z"], unstacked(v["z"]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(u["x"], v["x"], rtol=1e-6, atol=1e-7)
        want_x, want_z = want  # flattening order: x, z
        np.testing.assert_allclose(u["z"], unstacked(want_z), rtol=2e-5, atol=2e-5 * np.max(np.abs(want_z)))
        np.testing.assert_allclose(u["x"], want_x, rtol=2e-5, atol=2e-5 * np.max(np.abs(want_x)))
        worst = max(worst, float(np.max(np.abs(u["z"] - unstacked(want_z))) / np.max(np.abs(want_z))))
    assert worst < 2e-5


def test_split_differs_from_adam_on_the_modulus():
    """A check that the wrapper does something: Adam on complex leaves normalises by |g|, the split
    one by |Re g| and |Im g| separately."""
    z = jnp.array([3.0 - 0.5j], jnp.complex64)
    split_u, _ = split_real_and_imaginary(gradtx.scale_by_adam()).update(
        z, split_real_and_imaginary(gradtx.scale_by_adam()).init(z)
    )
    plain_u, _ = gradtx.scale_by_adam().update(z, gradtx.scale_by_adam().init(z))
    np.testing.assert_allclose(split_u, [1 - 1j], rtol=1e-6)
    np.testing.assert_allclose(plain_u, z / jnp.abs(z), rtol=1e-6)


def test_state_holds_the_split_tree_and_hyperparams_are_settable():
    params, grads = problem()
    params = jax.tree.map(jnp.asarray, params)
    tx = split_real_and_imaginary(gradtx.adam(0.1))
    state = tx.init(params)
    assert isinstance(state, SplitRealAndImaginaryState)
    mu = state.inner_state[0].mu
    assert isinstance(mu["z"], SplitRealAndImaginaryArrays) and mu["z"].real.dtype == jnp.float32
    assert mu["x"].shape == (4,) and not isinstance(mu["x"], SplitRealAndImaginaryArrays)
    assert gradtx.hyperparams(state)["learning_rate"] == 0.1
    halved = gradtx.set_hyperparams(state, learning_rate=0.05)
    g = jax.tree.map(jnp.asarray, grads[0])
    u, _ = tx.update(g, state)
    w, _ = tx.update(g, halved)
    np.testing.assert_allclose(w["z"], 0.5 * u["z"], rtol=1e-6)


def test_real_trees_pass_through_and_complex128():
    params, grads = problem()
    real = {"x": jnp.asarray(params["x"])}
    tx, plain = split_real_and_imaginary(gradtx.adam(0.1)), gradtx.adam(0.1)
    u, _ = tx.update({"x": jnp.asarray(grads[0]["x"])}, tx.init(real))
    v, _ = plain.update({"x": jnp.asarray(grads[0]["x"])}, plain.init(real))
    np.testing.assert_array_equal(u["x"], v["x"])
    assert tx.update({}, tx.init({}))[0] == {}
    none_tree = {"a": jnp.ones(2, jnp.complex64), "b": None}
    u, _ = tx.update(none_tree, tx.init(none_tree), none_tree)
    assert u["b"] is None and u["a"].dtype == jnp.complex64
    with jax.enable_x64(True):
        z = jnp.array([1.0 + 2.0j])
        u, state = tx.update(z, tx.init(z))
        assert u.dtype == jnp.complex128 and state.inner_state[0].mu.real.dtype == jnp.float64


def test_errors():
    with pytest.raises(TypeError, match="needs a GradientTransformation"):
        split_real_and_imaginary(gradtx.adam)
    tx = split_real_and_imaginary(gradtx.adam(0.1))
    state = tx.init({"z": jnp.ones(2, jnp.complex64)})
    with pytest.raises(ValueError, match="'w/real' is in its place"):  # the inner check names the split path
        tx.update({"w": jnp.ones(2, jnp.complex64)}, state)
    u, _ = tx.update({"z": jnp.ones(2, jnp.complex64)}, state, value=1.0, grad=None, value_fn=None, obj_fn=None)
    assert u["z"].shape == (2,)


def test_converges_on_a_complex_quadratic():
    """|z - c|^2 over 5 complex entries: below 1e-3 within 150 steps of split(adam(0.1)) (reached ~1e-6)."""
    c = jnp.array([1 + 2j, -3j, 0.5, 2 - 1j, -1 + 1j], jnp.complex64)
    loss = lambda z: jnp.sum(jnp.abs(z - c) ** 2)  # noqa: E731
    tx = split_real_and_imaginary(gradtx.adam(0.1))
    z, step = jnp.zeros(5, jnp.complex64), None
    state, step = tx.init(z), jax.jit(tx.update)
    for _ in range(150):
        u, state = step(jnp.conj(jax.grad(loss)(z)), state, z)  # jax.grad gives the conjugate direction
        z = gradtx.apply_updates(z, u)
    assert float(loss(z)) < 1e-3, float(loss(z))
