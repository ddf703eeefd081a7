r"""Schedule-free learning (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 2024,
"The Road Less Scheduled", :arxiv:`2405.15682`): momentum and a learning-rate schedule replaced
by an interpolation and an online average.

Three sequences share one step: the base optimizer moves :math:`z`, the average :math:`x`
follows it, and the gradient is taken at :math:`y`, between the two:

.. math::
    y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad z_{t+1} = z_t - \gamma_t d_t(y_t), \qquad
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \qquad
    c_{t+1} = \frac{w_t}{\sum_{i \le t} w_i}, \quad w_t = \gamma_t^{p}

The parameters the user holds, and differentiates at, are :math:`y`; the state keeps :math:`z`,
and :math:`x`, the point to evaluate, is :func:`schedule_free_eval_params` of the state and
:math:`y`. At the first step :math:`x_1 = y_1 = z_1` (the initial parameters) and
:math:`c_2 = 1`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Params, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import HYPERPARAMS_FIELD, Hyperparams, Scheduled, float_dtype, forwarded
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, needs_params, unzip, update_moment
from gradtx.core.numerics import compute_dtype, moment_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.paths import check_same_structure, key_name
from gradtx.core.validation import check_decay, check_nonnegative, check_that
from gradtx.transforms.regularizers import add_decayed_weights


class ScheduleFreeState(NamedTuple):
    r"""The schedule-free state: Optax's fields, and the hyperparameters.

    ``b1`` is the :math:`\beta_1` with which the current parameters :math:`y_t` were formed
    (the one :func:`schedule_free_eval_params` undoes; the next update uses
    ``hyperparams["b1"]``); ``weight_sum`` is :math:`\sum_{i<t} w_i`; ``step_count`` is the
    :math:`t` of the next update (1 at the first, as in Optax); ``max_lr`` the largest
    :math:`\gamma_i` so far; ``z`` the base optimizer's iterate :math:`z_t`.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Updates
    hyperparams: dict[str, Any]


forwarded(ScheduleFreeState, ("learning_rate",))  # schedule_free writes it into the base's state


def _number(name: str, value: Any) -> Any:
    """``value``, refused with a ``TypeError`` naming ``name`` when it is a schedule."""
    if callable(value):
        raise TypeError(f"{name} must be a number or a 0-d array, got the callable {value!r}")
    return value


def _warmup_steps(value: Any) -> Any:
    """Optax's ``None`` (no warm-up) as 0; otherwise a non-negative integer."""
    if value is None:
        return 0
    _number("warmup_steps", value)
    return check_that("warmup_steps", value, lambda n: n >= 0 and float(n).is_integer(), "a non-negative integer")


def _warmup(warmup_steps: jax.Array, t: jax.Array) -> jax.Array:
    r""":math:`\min(1, t / T_{warmup})`, and 1 without warm-up (:math:`T_{warmup} = 0`)."""
    steps = warmup_steps.astype(float_dtype())
    ramp = jnp.minimum(1, t.astype(float_dtype()) / jnp.where(steps > 0, steps, 1))
    return jnp.where(steps > 0, ramp, 1)


def _average(y: jax.Array, z: jax.Array, b1: jax.Array) -> jax.Array:
    r""":math:`x` from :math:`y = (1-\beta_1) z + \beta_1 x`; with :math:`\beta_1 = 0`, where
    :math:`y = z` and the average cannot be recovered, :math:`y` itself."""
    return jnp.where(b1 > 0, (y - (1 - b1) * z) / jnp.where(b1 > 0, b1, 1), y)


