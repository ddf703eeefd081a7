"""Line searches: the accepted steps satisfy their conditions, checked from the definitions;
backtracking step by step against a NumPy Armijo loop; reuse of the last evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

from references.linesearch import _np_rosenbrock, _np_rosenbrock_grad, armijo_reference

# ------------------------------------------------------------------ test functions


def _quadratic(x):
    return 0.5 * jnp.sum(jnp.logspace(0.0, 2.0, x["x"].size) * x["x"] ** 2)


def _rosenbrock(p):
    return (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2


def _wavy(p):  # nonconvex: several local minima along most lines
    return jnp.sum(jnp.sin(3 * p["w"]) + 0.5 * p["w"] ** 2) + p["s"] ** 4


_X = jnp.asarray(np.random.default_rng(0).standard_normal((20, 3)), jnp.float32)
_Y = jnp.sign(_X @ jnp.array([1.0, -2.0, 0.5]) + 0.1)


def _logistic(p):
    return jnp.mean(jnp.logaddexp(0.0, -_Y * (_X @ p["w"] + p["b"]))) + 0.01 * jnp.sum(p["w"] ** 2)


def _barrier(p):  # NaN beyond x = 2: a long step lands outside the domain
    return jnp.sum((p["x"] - 1.9) ** 2 - 0.01 * jnp.log(2.0 - p["x"]))


CASES = {
    "quadratic": (_quadratic, {"x": jnp.ones(10)}, 1.0),
    "rosenbrock": (_rosenbrock, {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)}, 1.0),
    "rosenbrock_unit": (_rosenbrock, {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)}, "unit"),
    "wavy": (_wavy, {"w": jnp.array([0.3, -1.2, 2.0]), "s": jnp.asarray(0.7)}, 1.0),
    "logistic_short": (_logistic, {"w": jnp.zeros(3), "b": jnp.asarray(0.0)}, 1e-3),
    "barrier": (_barrier, {"x": jnp.zeros(2)}, 1.0),
}


def _direction(f, params, scale):
    value, grad = jax.value_and_grad(f)(params)
    if scale == "unit":
        scale = 1.0 / float(gradtx.tree.norm(grad))
    return value, grad, jax.tree.map(lambda g: -scale * g, grad)


def _phi(f, params, direction, eta):
    """phi(eta) and phi'(eta) from the definitions, at the point apply_updates gives."""
    point = gradtx.apply_updates(params, jax.tree.map(lambda d: eta * d, direction))
    value, grad = jax.value_and_grad(f)(point)
    return float(value), float(gradtx.tree.vdot(grad, direction))


# ------------------------------------------------------------------ strong Wolfe


