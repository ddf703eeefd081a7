"""MARS (Yuan et al. 2024) step by step against the NumPy reference of ``references/mars.py``,
written from the paper's Algorithms 1 and 2 and its MARS-Lion, with the authors' conventions
(g_{-1} = 0, the clip per leaf, v of the clipped c, AdamW for the leaves that are not 2-D).

12 steps on the nested tree of ``references`` (a 3x4 matrix, a vector, a 4-D leaf, a scalar and a
5-vector), in float32 and float64; the gradients' norms run from 0.01 to 100, so the clip acts on
some leaves and not on others.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.mars import ScaleByMarsState, mars, scale_by_mars

import references as R
from helpers import run_problem
from references.mars import MARS, ref_mars, ref_scale_by_mars

DTYPES = ["float32", "float64"]
FACTORIES = {"scale_by_mars": (scale_by_mars, ref_scale_by_mars), "mars": (mars, ref_mars)}


def schedule(step):
    """A decaying learning rate; step is 0 on the first update."""
    return 0.05 / (1 + 0.1 * step)


def schedule_1d(step):
    return 0.02 * 0.9**step


# (factory, id, kwargs, (whether the clip acted, whether it left some c_t alone))
CASES = [
    ("scale_by_mars", "default", dict(), (True, False)),
    ("scale_by_mars", "all_leaves", dict(b1=0.9, b2=0.95, gamma=0.5, optimize_1d=True), (True, True)),
    ("scale_by_mars", "no_correction", dict(gamma=0.0, eps=1e-3, optimize_1d=True), (True, True)),
    ("scale_by_mars", "lion", dict(mars_type="mars-lion", b1=0.8, betas_1d=(0.5, 0.7)), (True, True)),
    ("scale_by_mars", "lion_all_leaves", dict(mars_type="mars-lion", b1=0.8, optimize_1d=True), (True, True)),
    ("mars", "default", dict(), (True, False)),
    (
        "mars",
        "schedules_and_decay",
        dict(learning_rate=schedule, weight_decay=0.1, lr_1d=schedule_1d, weight_decay_1d=0.05, gamma=0.1),
        (True, False),
    ),
    ("mars", "all_leaves_decay", dict(learning_rate=0.01, weight_decay=0.2, optimize_1d=True), (True, True)),
    ("mars", "lion", dict(learning_rate=0.01, mars_type="mars-lion", weight_decay=0.1), (True, False)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,clips", [pytest.param(n, kw, c, id=f"{n}-{label}") for n, label, kw, c in CASES])
def test_matches_reference(name, kwargs, clips, dtype):
    """Under jit (test_jit_equals_eager holds eager to it; two rows run eagerly below)."""
    make, make_ref = FACTORIES[name]
    ref = R.run_against_reference(make(**kwargs), make_ref(**kwargs), dtype, "jit")
    found = R.find(ref, MARS) or ref.direction
    assert (found.clipped > 0, found.kept > 0) == clips, (found.clipped, found.kept)


def test_matches_reference_eagerly():
    kwargs = dict(weight_decay=0.1, gamma=0.2)
    R.run_against_reference(mars(**kwargs), ref_mars(**kwargs), "float32", "eager", steps=10)


def test_first_step_starts_from_a_zero_previous_gradient_and_clips_per_leaf():
    b1, gamma = 0.5, 0.5
    tx = scale_by_mars(b1=b1, b2=0.5, gamma=gamma, eps=0.0, optimize_1d=True)
    params = {"small": jnp.zeros(2), "big": jnp.zeros(2)}
    state = tx.init(params)
    assert isinstance(state, ScaleByMarsState) and state._fields == ("count", "mu", "nu", "last_grad", "hyperparams")
    g1 = {"small": jnp.array([0.1, -0.2]), "big": jnp.array([3.0, 4.0])}
    u, state = tx.update(g1, state)
    factor = 1 + gamma * b1 / (1 - b1)  # c_1 = g_1 + 0.5 (g_1 - 0): 1.5 g_1
    np.testing.assert_allclose(state.mu["small"], (1 - b1) * factor * np.array([0.1, -0.2]), rtol=1e-6)
    np.testing.assert_allclose(state.mu["big"], (1 - b1) * np.array([0.6, 0.8]), rtol=1e-6)  # norm 7.5 -> 1
    np.testing.assert_allclose(state.nu["big"], (1 - 0.5) * np.array([0.36, 0.64]), rtol=1e-6)  # v of the clipped c
    np.testing.assert_array_equal(state.last_grad["big"], g1["big"])
    np.testing.assert_allclose(u["small"], [1.0, -1.0], rtol=1e-6)  # Adam's first step, eps = 0
    # the second step corrects by g_2 - g_1
    g2 = {"small": jnp.array([0.3, 0.0]), "big": jnp.array([3.0, 4.0])}
    _, state2 = tx.update(g2, state)
    c = np.array([0.3, 0.0]) + 0.5 * (np.array([0.3, 0.0]) - np.array([0.1, -0.2]))
    np.testing.assert_allclose(state2.mu["small"], b1 * state.mu["small"] + (1 - b1) * c, rtol=1e-6)


def test_leaves_that_are_not_matrices_take_adamw_by_default():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "k": jnp.ones((1, 1, 2)), "s": jnp.asarray(1.0)}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 10.0), params)
    u, state = scale_by_mars(betas_1d=(0.5, 0.6)).update(grads, scale_by_mars(betas_1d=(0.5, 0.6)).init(params))
    np.testing.assert_allclose(state.mu["b"], [5.0, 5.0], rtol=1e-6)  # (1 - 0.5) g, raw and unclipped
    np.testing.assert_allclose(state.mu["k"], np.full((1, 1, 2), 5.0), rtol=1e-6)
    assert float(jnp.linalg.norm(state.mu["w"])) <= (1 - 0.95) * (1 + 1e-6)  # clipped c, b1 = 0.95
    # the optimizer's step on those leaves is lr_1d (u + weight_decay_1d p)
    tx = mars(learning_rate=0.5, lr_1d=0.01, weight_decay_1d=0.25, weight_decay=0.0)
    out, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(out["b"], -0.01 * (np.asarray(u["b"]) + 0.25), rtol=1e-5)
    np.testing.assert_allclose(out["w"], -0.5 * np.asarray(u["w"]), rtol=1e-5)


def test_lion_keeps_no_second_moment_and_steps_by_the_sign():
    tx = scale_by_mars(mars_type="mars-lion", optimize_1d=True)
    state = tx.init({"w": jnp.zeros(3)})
    assert state.nu is None
    assert set(gradtx.hyperparams(state)) == {"b1", "gamma"}
    u, state = tx.update({"w": jnp.array([0.5, -2.0, 0.0])}, state)
    np.testing.assert_array_equal(u["w"], [1.0, -1.0, 0.0])
    assert state.nu is None


def loss(params):
    return jnp.sum(jnp.sin(params["w"]) ** 2) + jnp.sum((params["b"] - 1.0) ** 2 * jnp.arange(1.0, 4.0))


@pytest.mark.parametrize("optimize_1d", [False, True])
def test_exact_form_takes_the_gradient_at_the_previous_parameters(optimize_1d):
    """The exact form against the reference, on a loss whose gradient at the previous parameters
    differs from the previous step's gradient (a batch that changes with the step)."""
    params = {"w": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]]), "b": jnp.array([0.3, -0.2, 2.0])}
    batch_loss = lambda p, k: loss(p) * (1.0 + 0.3 * jnp.sin(k))  # noqa: E731
    grad = jax.jit(jax.grad(batch_loss))
    kwargs = dict(learning_rate=0.1, lr_1d=0.05, gamma=0.5, weight_decay=0.1, optimize_1d=optimize_1d)
    tx = mars(**kwargs, is_approx=False)
    state = tx.init(params)
    assert state[0].last_grad is None
    ref = ref_mars(**kwargs, is_approx=False)
    leaves = R.leaves64
    ref_params = leaves(params)
    ref.init(ref_params)
    previous = params
    update = jax.jit(tx.update)
    for k in range(10):
        g, g_prev = grad(params, float(k)), grad(previous, float(k))  # at the first step x_0 = x_1
        updates, state = update(g, state, params, previous_grad=g_prev)
        want = ref.update(leaves(g), ref_params, leaves(g_prev))
        for got, w in zip(leaves(updates), want):
            np.testing.assert_allclose(got, w, rtol=2e-5, atol=1e-7)
        previous, params = params, gradtx.apply_updates(params, updates)
        ref_params = [p + u for p, u in zip(ref_params, want)]
    assert ref.direction.clipped > 0