def _with_learning_rate(base_state: Any, value: jax.Array) -> Any:
    """``base_state`` with every plain (unscheduled) ``learning_rate`` hyperparameter set to ``value``."""

    def replace(path, leaf):
        names = [key_name(k) for k in path]
        if names[-2:] == [HYPERPARAMS_FIELD, "learning_rate"] and not isinstance(leaf, Scheduled):
            return value.astype(jnp.asarray(leaf).dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(replace, base_state, is_leaf=lambda x: isinstance(x, Scheduled))


def _check_base_learning_rate(base_state: Any, stored: Any) -> None:
    """Refuse a base whose plain ``learning_rate`` is not this one: it is replaced at every update
    (see :func:`schedule_free`), and a different value would otherwise be dropped silently."""
    ours = stored.value if isinstance(stored, Scheduled) else stored
    found = []

    def visit(path, leaf):
        names = [key_name(k) for k in path]
        if names[-2:] == [HYPERPARAMS_FIELD, "learning_rate"] and not isinstance(leaf, Scheduled):
            found.append(leaf)
        return leaf

    jax.tree_util.tree_map_with_path(visit, base_state, is_leaf=lambda x: isinstance(x, Scheduled))
    for leaf in found:
        try:
            theirs, mine = float(leaf), float(ours)
        except jax.errors.ConcretizationTypeError:  # traced values: nothing to compare before running
            continue
        if abs(theirs - mine) > 1e-6 * max(abs(theirs), abs(mine)):
            raise ValueError(
                f"schedule_free: the base optimizer's learning_rate is {theirs:g} but schedule_free's is {mine:g}; "
                "schedule_free gives the base its own learning rate at every step, so pass the same value to both"
            )


def _schedule_free(
    who: str,
    base: GradientTransformation,
    hp: Hyperparams,
    step_size: Callable[[dict[str, jax.Array], Any, jax.Array], jax.Array],
    descend: bool,
    weight_by_max_lr: bool,
    state_dtype: Any,
) -> GradientTransformation:
    """The three sequences around ``base``. With ``descend``, ``base`` gives the direction
    :math:`d_t` and :math:`z_{t+1} = z_t - \\gamma_t d_t`; otherwise ``base`` gives the whole
    step :math:`z_{t+1} = z_t + u_t` and :math:`\\gamma_t` only weights the average.
    ``step_size(h, base_state, t)`` is :math:`\\gamma_t`."""

    def init(params):
        stored = hp.init()
        z = jax.tree.map(lambda p: jnp.array(p, dtype=moment_dtype(p, state_dtype), copy=True), params)
        weight_sum, max_lr = jnp.zeros((), float_dtype()), jnp.zeros((), float_dtype())
        first = safe_increment(zero_count())
        base_state = base.init(params)
        if not descend:
            _check_base_learning_rate(base_state, stored["learning_rate"])
        b1 = jnp.array(stored["b1"], copy=True)  # a buffer of its own, apart from the hyperparameter's
        return ScheduleFreeState(b1, weight_sum, first, max_lr, base_state, z, stored)

    def update(updates, state, params=None, **extra_args):
        needs_params(who, params, updates)
        check_updates(state.z, updates)
        h = hp.values(state.hyperparams)
        t = state.step_count
        base_state = state.base_optimizer_state
        if not descend:  # the base's own learning rate is this one (see schedule_free)
            base_state = _with_learning_rate(base_state, h["learning_rate"])
        u, base_state = base.update(updates, base_state, params, **extra_args)
        gamma = step_size(h, base_state, t).astype(float_dtype())
        max_lr = jnp.maximum(state.max_lr, gamma)
        weight = (max_lr if weight_by_max_lr else gamma) ** h["weight_lr_power"]
        weight_sum = state.weight_sum + weight
        c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1), 1)

        def leaf(g, y, z, d):
            dtype = compute_dtype(y, z, d)
            b1_then, b1, c_, gamma_ = cast_scalars(dtype, state.b1, h["b1"], c, gamma)
            y_, z_, d_ = y.astype(dtype), z.astype(dtype), d.astype(dtype)
            x = _average(y_, z_, b1_then)  # x_t
            z_next = z_ - gamma_ * d_ if descend else z_ + d_  # z_{t+1}
            x_next = (1 - c_) * x + c_ * z_next  # x_{t+1}
            y_next = (1 - b1) * z_next + b1 * x_next  # y_{t+1}, where the next gradient is taken
            return (y_next - y_).astype(g.dtype), z_next.astype(z.dtype)

        out, z = unzip(jax.tree.map(leaf, updates, params, state.z, u), updates)
        new = ScheduleFreeState(
            h["b1"].astype(state.b1.dtype),
            weight_sum,
            safe_increment(t),
            max_lr,
            base_state,
            z,
            hp.advance(state.hyperparams, t),  # update t (counted from 1) used the schedule at t - 1
        )
        return out, new

    return GradientTransformation(init, update)


def _hyperparams(learning_rate: Any, b1: Any, weight_lr_power: Any, **more: Any) -> Hyperparams:
    check_nonnegative("learning_rate", learning_rate)
    return Hyperparams(
        learning_rate=learning_rate,
        b1=check_decay("b1", _number("b1", b1)),
        weight_lr_power=check_nonnegative("weight_lr_power", _number("weight_lr_power", weight_lr_power)),
        **more,
    )