@pytest.mark.parametrize("curv_rtol", [0.9, 0.1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_zoom_accepts_a_step_satisfying_the_strong_wolfe_conditions(case, curv_rtol):
    f, params, scale = CASES[case]
    c1 = 1e-4
    tx = gradtx.scale_by_zoom_linesearch(30, slope_rtol=c1, curv_rtol=curv_rtol, approx_dec_rtol=None)
    value, grad, direction = _direction(f, params, scale)
    updates, state = jax.jit(lambda d, s: tx.update(d, s, params, value=value, grad=grad, value_fn=f))(
        direction, tx.init(params)
    )
    eta = float(state.learning_rate)
    np.testing.assert_allclose(
        gradtx.tree.vdot(updates, direction), eta * gradtx.tree.vdot(direction, direction), rtol=1e-5
    )
    phi0, slope0 = _phi(f, params, direction, 0.0)
    phi, slope = _phi(f, params, direction, eta)
    assert slope0 < 0 and eta > 0
    slack = 1e-6 * abs(phi0)
    assert phi <= phi0 + c1 * eta * slope0 + slack, "sufficient decrease"
    assert abs(slope) <= curv_rtol * abs(slope0) * (1 + 1e-5), "curvature"
    assert float(state.info.decrease_error) == 0.0 and float(state.info.curvature_error) == 0.0
    np.testing.assert_allclose(float(state.value), phi, rtol=1e-6)
    np.testing.assert_allclose(gradtx.tree.vdot(state.grad, direction), slope, rtol=1e-4, atol=1e-6 * abs(slope0))


def test_zoom_expands_up_to_max_learning_rate():
    f, params, _ = CASES["logistic_short"]
    value, grad, direction = _direction(f, params, 1e-3)
    for cap, expected in [(None, None), (4.0, 4.0)]:
        tx = gradtx.scale_by_zoom_linesearch(30, max_learning_rate=cap)
        _, state = tx.update(direction, tx.init(params), params, value=value, grad=grad, value_fn=f)
        eta = float(state.learning_rate)
        if expected is None:
            assert eta > 4.0
        else:
            assert eta == expected
            assert gradtx.hyperparams(state)["max_learning_rate"] == 4.0


def test_initial_guess_strategies():
    f = lambda p: 2.0 * jnp.sum(p**2)  # noqa: E731 - along -g the exact step is 1/4
    params = jnp.array([1.0, -1.0])
    for strategy, evaluations in [("keep", 1), ("one", 2)]:  # "one": 1 fails, the cubic then finds 1/4
        tx = gradtx.scale_by_zoom_linesearch(20, initial_guess_strategy=strategy, curv_rtol=0.1)
        state = tx.init(params)
        counts = []
        for _ in range(2):
            value, grad = jax.value_and_grad(f)(params)
            _, state = tx.update(-grad, state, params, value=value, grad=grad, value_fn=f)
            counts.append(int(state.info.num_linesearch_steps))
        assert counts == [2, evaluations]
        np.testing.assert_allclose(state.learning_rate, 0.25, rtol=1e-5)
    # a learning rate set by hand is where a 'keep' search starts
    tx = gradtx.scale_by_zoom_linesearch(20, curv_rtol=0.1)
    state = gradtx.set_hyperparams(tx.init(params), learning_rate=0.25)
    value, grad = jax.value_and_grad(f)(params)
    _, state = tx.update(-grad, state, params, value=value, grad=grad, value_fn=f)
    assert int(state.info.num_linesearch_steps) == 1


def test_zoom_without_any_decrease_takes_no_step():
    f = lambda w: jnp.sum(w**2)  # noqa: E731
    params = jnp.array([1.0, 2.0])
    value, grad = jax.value_and_grad(f)(params)
    tx = gradtx.scale_by_zoom_linesearch(10)
    updates, state = tx.update(grad, tx.init(params), params, value=value, grad=grad, value_fn=f)  # ascent
    np.testing.assert_array_equal(updates, 0.0)
    assert float(state.value) == float(value) and float(state.learning_rate) == 0.0


# ------------------------------------------------------------------ backtracking


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(slope_rtol=1e-4, decrease_factor=0.5, increase_factor=1.5, max_learning_rate=1.0, atol=0.0, rtol=0.0),
        dict(slope_rtol=0.3, decrease_factor=0.8, increase_factor=2.0, max_learning_rate=0.5, atol=1e-3, rtol=1e-2),
    ],
    ids=["default_like", "tolerant"],
)
def test_backtracking_matches_a_numpy_armijo_loop_step_by_step(mode, kwargs):
    max_steps = 40
    tx = gradtx.scale_by_backtracking_linesearch(max_steps, **kwargs)
    f = lambda p: _rosenbrock({"x": p[0], "y": p[1]})  # noqa: E731
    update = jax.jit(tx.update, static_argnames="value_fn") if mode == "jit" else tx.update
    x = jnp.array([-1.5, 2.0])
    state = tx.init(x)
    eta_prev = kwargs["max_learning_rate"]
    for _ in range(12):
        value, grad = jax.value_and_grad(f)(x)
        updates, state = update(-grad, state, x, value=value, grad=grad, value_fn=f)
        x64 = np.asarray(x, np.float64)
        g64 = _np_rosenbrock_grad(x64)
        eta, ref_value, steps = armijo_reference(
            _np_rosenbrock,
            x64,
            g64,
            -g64,
            eta_prev,
            max_steps=max_steps,
            c=kwargs["slope_rtol"],
            dec=kwargs["decrease_factor"],
            inc=kwargs["increase_factor"],
            max_lr=kwargs["max_learning_rate"],
            atol=kwargs["atol"],
            rtol=kwargs["rtol"],
        )
        assert int(state.info.num_linesearch_steps) == steps
        np.testing.assert_allclose(float(state.learning_rate), eta, rtol=1e-5)  # eta_0 * 0.8^j in float32
        np.testing.assert_allclose(float(state.value), ref_value, rtol=1e-4)
        np.testing.assert_allclose(updates, -eta * g64, rtol=1e-4)
        assert float(state.info.decrease_error) == 0.0
        x, eta_prev = gradtx.apply_updates(x, updates), eta
    assert float(f(x)) < 12.5


