"""Step sizes computed from the run itself: Polyak's, distance over gradients (DoG) and distance
over weighted gradients (DoWG).

None needs a learning rate to be tuned: Polyak's step uses the loss value
and a lower bound on it, DoG and DoWG the distance travelled from the starting point.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import check_updates, needs_params, scaled
from gradtx.core.numerics import moment_dtype, safe_increment, scalar_loss, stable_norm, zero_count
from gradtx.core.validation import check_nonnegative, check_one_of, check_positive, check_range
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_hyperparameter, scale_by_learning_rate


def _ratio(numerator, denominator, where_zero):
    """``numerator / denominator``, and ``where_zero`` where the denominator is 0 (no 0/0)."""
    return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1), where_zero)


def _start(params, dtype):
    """A copy of the starting point :math:`x_0` in ``dtype`` (``None``: the parameters'), complex
    for complex parameters (moment_dtype keeps the imaginary part)."""
    return jax.tree.map(lambda p: jnp.array(p, moment_dtype(p, dtype), copy=True), params)


def _moved(params, x0):
    """:math:`x_t - x_0`, leaf by leaf, in the wider of the two dtypes."""
    return jax.tree.map(lambda p, x: p.astype(jnp.promote_types(p.dtype, x.dtype)) - x, params, x0)


# ------------------------------------------------------------------------- Polyak


class ScaleByPolyakState(NamedTuple):
    """``scale_by_polyak``: the step size :math:`\\gamma_t` of the last update, and the hyperparameters."""

    step_size: jax.Array
    hyperparams: dict[str, Any]


_VARIANTS = ("sps", "sps+")


def scale_by_polyak(
    f_min: float = 0.0,
    max_learning_rate: float = 1.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Polyak's step size (Polyak, 1987), capped as SPS\ :sub:`max` (Loizou et al., 2021, :arxiv:`2002.10542`).

    .. math::
        \gamma_t = \min\left(\frac{f(\theta_t) - f^*}{\lVert g_t \rVert^2 + \epsilon},\; \gamma_{max}\right),
        \qquad u_t = \gamma_t\, g_t

    with the norm over all leaves together, and :math:`\gamma = \gamma_{max}` where
    the denominator is 0 (the gradient, and so the update, is then 0).
    Needs the loss as the extra argument ``value``; the returned direction is
    *added* by a learning rate transform, as in :func:`polyak_sgd`.
    ``state.step_size`` is the :math:`\gamma_t` of the last update.

    Args:
        f_min: :math:`f^*`, a lower bound of the loss; a finite number or 0-d array.
        max_learning_rate: the cap :math:`\gamma_{max} \ge 0`, a number or 0-d array.
        eps: :math:`\epsilon \ge 0`, added to :math:`\lVert g_t \rVert^2`; a number or 0-d array.
        variant: ``"sps"``, or ``"sps+"`` for :math:`\max(f(\theta_t) - f^*, 0)` in the numerator
            (no step uphill when the bound is wrong).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_polyak()
        >>> w = jnp.array([2.0])  # f(w) = w^2 = 4, g = 2w = 4
        >>> u, state = tx.update(2 * w, tx.init(w), w, value=jnp.sum(w**2))
        >>> u.tolist(), float(state.step_size)  # gamma = 4 / 16
        ([1.0], 0.25)
    """
    check_one_of("variant", variant, _VARIANTS)
    hp = Hyperparams(
        f_min=check_range("f_min", f_min),
        max_learning_rate=check_nonnegative("max_learning_rate", max_learning_rate),
        eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByPolyakState(jnp.zeros((), float_dtype()), hp.init())

    def update(updates, state, params=None, value=None, **extra_args):
        if params is not None:
            _tree.check_same_structure(params, updates, "the parameters", "the updates")
        if value is None:
            raise ValueError("scale_by_polyak needs the loss: call update(updates, state, params, value=loss)")
        value = scalar_loss(value, "scale_by_polyak")
        h = hp.values(state.hyperparams)
        norm = _tree.norm(updates)
        dtype = jnp.promote_types(norm.dtype, state.step_size.dtype)
        f_min_, cap, eps_ = (h[k].astype(dtype) for k in ("f_min", "max_learning_rate", "eps"))
        gap = jnp.asarray(value).astype(dtype) - f_min_
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        gamma = jnp.minimum(_ratio(gap, jnp.square(norm.astype(dtype)) + eps_, cap), cap)
        return scaled(updates, gamma), ScaleByPolyakState(gamma.astype(state.step_size.dtype), state.hyperparams)

    return GradientTransformation(init, update)


def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Gradient descent with Polyak's step size: :math:`\theta_{t+1} = \theta_t - s\, \gamma_t g_t`.

    :math:`\gamma_t` as in :func:`scale_by_polyak`. There is no learning rate to
    tune, and the loss must be passed as ``update(..., value=loss)``.

    Args:
        max_learning_rate: the cap :math:`\gamma_{max}` of the step, a number or 0-d array.
        scaling: the factor :math:`s \ge 0` on :math:`\gamma_t`; a number, 0-d array or schedule.
        f_min: :math:`f^*`, a lower bound of the loss (see :func:`scale_by_polyak`).
        eps: :math:`\epsilon`, added to :math:`\lVert g_t \rVert^2` (see :func:`scale_by_polyak`).
        variant: ``"sps"`` or ``"sps+"`` (see :func:`scale_by_polyak`).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum(w**2)
        >>> tx, w = gradtx.polyak_sgd(), jnp.array([2.0, -1.0])
        >>> state = tx.init(w)
        >>> for _ in range(3):
        ...     value, grad = jax.value_and_grad(loss)(w)
        ...     updates, state = tx.update(grad, state, w, value=value)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 4) for x in w.tolist()]  # gamma = 1/4 halves w each step
        [0.25, -0.125]
    """
    check_nonnegative("scaling", scaling)
    return chain(
        scale_by_polyak(f_min, max_learning_rate, eps, variant), scale_by_hyperparameter("scaling", scaling, -1.0)
    )


# -------------------------------------------------------------------------- DoG


class DoGState(NamedTuple):
    r"""Distance over gradients: the step count, :math:`x_0` (``init_params``), :math:`\bar r_t`
    (``max_dist``) and :math:`G_t` (``sum_sq_norm_grads``).

    ``max_dist`` and ``sum_sq_norm_grads`` are scalars for :func:`dog` and one
    scalar per leaf for the layer-wise :func:`scale_by_distance_over_gradients`.
    """

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    init_params: Any
    max_dist: Any
    sum_sq_norm_grads: Any
    hyperparams: dict[str, Any]

    @property
    def is_init_step(self) -> jax.Array:
        """Optax's flag: True before the first update."""
        return self.count == 0


