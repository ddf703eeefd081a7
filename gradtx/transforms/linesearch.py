r"""Line searches: the step length along a direction, chosen from the loss itself.

A line search receives a direction :math:`d` (the incoming updates, e.g.
:math:`-H g` from :func:`gradtx.scale_by_lbfgs`) and returns :math:`\eta\, d`,
with :math:`\eta` chosen on :math:`\phi(\eta) = f(x + \eta d)`. It needs three
extra arguments of ``update``: ``value`` (:math:`f(x)`), ``grad``
(:math:`\nabla f(x)`) and ``value_fn`` (:math:`f`); the other extra arguments
are passed on to ``value_fn`` when its signature names them (so data can be
given as ``update(..., value_fn=loss, batch=batch)`` rather than in a fresh
closure each step). Every search runs in one ``lax.while_loop``: it traces
inline under ``jax.jit`` and is compiled once per ``value_fn`` when called eagerly.

The state keeps the value (and gradient) at the accepted point,
:math:`x + \eta d`, which is the next iterate: :func:`value_and_grad_from_state`
reuses them, so the next step evaluates :math:`f` only inside the search.
The accepted :math:`\eta` is the state's ``learning_rate``, kept with the
hyperparameters, where ``gradtx.hyperparams`` reads it.

Reference: J. Nocedal & S. J. Wright, *Numerical Optimization*, 2nd ed., 2006
(:doi:`10.1007/978-0-387-40065-5`), section 3.1 (Armijo backtracking) and Algorithms
3.5 and 3.6 (strong Wolfe zoom).

For complex parameters the slope is :math:`\mathrm{Re}\langle \nabla f, d \rangle` and
the gradient :math:`\partial f/\partial\,\mathrm{Re} + i\,\partial f/\partial\,\mathrm{Im}`,
the conjugate of what ``jax.grad`` returns; the searches conjugate the gradients
they compute themselves, and expect ``grad`` so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import real_vdot, scaled
from gradtx.core.numerics import scalar_loss
from gradtx.core.validation import check_nonnegative, check_positive, check_range

# ------------------------------------------------------------------- shared pieces


def _fn_kwargs(value_fn: Callable, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra arguments that ``value_fn``'s signature asks for, by name."""
    try:
        parameters = list(inspect.signature(value_fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return dict(extra_args)
    names = {p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in extra_args.items() if k in names}


def _checked(who, updates, params, value, grad, value_fn, extra_args):
    """Fail early on a missing argument or a mismatched tree; return ``phi(0)`` and ``value_fn``'s kwargs."""
    for name, given in (("params", params), ("value", value), ("grad", grad), ("value_fn", value_fn)):
        if given is None:
            raise ValueError(
                f"{who} needs the extra argument `{name}`: call "
                "update(updates, state, params, value=loss, grad=grads, value_fn=loss_fn)"
            )
    _tree.check_same_structure(params, updates, "the parameters", "the updates")
    _tree.check_same_structure(params, grad, "the parameters", "the gradients (`grad`)")
    value = scalar_loss(value, who)
    dtype = jnp.promote_types(jnp.result_type(value), float_dtype())
    return jnp.asarray(value).astype(dtype), _fn_kwargs(value_fn, extra_args)


def _trial(params: Params, direction: Updates, eta: jax.Array) -> Params:
    """:math:`x + \\eta d`, computed exactly as ``apply_updates`` will compute it."""
    return jax.tree.map(lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, scaled(direction, eta))


def _like_params(tree: Updates, params: Params) -> Updates:
    return jax.tree.map(lambda g, p: jnp.asarray(g).astype(jnp.asarray(p).dtype), tree, params)


def _value_and_grad(f: Callable, **kwargs: Any) -> Callable:
    r"""``jax.value_and_grad(f)``, with the gradient of a complex leaf conjugated: the
    steepest-ascent direction :math:`\partial f/\partial\,\mathrm{Re} + i\, \partial f/\partial\,\mathrm{Im}`
    that gradtx takes as the gradient (JAX returns its conjugate)."""
    value_and_grad = jax.value_and_grad(f, **kwargs)

    def fn(*args, **fn_kwargs):
        value, grad = value_and_grad(*args, **fn_kwargs)
        return value, jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grad)

    return fn


_JITTED: dict[Callable, Callable] = {}


def _call(core: Callable, static: tuple, *dynamic: Any) -> Any:
    """``core(*static, *dynamic)``; called eagerly, compiled once per ``static`` (which holds ``value_fn``).

    Under an outer transformation it is simply traced inline, so no cache keeps
    closures over tracers alive. Eagerly, passing the same ``value_fn`` at every
    step (data as extra arguments, not in a fresh closure) compiles only once.
    """
    tracing = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(dynamic))
    try:
        hash(static)
    except TypeError:
        tracing = True
    if tracing:
        return core(*static, *dynamic)
    if core not in _JITTED:
        _JITTED[core] = jax.jit(core, static_argnums=tuple(range(len(static))))
    return _JITTED[core](*static, *dynamic)