def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    weight_by_max_lr: bool = False,
) -> GradientTransformation:
    r"""Make any optimizer schedule-free (Defazio et al., 2024, :arxiv:`2405.15682`).

    .. math::
        y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad z_{t+1} = z_t + u_t, \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \qquad
        c_{t+1} = \frac{\gamma_t^p}{\sum_{i \le t} \gamma_i^p}

    with :math:`u_t` the base optimizer's update for the gradient at :math:`y_t` (it is given
    the parameters :math:`y_t`, e.g. for weight decay). The update returned is
    :math:`y_{t+1} - y_t`; evaluate at :func:`schedule_free_eval_params`. The base optimizer
    should have no momentum (the interpolation is the momentum), and its learning rate is
    ``learning_rate``: a ``learning_rate`` hyperparameter kept as a number in the base's state
    is set to this one before every update, so that ``gradtx.set_hyperparams(state,
    learning_rate=...)`` changes the step and the weights together (``init`` refuses a base
    whose number differs, when ``init`` runs outside ``jit``). A hyperparameter of the
    base named ``b1`` is shadowed by this one in :func:`gradtx.hyperparams`.

    Args:
        base_optimizer: the optimizer that moves :math:`z` (e.g. ``gradtx.sgd(lr)``).
        learning_rate: :math:`\gamma_t`, the base's learning rate, which weights the average:
            a number, 0-d array or schedule of the step (update :math:`t`, from 1, uses
            ``learning_rate(t - 1)``, the value the base uses), >= 0.
        b1: the interpolation :math:`\beta_1`, a number or 0-d array in [0, 1); with 0 the
            gradient is taken at :math:`z` and the average :math:`x` is not recoverable
            (:func:`schedule_free_eval_params` then returns the parameters).
        weight_lr_power: the power :math:`p` of the weights, a number or 0-d array, >= 0.
        state_dtype: the dtype of :math:`z`; ``None`` keeps each parameter's.
        weight_by_max_lr: weight by :math:`(\max_{i \le t} \gamma_i)^p` instead of
            :math:`\gamma_t^p`, as Optax and the authors' code do (the two agree while
            :math:`\gamma_t` does not decrease).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.schedule_free import schedule_free, schedule_free_eval_params
        >>> tx = schedule_free(gradtx.sgd(0.5), learning_rate=0.5)
        >>> y = jnp.array([2.0, -4.0])
        >>> state = tx.init(y)
        >>> for _ in range(50):
        ...     updates, state = tx.update(y, state, y)  # the gradient of |y|^2 / 2 at y
        ...     y = gradtx.apply_updates(y, updates)
        >>> x = schedule_free_eval_params(state, y)
        >>> bool(jnp.sum(x**2) < 1e-3)
        True
    """
    hp = _hyperparams(learning_rate, b1, weight_lr_power)
    return _schedule_free(
        "schedule_free", base_optimizer, hp, lambda h, s, t: h["learning_rate"], False, weight_by_max_lr, state_dtype
    )