def test_exact_form_errors():
    params = {"w": jnp.ones((2, 2))}
    tx = scale_by_mars(is_approx=False)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"^scale_by_mars\(is_approx=False\) needs the gradient at the previous"):
        tx.update(params, state, params)
    with pytest.raises(
        ValueError, match="^previous_grad does not match the tree this state was built for: 'w' has shape"
    ):
        tx.update(params, state, params, previous_grad={"w": jnp.ones(3)})
    approx = scale_by_mars()
    with pytest.raises(ValueError, match="^scale_by_mars reads previous_grad only in the exact form"):
        approx.update(params, approx.init(params), params, previous_grad=params)


def test_hyperparams_are_readable_and_settable():
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.3]]), "b": jnp.array([0.5, -1.0])}
    grads = [
        {"w": jnp.array([[0.3, -1.0], [0.2, 0.1]]), "b": jnp.array([2.0, 0.1])},
        {"w": jnp.array([[-0.5, 0.2], [0.1, -0.3]]), "b": jnp.array([1.0, -0.4])},
        {"w": jnp.array([[0.1, 0.4], [-0.2, 0.6]]), "b": jnp.array([-3.0, 0.2])},
    ]
    tx = mars(0.1)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.95,
        "gamma": 0.025,
        "b2": 0.99,
        "eps": 1e-8,
        "b1_1d": 0.9,
        "b2_1d": 0.95,
        "weight_decay": 0.0,
        "weight_decay_1d": 0.1,
        "learning_rate": 0.1,
        "lr_1d": 0.003,
    }
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, gamma=0.5, b1_1d=0.5, learning_rate=0.3, weight_decay_1d=0.0, lr_1d=0.2)
    got, _ = update(grads[2], state, params)

    leaves = R.leaves64
    ref = ref_mars(0.1)
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    ref.direction.gamma, ref.direction.betas_1d = 0.5, (0.5, 0.95)
    ref.lr, ref.wd_1d, ref.lr_1d = 0.3, 0.0, 0.2
    for g, w in zip(leaves(got), ref.update(leaves(grads[2]), leaves(params))):
        np.testing.assert_allclose(g, w, rtol=1e-5)