@pytest.mark.parametrize("case", sorted(CASES))
def test_backtracking_accepts_a_step_satisfying_armijo(case):
    f, params, scale = CASES[case]
    c = 0.2
    tx = gradtx.scale_by_backtracking_linesearch(60, slope_rtol=c, decrease_factor=0.7)
    value, grad, direction = _direction(f, params, scale)
    _, state = tx.update(direction, tx.init(params), params, value=value, grad=grad, value_fn=f)
    eta = float(state.learning_rate)
    phi0, slope0 = _phi(f, params, direction, 0.0)
    phi, _ = _phi(f, params, direction, eta)
    assert 0 < eta <= 1.0 and phi <= phi0 + c * eta * slope0 + 1e-6 * abs(phi0)
    if eta < 1.0:  # the step before (eta / 0.7) failed the condition
        before, _ = _phi(f, params, direction, eta / 0.7)
        assert not before <= phi0 + c * (eta / 0.7) * slope0 - 1e-6 * abs(phi0)


def test_backtracking_that_never_succeeds_takes_its_last_trial():
    f = lambda w: jnp.sum(w**2)  # noqa: E731
    params = jnp.array([1.0])
    value, grad = jax.value_and_grad(f)(params)
    tx = gradtx.scale_by_backtracking_linesearch(3, decrease_factor=0.5)
    updates, state = tx.update(grad, tx.init(params), params, value=value, grad=grad, value_fn=f)  # ascent
    assert int(state.info.num_linesearch_steps) == 3 and float(state.learning_rate) == 0.25
    np.testing.assert_allclose(updates, [0.5])
    assert float(state.info.decrease_error) > 0


# ------------------------------------------------------------ extra arguments, reuse


def test_extra_arguments_reach_value_fn_by_name():
    def loss(params, batch, *, weight=1.0):
        return weight * jnp.sum((params - batch) ** 2)

    params, batch = jnp.zeros(2), jnp.array([1.0, -1.0])
    value, grad = jax.value_and_grad(loss)(params, batch)
    for tx in [gradtx.scale_by_zoom_linesearch(10), gradtx.scale_by_backtracking_linesearch(10)]:
        updates, state = tx.update(
            -grad, tx.init(params), params, value=value, grad=grad, value_fn=loss, batch=batch, key=jax.random.key(0)
        )  # `key` is not asked for: dropped
        new = gradtx.apply_updates(params, updates)
        assert float(state.value) == float(loss(new, batch)) < float(value)


def test_missing_arguments_are_named():
    params = {"a": jnp.ones(2)}
    for tx, who in [
        (gradtx.scale_by_zoom_linesearch(5), "scale_by_zoom_linesearch"),
        (gradtx.scale_by_backtracking_linesearch(5), "scale_by_backtracking_linesearch"),
    ]:
        state = tx.init(params)
        with pytest.raises(ValueError, match=f"{who} needs the extra argument `grad`"):
            tx.update(params, state, params, value=1.0, value_fn=jnp.sum)
        with pytest.raises(ValueError, match="needs the extra argument `params`"):
            tx.update(params, state, value=1.0, grad=params, value_fn=jnp.sum)
        with pytest.raises(ValueError, match="'a' is missing from the gradients"):
            tx.update(params, state, params, value=1.0, grad={"b": params["a"]}, value_fn=jnp.sum)


@pytest.mark.parametrize("search", ["zoom", "backtracking"])
def test_value_and_grad_from_state_reuses_the_accepted_point(search):
    f = lambda p: jnp.sum(jnp.cosh(p["w"])) + p["s"] ** 2  # noqa: E731
    tx = gradtx.chain(
        gradtx.scale(-1.0),
        (
            gradtx.scale_by_zoom_linesearch(10)
            if search == "zoom"
            else gradtx.scale_by_backtracking_linesearch(20, store_grad=True)
        ),
    )
    params = {"w": jnp.array([1.0, -0.5]), "s": jnp.asarray(2.0)}
    state = tx.init(params)
    value_and_grad = gradtx.value_and_grad_from_state(f)
    for _ in range(4):
        value, grad = value_and_grad(params, state=state)
        want_value, want_grad = jax.value_and_grad(f)(params)
        np.testing.assert_allclose(value, want_value, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grad, want_grad)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        params = gradtx.apply_updates(params, updates)
    assert float(f(params)) < float(f({"w": jnp.array([1.0, -0.5]), "s": jnp.asarray(2.0)}))