def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    weight_by_max_lr: bool = False,
) -> GradientTransformation:
    r"""Schedule-free SGD (Defazio et al., 2024, :arxiv:`2405.15682`, SGD form of Algorithm 1).

    .. math::
        y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad
        \gamma_t = \gamma \min(1, t / T_{warmup}), \qquad
        z_{t+1} = z_t - \gamma_t (g_t + \lambda y_t), \\
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \qquad
        c_{t+1} = \frac{\gamma_t^p}{\sum_{i \le t} \gamma_i^p}

    with :math:`g_t` the gradient at :math:`y_t` and :math:`t` counted from 1, so that the first
    step is :math:`\gamma / T_{warmup}` (Optax's warm-up starts at 0 and makes a first step of 0).
    Evaluate at :func:`schedule_free_eval_params`.

    Args:
        learning_rate: :math:`\gamma`, a number, 0-d array or schedule of the step (update
            :math:`t` uses ``learning_rate(t - 1)``), >= 0.
        warmup_steps: :math:`T_{warmup}`, an integer >= 0; ``None`` or 0: no warm-up.
        b1: the interpolation :math:`\beta_1`, a number or 0-d array in [0, 1).
        weight_decay: :math:`\lambda \ge 0`, applied at :math:`y_t`; ``None``: 0.
        weight_lr_power: the power :math:`p` of the weights, a number or 0-d array, >= 0.
        state_dtype: the dtype of :math:`z`; ``None`` keeps each parameter's.
        weight_by_max_lr: weight by :math:`(\max_{i \le t} \gamma_i)^p` (Optax's and the
            authors' code), equal to :math:`\gamma_t^p` while :math:`\gamma_t` does not decrease.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.schedule_free import schedule_free_sgd, schedule_free_eval_params
        >>> tx, y = schedule_free_sgd(0.5, warmup_steps=5), jnp.array([2.0, -4.0])
        >>> state = tx.init(y)
        >>> for _ in range(100):
        ...     updates, state = tx.update(y, state, y)  # the gradient of |y|^2 / 2 at y
        ...     y = gradtx.apply_updates(y, updates)
        >>> x = schedule_free_eval_params(state, y)
        >>> bool(jnp.sum(x**2) < 1e-3)
        True
    """
    hp = _hyperparams(learning_rate, b1, weight_lr_power, warmup_steps=_warmup_steps(warmup_steps))
    decay = 0.0 if weight_decay is None else _number("weight_decay", weight_decay)
    return _schedule_free(
        "schedule_free_sgd",
        add_decayed_weights(decay),
        hp,
        lambda h, s, t: h["learning_rate"] * _warmup(h["warmup_steps"], t),
        True,
        weight_by_max_lr,
        state_dtype,
    )