def scale_by_distance_over_gradients(
    reps_rel: float = 1e-6,
    eps: float = 1e-8,
    param_dtype: Any = jnp.float32,
    global_scale: float = 1.0,
) -> GradientTransformation:
    r"""Layer-wise DoG: distance over gradients (Ivgi, Hinder & Carmon, 2023, :arxiv:`2302.12022`, L-DoG).

    For every leaf (block) separately,

    .. math::
        \bar r_t = \max\left(r_\epsilon, \max_{i \le t} \lVert x_i - x_0 \rVert\right), \quad
        G_t = \sum_{i \le t} \lVert g_i \rVert^2, \quad
        u_t = s\, \frac{\bar r_t}{\sqrt{G_t + \epsilon}}\, g_t

    The state keeps :math:`x_0` and two scalars per leaf. Needs the parameters;
    chain a learning rate of 1 to descend (``chain(scale_by_distance_over_gradients(), scale_by_learning_rate(1.0))``).

    Args:
        reps_rel: sets the first movement, :math:`r_\epsilon` = ``reps_rel`` :math:`(1 + \lVert x_0 \rVert)`
            per leaf; a positive number or 0-d array.
        eps: :math:`\epsilon \ge 0`, added to :math:`G_t`; a number or 0-d array.
        param_dtype: the dtype in which :math:`x_0` is kept (complex for complex parameters).
        global_scale: :math:`s \ge 0`, a number or 0-d array.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_distance_over_gradients(reps_rel=0.5, eps=0.0)
        >>> w = jnp.array([3.0, 4.0])  # r_eps = 0.5 * (1 + 5) = 3
        >>> u, state = tx.update(jnp.array([0.0, 2.0]), tx.init(w), w)
        >>> u.tolist()  # 3 / sqrt(4) * g
        [0.0, 3.0]
    """
    hp = Hyperparams(
        reps_rel=check_positive("reps_rel", reps_rel),
        eps=check_nonnegative("eps", eps),
        global_scale=check_nonnegative("global_scale", global_scale),
        allow_schedules=False,
    )
    return _dog("scale_by_distance_over_gradients", hp, "reps_rel", "heuristic", param_dtype, layerwise=True)