def _where(c: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)


# ------------------------------------------------------------------ backtracking


class BacktrackingLinesearchInfo(NamedTuple):
    """What the last search did: function evaluations, and how far the decrease condition missed (0 if met)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """The value (and, with ``store_grad``, the gradient) at the accepted point; the step in ``hyperparams``."""

    value: jax.Array
    grad: Updates | None
    info: BacktrackingLinesearchInfo
    hyperparams: dict[str, Any]

    @property
    def learning_rate(self) -> jax.Array:
        """The last accepted step (Optax's field), kept in ``hyperparams``."""
        return self.hyperparams["learning_rate"]


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    r"""Backtracking until the Armijo sufficient-decrease condition holds (Nocedal & Wright, 2006, :doi:`10.1007/978-0-387-40065-5`, Alg. 3.1).

    Starting from :math:`\eta_0 = \min(\gamma_{inc}\, \eta_{prev},\ \eta_{max})` it tries
    :math:`\eta_j = \eta_0 \gamma_{dec}^j` and takes the first that satisfies

    .. math::
        f(x + \eta d) \le f(x) + c\, \eta \langle \nabla f(x), d \rangle + \epsilon_{abs} + \epsilon_{rel} |f(x)|

    with :math:`\eta_{prev}` the previous accepted step. Needs ``value``, ``grad``
    and ``value_fn``. The numeric arguments are numbers or 0-d arrays, not schedules.

    Args:
        max_backtracking_steps: the most evaluations of :math:`f` in one search, an int of
            at least 1; if no trial satisfies the condition, the last one is taken.
        slope_rtol: :math:`c`, the fraction of the linear decrease asked for; in [0, 1).
        decrease_factor: :math:`\gamma_{dec}`, the step's factor from one trial to the next;
            in (0, 1).
        increase_factor: :math:`\gamma_{inc}`, the factor on the previous accepted step that
            gives the first trial; positive.
        max_learning_rate: :math:`\eta_{max}`, the largest first trial, and
            :math:`\eta_{prev}` before the first search; positive.
        atol: :math:`\epsilon_{abs}`, an absolute slack on the condition; at least 0.
        rtol: :math:`\epsilon_{rel}`, a slack relative to :math:`|f(x)|`; at least 0.
        store_grad: evaluate the gradient with each trial and keep the accepted one in the
            state, for :func:`value_and_grad_from_state`.
        verbose: print (``jax.debug.print``) a line when a search ends without sufficient
            decrease.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> tx = gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_backtracking_linesearch(20, decrease_factor=0.5))
        >>> w = jnp.array([1.0, -2.0])
        >>> u, state = tx.update(jax.grad(f)(w), tx.init(w), w, value=f(w), grad=jax.grad(f)(w), value_fn=f)
        >>> gradtx.apply_updates(w, u).tolist(), float(state[1].learning_rate)
        ([0.0, 0.0], 0.5)
    """
    check_range("max_backtracking_steps", max_backtracking_steps, 1)
    hp = Hyperparams(
        learning_rate=check_positive("max_learning_rate", max_learning_rate),
        slope_rtol=check_range("slope_rtol", slope_rtol, 0.0, 1.0, high_open=True),
        decrease_factor=check_range("decrease_factor", decrease_factor, 0.0, 1.0, low_open=True, high_open=True),
        increase_factor=check_positive("increase_factor", increase_factor),
        max_learning_rate=max_learning_rate,
        atol=check_nonnegative("atol", atol),
        rtol=check_nonnegative("rtol", rtol),
        allow_schedules=False,
    )
    who = "scale_by_backtracking_linesearch"

    def init(params):
        grad = _tree.zeros_like(params) if store_grad else None
        info = BacktrackingLinesearchInfo(jnp.zeros((), jnp.int32), jnp.zeros((), float_dtype()))
        return ScaleByBacktrackingLinesearchState(jnp.asarray(jnp.inf, float_dtype()), grad, info, hp.init())

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        phi0, kwargs = _checked(who, updates, params, value, grad, value_fn, extra_args)
        h = {k: v.astype(phi0.dtype) for k, v in hp.values(state.hyperparams).items()}
        static = (value_fn, int(max_backtracking_steps), store_grad, verbose)
        eta, phi, g, i, error = _call(_backtrack, static, params, updates, grad, phi0, h, kwargs)
        stored = dict(state.hyperparams, learning_rate=eta.astype(state.hyperparams["learning_rate"].dtype))
        info = BacktrackingLinesearchInfo(i, error.astype(state.info.decrease_error.dtype))
        return scaled(updates, eta), ScaleByBacktrackingLinesearchState(phi.astype(state.value.dtype), g, info, stored)

    return GradientTransformation(init, update)


def _backtrack(value_fn, max_steps, store_grad, verbose, params, direction, grad, phi0, h, kwargs):
    """The backtracking loop; returns the step, the value and gradient there, the evaluations and the miss."""
    dtype = phi0.dtype
    slope0 = real_vdot(grad, direction, dtype)
    bound0 = phi0 + h["atol"] + h["rtol"] * jnp.abs(phi0)
    f = lambda x: jnp.asarray(value_fn(x, **kwargs)).astype(dtype)  # noqa: E731
    evaluate = _value_and_grad(f) if store_grad else lambda x: (f(x), None)

    def body(c):
        i, eta, _, _, _ = c
        eta = jnp.where(i == 0, eta, eta * h["decrease_factor"])
        phi, g = evaluate(_trial(params, direction, eta))
        return i + 1, eta, phi, g, phi <= bound0 + h["slope_rtol"] * eta * slope0

    eta0 = jnp.minimum(h["learning_rate"] * h["increase_factor"], h["max_learning_rate"])
    g0 = _like_params(grad, params) if store_grad else None
    start = (jnp.zeros((), jnp.int32), eta0, phi0, g0, jnp.bool_(False))
    i, eta, phi, g, ok = jax.lax.while_loop(lambda c: ~c[-1] & (c[0] < max_steps), body, start)
    if verbose:
        jax.lax.cond(
            ok,
            lambda: None,
            lambda: jax.debug.print(
                "backtracking linesearch: no sufficient decrease after {i} evaluations; taking step {eta}", i=i, eta=eta
            ),
        )
    error = jnp.maximum(phi - bound0 - h["slope_rtol"] * eta * slope0, 0.0)
    return eta, phi, None if g is None else _like_params(g, params), i, error


# ------------------------------------------------------------------ strong Wolfe


class ZoomLinesearchInfo(NamedTuple):
    """What the last search did: evaluations, and how far the two Wolfe conditions missed (0 if met)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """The value and gradient at the accepted point; the accepted step in ``hyperparams``."""

    value: jax.Array
    grad: Updates
    info: ZoomLinesearchInfo
    hyperparams: dict[str, Any]

    @property
    def learning_rate(self) -> jax.Array:
        """The last accepted step (Optax's field), kept in ``hyperparams``."""
        return self.hyperparams["learning_rate"]


class _Point(NamedTuple):
    eta: jax.Array
    value: jax.Array
    slope: jax.Array


class _Search(NamedTuple):
    i: jax.Array  # evaluations so far
    done: jax.Array  # the last point satisfies the conditions
    stop: jax.Array  # the bracket is narrower than stepsize_precision (relative)
    bracketed: jax.Array  # [low, high] brackets an acceptable step (zoom phase)
    next_eta: jax.Array
    last: _Point
    last_grad: Updates
    prev: _Point  # the previous trial of the bracketing phase
    low: _Point
    high: _Point
    safe: _Point  # the lowest point seen that satisfies the decrease condition
    safe_grad: Updates


def _cubic_minimizer(low: _Point, high: _Point) -> jax.Array:
    """The minimizer of the cubic through both ends' values and slopes (N&W eq. 3.59), safeguarded.

    It is clipped to the middle 80% of the bracket; bisection when it is not finite.
    """
    a, b = low.eta, high.eta
    d1 = low.slope + high.slope - 3 * (low.value - high.value) / (a - b)
    disc = d1 * d1 - low.slope * high.slope
    d2 = jnp.sign(b - a) * jnp.sqrt(jnp.maximum(disc, 0.0))
    x = b - (b - a) * (high.slope + d2 - d1) / (high.slope - low.slope + 2 * d2)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    width = hi - lo
    ok = jnp.isfinite(x) & (disc >= 0)
    return jnp.where(ok, jnp.clip(x, lo + 0.1 * width, hi - 0.1 * width), 0.5 * (a + b))


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    r"""A step satisfying the strong Wolfe conditions, by bracketing and zoom (Nocedal & Wright, 2006, :doi:`10.1007/978-0-387-40065-5`, Alg. 3.5, 3.6).

    With :math:`\phi(\eta) = f(x + \eta d)`:

    .. math::
        \phi(\eta) \le \phi(0) + c_1 \eta \phi'(0) + \mathrm{tol}, \qquad
        |\phi'(\eta)| \le c_2 |\phi'(0)| + \mathrm{tol}

    The bracketing phase multiplies the step by ``increase_factor`` (up to
    ``max_learning_rate``) until an interval containing an acceptable step is
    found; the zoom phase shrinks it by safeguarded cubic interpolation. The
    decrease condition may also accept the approximate one (Hager & Zhang, 2005,
    :doi:`10.1137/030601880`), :math:`\phi(\eta) \le \phi(0) + \epsilon|\phi(0)|` and
    :math:`\phi'(\eta) \le (2 c_1 - 1)\phi'(0)`, which stays usable when
    :math:`\phi` is flat to rounding near a minimum. When the search ends without
    a step satisfying both conditions, the lowest point satisfying the decrease
    condition is taken (step 0 if none). The numeric arguments are numbers or 0-d
    arrays, not schedules.

    Args:
        max_linesearch_steps: the most evaluations of :math:`f` (with its gradient) in one
            search, an int of at least 1.
        max_learning_rate: the largest step tried, positive; ``None`` for no bound.
        tol: :math:`\mathrm{tol}`, a slack on both conditions; at least 0.
        increase_factor: the step's factor from one bracketing trial to the next; above 1.
        slope_rtol: :math:`c_1`, in (0, 1) and smaller than ``curv_rtol``.
        curv_rtol: :math:`c_2`, in (0, 1).
        approx_dec_rtol: :math:`\epsilon` of the approximate decrease condition, at least 0;
            ``None`` keeps to the first condition above.
        stepsize_precision: the search ends once the bracket's width is below this times
            its larger end; at least 0.
        initial_guess_strategy: ``"one"`` (start at 1, right for quasi-Newton directions)
            or ``"keep"`` (start at the previous accepted step).
        verbose: print (``jax.debug.print``) a line when a search ends without a strong
            Wolfe step.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> f = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> tx = gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_zoom_linesearch(10))
        >>> w = jnp.zeros(2)
        >>> u, state = tx.update(jax.grad(f)(w), tx.init(w), w, value=f(w), grad=jax.grad(f)(w), value_fn=f)
        >>> [round(x, 4) for x in gradtx.apply_updates(w, u).tolist()], round(float(state[1].learning_rate), 4)
        ([1.0, 1.0], 0.5)
    """
    check_range("max_linesearch_steps", max_linesearch_steps, 1)
    if initial_guess_strategy not in ("one", "keep"):
        raise ValueError(f"initial_guess_strategy must be 'one' or 'keep', got {initial_guess_strategy!r}")
    given = dict(
        learning_rate=1.0,
        tol=check_nonnegative("tol", tol),
        increase_factor=check_range("increase_factor", increase_factor, 1.0, low_open=True),
        slope_rtol=check_range("slope_rtol", slope_rtol, 0.0, 1.0, low_open=True, high_open=True),
        curv_rtol=check_range("curv_rtol", curv_rtol, 0.0, 1.0, low_open=True, high_open=True),
        stepsize_precision=check_nonnegative("stepsize_precision", stepsize_precision),
    )
    if isinstance(slope_rtol, float) and isinstance(curv_rtol, float) and slope_rtol >= curv_rtol:
        raise ValueError(f"slope_rtol must be smaller than curv_rtol, got {slope_rtol} >= {curv_rtol}")
    if max_learning_rate is not None:
        given["max_learning_rate"] = check_positive("max_learning_rate", max_learning_rate)
    if approx_dec_rtol is not None:
        given["approx_dec_rtol"] = check_nonnegative("approx_dec_rtol", approx_dec_rtol)
    hp = Hyperparams(allow_schedules=False, **given)
    who = "scale_by_zoom_linesearch"

    def init(params):
        dtype = float_dtype()
        info = ZoomLinesearchInfo(jnp.zeros((), jnp.int32), jnp.zeros((), dtype), jnp.zeros((), dtype))
        return ScaleByZoomLinesearchState(jnp.asarray(jnp.inf, dtype), _tree.zeros_like(params), info, hp.init())

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        phi0, kwargs = _checked(who, updates, params, value, grad, value_fn, extra_args)
        h = {k: v.astype(phi0.dtype) for k, v in hp.values(state.hyperparams).items()}
        static = (value_fn, int(max_linesearch_steps), initial_guess_strategy, verbose)
        point, g, i, errors = _call(_zoom, static, params, updates, grad, phi0, h, kwargs)
        info_dtype = state.info.decrease_error.dtype
        info = ZoomLinesearchInfo(i, *(e.astype(info_dtype) for e in errors))
        stored = dict(state.hyperparams, learning_rate=point.eta.astype(state.hyperparams["learning_rate"].dtype))
        new_state = ScaleByZoomLinesearchState(point.value.astype(state.value.dtype), g, info, stored)
        return scaled(updates, point.eta), new_state

    return GradientTransformation(init, update)


def _zoom(value_fn, max_steps, initial_guess_strategy, verbose, params, direction, grad, phi0, h, kwargs):
    """Algorithms 3.5 and 3.6 in one ``while_loop``; returns the accepted point, its gradient, the evaluations
    and the misses of the two conditions."""
    dtype = phi0.dtype
    eta_max = h.get("max_learning_rate", jnp.asarray(jnp.inf, dtype))
    c1, c2, tol_ = h["slope_rtol"], h["curv_rtol"], h["tol"]
    slope0 = real_vdot(grad, direction, dtype)
    descent = jnp.minimum(slope0, 0.0)  # along an ascent direction f may not increase either
    vg = _value_and_grad(lambda x: jnp.asarray(value_fn(x, **kwargs)).astype(dtype))

    def decrease(p: _Point) -> jax.Array:
        armijo = p.value <= phi0 + c1 * p.eta * descent + tol_
        if "approx_dec_rtol" not in h:
            return armijo
        approx = (p.value <= phi0 + h["approx_dec_rtol"] * jnp.abs(phi0) + tol_) & (
            p.slope <= (2 * c1 - 1) * descent + tol_
        )
        return armijo | approx

    def body(c: _Search) -> _Search:
        eta = c.next_eta
        phi, g = vg(_trial(params, direction, eta))
        phi = jnp.where(jnp.isnan(phi), jnp.inf, phi)
        cur = _Point(eta, phi, real_vdot(g, direction, dtype))
        dec, curv = decrease(cur), jnp.abs(cur.slope) <= c2 * jnp.abs(slope0) + tol_
        # Alg. 3.5, bracketing: [prev, cur] or [cur, prev] brackets a Wolfe step, or cur is one
        b_high = ~dec | ((c.i > 0) & (phi >= c.prev.value))
        b_flip = ~b_high & ~curv & (cur.slope >= 0)
        b_expand = ~b_high & ~curv & ~b_flip
        # Alg. 3.6, zoom: cur replaces high, or becomes low (the old low may become high)
        z_high = ~dec | (phi >= c.low.value)
        z_low = ~z_high & ~curv
        z_swap = z_low & (cur.slope * (c.high.eta - c.low.eta) >= 0)
        zoom = c.bracketed
        at_max = b_expand & (eta >= eta_max)  # cannot expand further, and the decrease condition holds
        done = jnp.where(zoom, ~z_high & curv, (~b_high & curv) | at_max)
        low = _where(zoom, _where(z_low, cur, c.low), _where(b_high, c.prev, cur))
        high = _where(zoom, _where(z_high, cur, _where(z_swap, c.low, c.high)), _where(b_high, cur, c.prev))
        bracketed = zoom | b_high | b_flip
        low, high = _where(bracketed, low, c.low), _where(bracketed, high, c.high)
        better = dec & (phi < c.safe.value)
        next_eta = jnp.where(bracketed, _cubic_minimizer(low, high), jnp.minimum(eta * h["increase_factor"], eta_max))
        width, size = jnp.abs(high.eta - low.eta), jnp.maximum(jnp.abs(high.eta), jnp.abs(low.eta))
        stop = bracketed & ~done & (width <= h["stepsize_precision"] * size)
        return _Search(
            c.i + 1,
            done,
            stop,
            bracketed,
            next_eta,
            cur,
            g,
            _where(~zoom & b_expand, cur, c.prev),
            low,
            high,
            _where(better, cur, c.safe),
            _where(better, g, c.safe_grad),
        )

    if initial_guess_strategy == "one":
        eta0 = jnp.ones((), dtype)
    else:
        previous = h["learning_rate"]
        eta0 = jnp.where((previous > 0) & jnp.isfinite(previous), previous, 1.0)
    origin = _Point(jnp.zeros((), dtype), phi0, slope0)
    g0 = _like_params(grad, params)
    false = jnp.bool_(False)
    start = _Search(
        jnp.zeros((), jnp.int32),
        false,
        false,
        false,
        jnp.minimum(eta0, eta_max),
        origin,
        g0,
        origin,
        origin,
        origin,
        origin,
        g0,
    )
    c = jax.lax.while_loop(lambda c: ~c.done & ~c.stop & (c.i < max_steps), body, start)
    point, g = _where(c.done, c.last, c.safe), _where(c.done, c.last_grad, c.safe_grad)
    if verbose:
        jax.lax.cond(
            c.done,
            lambda: None,
            lambda: jax.debug.print(
                "zoom linesearch: no strong Wolfe step after {i} evaluations; taking step {eta}", i=c.i, eta=point.eta
            ),
        )
    errors = (
        jnp.maximum(point.value - phi0 - c1 * point.eta * descent, 0.0),
        jnp.maximum(jnp.abs(point.slope) - c2 * jnp.abs(slope0), 0.0),
    )
    return point, _like_params(g, params), c.i, errors


# ------------------------------------------------------------- reusing the value


_STATES = (ScaleByBacktrackingLinesearchState, ScaleByZoomLinesearchState)


def value_and_grad_from_state(value_fn: Callable[..., jax.Array]) -> Callable[..., tuple[jax.Array, Updates]]:
    r"""``jax.value_and_grad(value_fn)``, but reusing what a line search in ``state`` already computed.

    A line search keeps :math:`f` and :math:`\nabla f` at the point it accepted,
    which is the next iterate; when the state holds them (after the first step)
    they are returned without evaluating ``value_fn``, so an L-BFGS step costs
    only the evaluations inside its line search. The gradient of a complex
    parameter is returned conjugated, as gradtx expects it (see "Complex
    parameters" in the design notes): ``jnp.conj`` of ``jax.grad``'s.

    Args:
        value_fn: :math:`f`, called as ``value_fn(params, *args, **kwargs)`` and returning
            the scalar loss.

    Returns:
        A jitted function ``fn(params, *args, state=opt_state, **kwargs)`` returning
        ``(value, grad)``. ``params`` must be the parameters that the last update
        produced; ``state`` must hold exactly one line search, and a backtracking one must
        be built with ``store_grad=True``, else it raises a ``ValueError``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> tx, w = gradtx.lbfgs(), jnp.array([1.0, 2.0])
        >>> state = tx.init(w)
        >>> value_and_grad = gradtx.value_and_grad_from_state(f)
        >>> for _ in range(3):
        ...     value, grad = value_and_grad(w, state=state)
        ...     updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
        ...     w = gradtx.apply_updates(w, updates)
        >>> round(float(f(w)), 6), float(value_and_grad(w, state=state)[0]) == float(f(w))
        (0.0, True)
    """
    value_and_grad = _value_and_grad(value_fn)

    def fn(params, *fn_args, state, **fn_kwargs):
        found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, _STATES)) if isinstance(s, _STATES)]
        if len(found) != 1:
            raise ValueError(
                f"value_and_grad_from_state needs a state with exactly one line search, found {len(found)}"
            )
        (search,) = found
        if search.grad is None:
            raise ValueError(
                "this scale_by_backtracking_linesearch keeps no gradient: build it with store_grad=True "
                "to use value_and_grad_from_state"
            )

        def compute():
            return value_and_grad(params, *fn_args, **fn_kwargs)

        shapes = jax.eval_shape(compute)

        def reuse():
            return jax.tree.map(lambda x, s: jnp.asarray(x).astype(s.dtype), (search.value, search.grad), shapes)

        return jax.lax.cond(jnp.isfinite(search.value), reuse, compute)

    return jax.jit(fn)