class ScheduleFreeAdamWState(NamedTuple):
    r"""The base of :func:`schedule_free_adamw`: the step count, the second moment :math:`v`
    (``nu``) and :math:`\beta_2`, :math:`\epsilon`, :math:`\lambda`."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    nu: Updates
    hyperparams: dict[str, Any]


def _adamw_direction(b2: Any, eps: Any, weight_decay: Any, in_denominator: bool) -> GradientTransformation:
    r""":math:`d_t = g_t / (\sqrt{v_t} + \epsilon) + \lambda y_t`, or with :math:`\hat v_t =
    v_t / (1 - \beta_2^t)` in place of :math:`v_t` (``in_denominator``)."""
    hp = Hyperparams(
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        weight_decay=check_nonnegative("weight_decay", weight_decay),
        allow_schedules=False,
    )

    def init(params):
        return ScheduleFreeAdamWState(zero_count(), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.nu)

        def direction(g, v, y):
            dtype = compute_dtype(g, v, y)
            b2, eps, wd = cast_scalars(dtype, h["b2"], h["eps"], h["weight_decay"])
            v = v.astype(real_dtype(dtype))  # real, for complex g too
            if in_denominator:
                v = v / (1 - b2 ** count.astype(b2.dtype))
            return (g.astype(dtype) / (jnp.sqrt(v) + eps) + wd * y.astype(dtype)).astype(g.dtype)

        return jax.tree.map(direction, updates, nu, params), ScheduleFreeAdamWState(count, nu, state.hyperparams)

    return GradientTransformation(init, update)


def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    weight_by_max_lr: bool = False,
    bias_correction_in_denominator: bool = False,
) -> GradientTransformation:
    r"""Schedule-free AdamW (Defazio et al., 2024, :arxiv:`2405.15682`, Algorithm 1).

    .. math::
        y_t = (1-\beta_1) z_t + \beta_1 x_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \gamma_t = \gamma \sqrt{1-\beta_2^t} \min(1, t / T_{warmup}), \\
        z_{t+1} = z_t - \gamma_t \frac{g_t}{\sqrt{v_t} + \epsilon} - \gamma_t \lambda y_t, \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \qquad
        c_{t+1} = \frac{\gamma_t^p}{\sum_{i \le t} \gamma_i^p}

    with :math:`g_t` the gradient at :math:`y_t` and :math:`t` counted from 1. The bias
    correction :math:`\sqrt{1-\beta_2^t}` is part of :math:`\gamma_t`, as in the paper, and so
    enters the weights and the decay; Optax divides :math:`v_t` by :math:`1-\beta_2^t` instead
    (``bias_correction_in_denominator=True``) and starts its warm-up at 0. Evaluate at
    :func:`schedule_free_eval_params`.

    Args:
        learning_rate: :math:`\gamma`, a number, 0-d array or schedule of the step (update
            :math:`t` uses ``learning_rate(t - 1)``), >= 0.
        warmup_steps: :math:`T_{warmup}`, an integer >= 0; ``None`` or 0: no warm-up.
        b1: the interpolation :math:`\beta_1`, a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment, a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root, a number or 0-d array, >= 0.
        weight_decay: :math:`\lambda`, applied at :math:`y_t`, a number or 0-d array, >= 0.
        weight_lr_power: the power :math:`p` of the weights, a number or 0-d array, >= 0.
        state_dtype: the dtype of :math:`z`; ``None`` keeps each parameter's.
        weight_by_max_lr: weight by :math:`(\max_{i \le t} \gamma_i)^p` (Optax's and the
            authors' code), equal to :math:`\gamma_t^p` while :math:`\gamma_t` does not decrease.
        bias_correction_in_denominator: step :math:`z_{t+1} = z_t - \gamma_t (g_t / (\sqrt{\hat v_t}
            + \epsilon) + \lambda y_t)`, :math:`\hat v_t = v_t / (1-\beta_2^t)`, with
            :math:`\gamma_t = \gamma \min(1, t / T_{warmup})` (Optax's placement).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.schedule_free import schedule_free_adamw, schedule_free_eval_params
        >>> tx, y = schedule_free_adamw(0.1), jnp.array([1.0, -2.0])
        >>> state = tx.init(y)
        >>> for _ in range(300):
        ...     updates, state = tx.update(y, state, y)  # the gradient of |y|^2 / 2 at y
        ...     y = gradtx.apply_updates(y, updates)
        >>> x = schedule_free_eval_params(state, y)
        >>> bool(jnp.sum(x**2) < 1e-4)
        True
    """
    hp = _hyperparams(learning_rate, b1, weight_lr_power, warmup_steps=_warmup_steps(warmup_steps))
    base = _adamw_direction(
        _number("b2", b2), _number("eps", eps), _number("weight_decay", weight_decay), bias_correction_in_denominator
    )

    def step_size(h, base_state, t):
        gamma = h["learning_rate"] * _warmup(h["warmup_steps"], t)
        if bias_correction_in_denominator:
            return gamma
        b2_ = Hyperparams.values(base_state.hyperparams)["b2"].astype(float_dtype())
        return gamma * jnp.sqrt(1 - b2_ ** t.astype(float_dtype()))

    return _schedule_free("schedule_free_adamw", base, hp, step_size, True, weight_by_max_lr, state_dtype)


def _find_state(state: Any) -> ScheduleFreeState:
    if isinstance(state, ScheduleFreeState):
        return state
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ScheduleFreeState))
        if isinstance(s, ScheduleFreeState)
    ]
    if len(found) != 1:
        raise TypeError(
            "schedule_free_eval_params needs the state of a schedule-free optimizer (a ScheduleFreeState, "
            f"or a state holding exactly one), got {type(state).__name__} holding {len(found)}"
        )
    return found[0]


def schedule_free_eval_params(state: Any, params: Params) -> Params:
    r"""The point to evaluate: the average :math:`x_t = (y_t - (1-\beta_1) z_t) / \beta_1`.

    :math:`y_t` are the parameters being trained, :math:`z_t` and :math:`\beta_1` are read from
    the state (a :class:`ScheduleFreeState`, or a state such as a chain's holding one). With
    :math:`\beta_1 = 0` the average is not recoverable and the parameters are returned.

    Args:
        state: the optimizer state after the update that produced ``params``.
        params: the current parameters :math:`y_t`, the tree the state was built for.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.schedule_free import schedule_free_sgd, schedule_free_eval_params
        >>> tx, y = schedule_free_sgd(1.0, b1=0.5), jnp.array([1.0])
        >>> updates, state = tx.update(jnp.array([1.0]), tx.init(y), y)  # z = x = 0, y = 0
        >>> y = y + updates
        >>> updates, state = tx.update(jnp.array([1.0]), state, y)  # z = -1, x = -0.5
        >>> schedule_free_eval_params(state, y + updates).tolist()
        [-0.5]
    """
    sf = _find_state(state)
    check_same_structure(sf.z, params, "the tree this state was built for", "the parameters")

    def leaf(y, z):
        dtype = compute_dtype(y, z)
        (b1,) = cast_scalars(dtype, sf.b1)
        return _average(y.astype(dtype), z.astype(dtype), b1).astype(y.dtype)

    return jax.tree.map(leaf, params, sf.z)