_INIT_STEPS = ("distance", "learning_rate", "heuristic")


def _dog(who, hp, init_name, init_kind, param_dtype, layerwise):
    def scalars(params):
        if layerwise:
            return jax.tree.map(lambda _: jnp.zeros((), float_dtype()), params)
        return jnp.zeros((), float_dtype())

    def init(params):
        return DoGState(zero_count(), _start(params, param_dtype), scalars(params), scalars(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(f"{who} needs the parameters: call update(updates, state, params)")
        _tree.check_same_structure(state.init_params, updates, "the tree this state was built for", "the updates")
        _tree.check_same_structure(params, updates, "the parameters", "the updates")
        h = hp.values(state.hyperparams)
        first = state.count == 0
        dtype = float_dtype()
        init_value, eps_ = h[init_name].astype(dtype), h["eps"].astype(dtype)
        scale = h.get("global_scale", jnp.ones((), dtype)).astype(dtype)

        def distance(p, x0):
            return stable_norm(p.astype(jnp.promote_types(p.dtype, x0.dtype)) - x0).astype(dtype)

        def r_epsilon(x0_norm, sum_sq):
            if init_kind == "heuristic":
                return init_value * (1 + x0_norm)
            if init_kind == "distance":
                return init_value
            return init_value * jnp.sqrt(sum_sq + eps_)  # the first step is init_value * g

        def step_size(d, x0_norm, max_dist, sum_sq, g_norm):
            sum_sq = sum_sq + jnp.square(g_norm)
            rbar = jnp.maximum(jnp.where(first, r_epsilon(x0_norm, sum_sq), max_dist), d)
            root = jnp.sqrt(sum_sq + eps_)
            return _ratio(scale * rbar, root, 0), rbar, sum_sq

        if layerwise:

            def leaf(g, p, x0, max_dist, sum_sq):
                eta, rbar, new_sq = step_size(
                    distance(p, x0), stable_norm(x0).astype(dtype), max_dist, sum_sq, stable_norm(g).astype(dtype)
                )
                return (g * eta.astype(jnp.promote_types(g.dtype, dtype))).astype(g.dtype), rbar, new_sq

            treedef = jax.tree.structure(updates)
            flat = treedef.flatten_up_to(
                jax.tree.map(leaf, updates, params, state.init_params, state.max_dist, state.sum_sq_norm_grads)
            )
            out, max_dist, sum_sq = (jax.tree.unflatten(treedef, [f[i] for f in flat]) for i in range(3))
        else:
            d = _tree.norm(_moved(params, state.init_params))
            eta, max_dist, sum_sq = step_size(
                d.astype(dtype),
                _tree.norm(state.init_params).astype(dtype),
                state.max_dist,
                state.sum_sq_norm_grads,
                _tree.norm(updates).astype(dtype),
            )
            out = scaled(updates, eta)
        count = safe_increment(state.count)
        return out, DoGState(count, state.init_params, max_dist, sum_sq, state.hyperparams)

    return GradientTransformation(init, update)


def _scale_by_dog(init_step: tuple[str, float], eps: float) -> GradientTransformation:
    if not (isinstance(init_step, tuple) and len(init_step) == 2 and init_step[0] in _INIT_STEPS):
        raise ValueError(f"init_step must be a pair (kind, value) with kind in {_INIT_STEPS}, got {init_step!r}")
    kind, value = init_step
    hp = Hyperparams(
        init_step=check_positive("init_step", value), eps=check_nonnegative("eps", eps), allow_schedules=False
    )
    return _dog("dog", hp, "init_step", kind, None, layerwise=False)


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Mask = None,
) -> GradientTransformation:
    r"""DoG: distance over gradients, a step size that needs no tuning (Ivgi, Hinder & Carmon, 2023, :arxiv:`2302.12022`).

    .. math::
        \bar r_t = \max\left(r_\epsilon, \max_{i \le t} \lVert x_i - x_0 \rVert\right), \quad
        G_t = \sum_{i \le t} \lVert g_i \rVert^2, \quad
        x_{t+1} = x_t - c\, \frac{\bar r_t}{\sqrt{G_t + \epsilon}}\, g_t

    with norms over all leaves together. The state keeps a copy of
    :math:`x_0` in the parameters' dtype.

    Args:
        learning_rate: :math:`c` (the paper's default 1); a number, 0-d array or schedule.
        init_step: ``(kind, value)``, ``value`` a positive number or 0-d array, sets the first movement:
            ``("heuristic", r)`` gives :math:`r_\epsilon = r (1 + \lVert x_0 \rVert)` (the paper's rule),
            ``("distance", r)`` :math:`r_\epsilon = r` and ``("learning_rate", eta_0)`` a first step :math:`c\, \eta_0 g_0`.
        eps: :math:`\epsilon \ge 0`, added to :math:`G_t`; a number or 0-d array.
        weight_decay: an L2 coefficient whose term is added to the gradient before DoG sees it (as in the
            paper's code); a number, 0-d array or schedule, ``None``: none.
        mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = gradtx.dog(), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(200):  # the distance first grows geometrically from r_eps
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    decay = [] if weight_decay is None else [add_decayed_weights(weight_decay, mask)]
    return chain(*decay, _scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate, allow_none=False))


# ------------------------------------------------------------------------- DoWG


class DoWGState(NamedTuple):
    r"""Distance over weighted gradients: :math:`x_0` (``init_params``), :math:`v_t`
    (``weighted_sq_norm_grads``) and :math:`\bar r_t^2` (``estim_sq_dist``), scalars over the
    whole tree, and the hyperparameters."""

    init_params: Any
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array
    hyperparams: dict[str, Any]


def scale_by_dowg(
    init_estim_sq_dist: float | None = None, eps: float = 1e-4, eps_in_step: bool = False
) -> GradientTransformation:
    r"""DoWG: distance over weighted gradients (Khaled, Mishchenko & Jin, 2023, :arxiv:`2305.16284`, Algorithm 1).

    .. math::
        \bar r_t = \max(\lVert x_t - x_0 \rVert, \bar r_{t-1}), \quad
        v_t = v_{t-1} + \bar r_t^2 \lVert g_t \rVert^2, \quad
        u_t = \frac{\bar r_t^2}{\sqrt{v_t}}\, g_t

    from :math:`\bar r_{-1} = r_\epsilon` and :math:`v_{-1} = 0`, with norms over all leaves
    together: the first step has length :math:`r_\epsilon`. The paper leaves :math:`r_\epsilon`
    to the user; its square defaults, as in Optax, to ``eps``. Optax also divides by
    :math:`\sqrt{v_t} + \epsilon`, which the paper does not (``eps_in_step=True`` does). The
    update is a direction: chain a learning rate to descend, as :func:`dowg` does. Needs the
    parameters.

    Args:
        init_estim_sq_dist: :math:`r_\epsilon^2 > 0`, the square of the first distance estimate; a
            number, 0-d array, or ``None`` for ``eps``.
        eps: :math:`\epsilon`, the default :math:`r_\epsilon^2`: > 0 when ``init_estim_sq_dist`` is
            ``None``, else >= 0 (and used only with ``eps_in_step``); a number or 0-d array.
        eps_in_step: divide by :math:`\sqrt{v_t} + \epsilon` (Optax's step) instead of :math:`\sqrt{v_t}`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.step_size import scale_by_dowg
        >>> tx, w = scale_by_dowg(init_estim_sq_dist=0.25), jnp.array([1.0, 1.0])
        >>> u, state = tx.update(jnp.array([3.0, 4.0]), tx.init(w), w)
        >>> [round(x, 4) for x in u.tolist()]  # r_eps / |g| * g: a first step of length r_eps = 0.5
        [0.3, 0.4]
    """
    if init_estim_sq_dist is None:
        init_estim_sq_dist = check_positive("eps", eps)
    else:
        check_positive("init_estim_sq_dist", init_estim_sq_dist)
    hp = Hyperparams(init_estim_sq_dist=init_estim_sq_dist, eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        r_eps_sq = hp.values(hp.init())["init_estim_sq_dist"]
        return DoWGState(_start(params, None), jnp.zeros((), float_dtype()), r_eps_sq, hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params("scale_by_dowg", params, updates)
        check_updates(state.init_params, updates)
        h = hp.values(state.hyperparams)
        dtype = state.estim_sq_dist.dtype
        r_eps_sq, eps_ = h["init_estim_sq_dist"].astype(dtype), h["eps"].astype(dtype)
        distance = _tree.norm(_moved(params, state.init_params)).astype(dtype)
        # rbar_t = max(|x_t - x_0|, rbar_{t-1}); the floor r_eps lets a new init_estim_sq_dist take effect
        rbar_sq = jnp.maximum(jnp.maximum(state.estim_sq_dist, r_eps_sq), jnp.square(distance))
        v = state.weighted_sq_norm_grads + rbar_sq * jnp.square(_tree.norm(updates).astype(dtype))
        eta = _ratio(rbar_sq, jnp.sqrt(v) + (eps_ if eps_in_step else 0), 0)
        return scaled(updates, eta), DoWGState(state.init_params, v, rbar_sq, state.hyperparams)

    return GradientTransformation(init, update)


def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Mask = None,
    eps_in_step: bool = False,
) -> GradientTransformation:
    r"""DoWG: distance over weighted gradients, a parameter-free gradient descent (Khaled, Mishchenko & Jin, 2023, :arxiv:`2305.16284`).

    .. math::
        \bar r_t = \max(\lVert x_t - x_0 \rVert, \bar r_{t-1}), \quad
        v_t = v_{t-1} + \bar r_t^2 \lVert g_t \rVert^2, \quad
        x_{t+1} = x_t - c\, \frac{\bar r_t^2}{\sqrt{v_t}}\, g_t

    with :math:`\bar r_{-1} = r_\epsilon`, norms over all leaves together (see
    :func:`scale_by_dowg`). The state keeps a copy of :math:`x_0` in the parameters' dtype.

    Args:
        learning_rate: :math:`c \ge 0` (the paper's 1); a number, 0-d array or schedule.
        init_estim_sq_dist: :math:`r_\epsilon^2 > 0`; ``None`` for ``eps``.
        eps: :math:`\epsilon`, the default :math:`r_\epsilon^2` (see :func:`scale_by_dowg`).
        weight_decay: an L2 coefficient whose term is added to the gradient before DoWG sees it;
            a number, 0-d array or schedule, ``None``: none.
        mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.
        eps_in_step: divide by :math:`\sqrt{v_t} + \epsilon`, as Optax does.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.step_size import dowg
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = dowg(), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(100):  # the distance estimate first grows geometrically from r_eps
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    decay = [] if weight_decay is None else [add_decayed_weights(weight_decay, mask)]
    return chain(
        *decay,
        scale_by_dowg(init_estim_sq_dist, eps, eps_in_step),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