def test_construction_errors():
    with pytest.raises(ValueError, match="^mars_type must be one of 'mars-adamw', 'mars-lion', got 'mars-shampoo'"):
        mars(mars_type="mars-shampoo")
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\), got 1.0"):
        mars(b1=1.0)
    with pytest.raises(ValueError, match="^b2 must be in"):
        scale_by_mars(b2=-0.5)
    with pytest.raises(ValueError, match=r"^gamma must be in \[0.0, inf\)"):
        scale_by_mars(gamma=-0.1)
    with pytest.raises(ValueError, match="^eps must be in"):
        mars(eps=-1.0)
    with pytest.raises(TypeError, match=r"^betas_1d must be a pair \(b1, b2\), got \(0.9,\)"):
        mars(betas_1d=(0.9,))
    with pytest.raises(ValueError, match=r"^betas_1d\[1\] must be in \[0.0, 1.0\)"):
        mars(betas_1d=(0.9, 1.0))
    with pytest.raises(ValueError, match="^lr_1d must be in"):
        mars(lr_1d=-1.0)
    with pytest.raises(ValueError, match="^weight_decay_1d must be in"):
        mars(weight_decay_1d=-0.1)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        mars(weight_decay=-0.1)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        mars(-1.0)
    with pytest.raises(TypeError, match="^gamma must be a number or an array"):
        scale_by_mars(gamma=lambda t: 0.1)


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    tx = mars()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones((3, 2)), "b": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match="^add_decayed_weights needs the parameters"):
        tx.update(params, state)
    tx.update(params, state, params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


@pytest.mark.parametrize("kwargs", [dict(), dict(mars_type="mars-lion", optimize_1d=True)], ids=["default", "lion"])
def test_jit_equals_eager(kwargs):
    tx = mars(0.05, **kwargs)
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(R.grad_trees(np.float32, 6)))


def test_bfloat16_empty_tree_and_dtypes():
    R.check_bfloat16(mars(0.01), "jit", steps=6)
    R.check_bfloat16(mars(0.01, mars_type="mars-lion", optimize_1d=True), "jit", steps=6)
    R.check_empty_tree(mars(), "jit")
    state = scale_by_mars(mu_dtype=jnp.bfloat16).init({"w": jnp.ones((2, 3), jnp.float16)})
    assert state.mu["w"].dtype == jnp.bfloat16 and state.nu["w"].dtype == jnp.float32
    assert state.last_grad["w"].dtype == jnp.float16


def test_complex_leaves_are_clipped_by_the_norm_of_their_moduli():
    tx = scale_by_mars(b1=0.5, gamma=0.0, mars_type="mars-lion", optimize_1d=True)
    state = tx.init(jnp.zeros(2, jnp.complex64))
    u, state = tx.update(jnp.array([3 + 4j, 0.0], jnp.complex64), state)  # |c| = 5: c / 5
    np.testing.assert_allclose(state.mu, [0.5 * (0.6 + 0.8j), 0.0], rtol=1e-6)
    np.testing.assert_allclose(u, [0.6 + 0.8j, 0.0], rtol=1e-6)  # the sign of a complex m is m / |m|
    assert u.dtype == jnp.complex64


def test_huge_tiny_and_zero_gradients_stay_finite():
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(2), "s": jnp.asarray(0.5)}
    for kwargs in (dict(), dict(optimize_1d=True), dict(mars_type="mars-lion")):
        tx = mars(0.1, **kwargs)
        update = jax.jit(tx.update)
        for scale in (0.0, 1e-30, 1e30):
            state = tx.init(params)
            for sign in (1.0, -0.5, 1.0):
                grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale), params)  # noqa: B023
                updates, state = update(grads, state, params)
                assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), (kwargs, scale)


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100, one 10-vector leaf), MARS on
    # it with optimize_1d, 300 steps: from 124 to exactly 0.0 on CPU in float32; MARS-Lion, whose
    # fixed-size steps only shrink with its decaying learning rate, to 2.1e-7
    initial, final, _ = run_problem(mars(0.05, optimize_1d=True), "quadratic", 300)
    assert np.isfinite(final) and final <= 1e-6 * initial, (initial, final)
    lion = mars(lambda t: 0.05 * 0.98**t, mars_type="mars-lion", optimize_1d=True)
    initial, final, _ = run_problem(lion, "quadratic", 300)
    assert np.isfinite(final) and final <= 1e-4 * initial, (initial, final)