def test_value_and_grad_from_state_refuses_states_it_cannot_use():
    f, params = jnp.sum, jnp.ones(2)
    with pytest.raises(ValueError, match="exactly one line search, found 0"):
        gradtx.value_and_grad_from_state(f)(params, state=gradtx.adam().init(params))
    no_grad = gradtx.scale_by_backtracking_linesearch(5).init(params)
    assert no_grad.grad is None
    with pytest.raises(ValueError, match="store_grad=True"):
        gradtx.value_and_grad_from_state(f)(params, state=no_grad)


# ------------------------------------------------------------------ hyperparameters


def test_hyperparameters_are_readable_by_name():
    state = gradtx.scale_by_zoom_linesearch(15, approx_dec_rtol=None).init(jnp.ones(1))
    assert gradtx.hyperparams(state) == {
        "learning_rate": 1.0,
        "tol": 0.0,
        "increase_factor": 2.0,
        "slope_rtol": 1e-4,
        "curv_rtol": 0.9,
        "stepsize_precision": 1e-5,
    }
    state = gradtx.scale_by_backtracking_linesearch(15).init(jnp.ones(1))
    assert gradtx.hyperparams(state) == {
        "learning_rate": 1.0,
        "slope_rtol": 1e-4,
        "decrease_factor": 0.8,
        "increase_factor": 1.5,
        "max_learning_rate": 1.0,
        "atol": 0.0,
        "rtol": 0.0,
    }


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: gradtx.scale_by_zoom_linesearch(0), "max_linesearch_steps must be in"),
        (lambda: gradtx.scale_by_zoom_linesearch(5, initial_guess_strategy="max"), "initial_guess_strategy"),
        (lambda: gradtx.scale_by_zoom_linesearch(5, slope_rtol=0.5, curv_rtol=0.4), "smaller than curv_rtol"),
        (lambda: gradtx.scale_by_zoom_linesearch(5, curv_rtol=1.0), "curv_rtol must be in"),
        (lambda: gradtx.scale_by_zoom_linesearch(5, max_learning_rate=0.0), "max_learning_rate must be in"),
        (lambda: gradtx.scale_by_backtracking_linesearch(0), "max_backtracking_steps must be in"),
        (lambda: gradtx.scale_by_backtracking_linesearch(5, decrease_factor=1.0), "decrease_factor must be in"),
        (lambda: gradtx.scale_by_backtracking_linesearch(5, atol=-1.0), "atol must be in"),
    ],
)
def test_invalid_arguments_are_rejected_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_verbose_reports_a_failed_search(capsys):
    f = lambda w: jnp.sum(w**2)  # noqa: E731
    params = jnp.array([1.0])
    value, grad = jax.value_and_grad(f)(params)
    for tx in [
        gradtx.scale_by_zoom_linesearch(3, verbose=True),
        gradtx.scale_by_backtracking_linesearch(3, verbose=True),
    ]:
        tx.update(grad, tx.init(params), params, value=value, grad=grad, value_fn=f)  # ascent: fails
        jax.effects_barrier()
    out = capsys.readouterr().out
    assert "zoom linesearch: no strong Wolfe step after 3 evaluations" in out
    assert "backtracking linesearch: no sufficient decrease after 3 evaluations" in out


def test_an_unhashable_value_fn_still_works():
    class Loss:
        __hash__ = None

        def __eq__(self, other):
            return self is other

        def __call__(self, w):
            return jnp.sum((w - 2.0) ** 2)

    f, params = Loss(), jnp.zeros(2)
    value, grad = jax.value_and_grad(f)(params)
    tx = gradtx.scale_by_zoom_linesearch(10)
    updates, _ = tx.update(-grad, tx.init(params), params, value=value, grad=grad, value_fn=f)
    assert float(f(params + updates)) < float(value)
