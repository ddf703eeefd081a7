"""Schedules: pure functions ``step -> value`` for learning rates and other hyperparameters.

A schedule takes a step count (a Python int or float, or an integer array, traced under
``jax.jit`` or not) and returns a jax array of the same shape, 0-d for a scalar step. Pass
one wherever a hyperparameter accepts a schedule, most often ``learning_rate=``.

The first group keeps Optax's names and keyword arguments, so moving a project over is a
change of import. The second group adds the schedules known by their
``torch.optim.lr_scheduler`` class name; each docstring names its torch equivalent.

Steps are evaluated in floating point, so a Python int beyond the int32 range is fine.
Arguments given as Python numbers are checked when the schedule is built, and a bad one
raises ``ValueError`` naming it; arguments given as jax arrays are taken as they are.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Schedule
from gradtx.core.validation import (
    check_nonnegative,
    check_one_of,
    check_positive,
    check_that,
    python_number,
)
from gradtx.transforms.injection import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    StatefulSchedule,
    WrappedSchedule,
    inject_hyperparams,
    inject_stateful_hyperparams,
)

__all__ = [
    "Schedule",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "StatefulSchedule",
    "WrappedSchedule",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "constant_schedule",
    "polynomial_schedule",
    "linear_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "linear_onecycle_schedule",
    "cosine_onecycle_schedule",
    "join_schedules",
    "sgdr_schedule",
    "step_decay_schedule",
    "multistep_decay_schedule",
    "cyclic_schedule",
    "cosine_annealing_warm_restarts_schedule",
    "inverse_sqrt_schedule",
    "warmup_stable_decay_schedule",
]


# ------------------------------------------------------------------ argument checks


def _sorted_steps(name: str, steps: Sequence[Any]) -> None:
    """Steps (boundaries, milestones) must be non-negative and non-decreasing."""
    given = [s for s in steps if isinstance(s, numbers.Real)]
    if any(s < 0 for s in given) or any(b < a for a, b in zip(given, given[1:])):
        raise ValueError(f"{name} must be non-negative steps in increasing order, got {name}={list(steps)!r}")


def _boundaries_and_scales(mapping: Mapping[Any, Any] | None) -> tuple[list, list]:
    """The ``{step: scale}`` dict of the piecewise schedules, sorted by step and checked."""
    items = sorted((mapping or {}).items())
    for what, index in (("steps", 0), ("scales", 1)):
        if any(isinstance(item[index], numbers.Real) and item[index] < 0 for item in items):
            raise ValueError(
                f"boundaries_and_scales must have non-negative {what}, got boundaries_and_scales={mapping!r}"
            )
    return [b for b, _ in items], [s for _, s in items]


# ------------------------------------------------------------------ shared pieces


def _float(step: Any) -> jax.Array:
    return jnp.asarray(step, dtype=float)


# Shapes of a transition: the fraction of the way still to go, 1 at frac=0 and 0 at frac=1.
def _linear(frac):
    return 1.0 - frac


def _cosine(frac):
    return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def _sqrt(frac):
    return 1.0 - jnp.sqrt(frac)


def _blend(start, end, shape, frac):
    """The value ``shape``-interpolated from ``start`` (frac=0) to ``end`` (frac=1)."""
    return end + (start - end) * shape(frac)


def _interpolate(t: jax.Array, knots: Sequence[tuple[Any, Any]], shapes: Sequence[Callable]) -> jax.Array:
    """The curve through ``knots = [(t_0, v_0), (t_1, v_1), ...]`` (``t_i`` non-decreasing).

    ``v_0`` before ``t_0``; on ``[t_i, t_{i+1})`` the ``shapes[i]`` blend of ``v_i`` and
    ``v_{i+1}`` at ``frac = (t - t_i) / (t_{i+1} - t_i)``; ``v_last`` from the last knot on.
    An interval of length zero is a jump.
    """
    out = knots[0][1] + jnp.zeros_like(t)
    for (ta, va), (tb, vb), shape in zip(knots, knots[1:], shapes):
        frac = jnp.clip((t - ta) / jnp.where(tb > ta, tb - ta, 1), 0.0, 1.0)
        out = jnp.where(t < ta, out, jnp.where(t < tb, _blend(va, vb, shape, frac), vb))
    return out


def _staircase(t: jax.Array, boundaries: Sequence[Any], values: Sequence[Any]) -> jax.Array:
    """``values[0]`` before ``boundaries[0]``, then ``values[i + 1]`` from ``boundaries[i]`` on."""
    out = values[0] + jnp.zeros_like(t)
    for boundary, value in zip(boundaries, values[1:]):
        out = jnp.where(t < boundary, out, value)
    return out


def _cumulative(init_value: Any, factors: Iterable[Any]) -> list:
    """``[v, v*f_0, v*f_0*f_1, ...]``: the value after each multiplicative step."""
    return list(itertools.accumulate([init_value, *factors], operator.mul))


# ------------------------------------------------------------------ Optax-named schedules


def constant_schedule(value: Any) -> Schedule:
    """``value`` at every step.

    Example:
        >>> float(constant_schedule(0.5)(1000))
        0.5
    """
    return lambda step: jnp.full(jnp.shape(step), value, jnp.result_type(value, float))


def polynomial_schedule(init_value, end_value, power, transition_steps, transition_begin=0) -> Schedule:
    """From ``init_value`` to ``end_value`` along a polynomial of degree ``power``.

    With ``B = transition_begin``, ``T = transition_steps`` and ``s = clip((t - B) / T, 0, 1)``::

        value(t) = end_value + (init_value - end_value) * (1 - s) ** power

    Example:
        >>> sched = polynomial_schedule(init_value=1.0, end_value=0.0, power=2, transition_steps=10)
        >>> [round(float(sched(t)), 4) for t in (0, 5, 10, 20)]
        [1.0, 0.25, 0.0, 0.0]
    """
    check_positive("transition_steps", python_number(transition_steps))
    check_nonnegative("transition_begin", python_number(transition_begin))
    knots = [(transition_begin, init_value), (transition_begin + transition_steps, end_value)]
    return lambda step: _interpolate(_float(step), knots, [lambda s: (1.0 - s) ** power])


def linear_schedule(init_value, end_value, transition_steps, transition_begin=0) -> Schedule:
    """From ``init_value`` to ``end_value`` in a straight line: ``polynomial_schedule`` with ``power=1``.

    Example:
        >>> sched = linear_schedule(init_value=1.0, end_value=0.1, transition_steps=10, transition_begin=5)
        >>> [round(float(sched(t)), 4) for t in (0, 5, 10, 15, 20)]
        [1.0, 1.0, 0.55, 0.1, 0.1]
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(
    init_value, transition_steps, decay_rate, transition_begin=0, staircase=False, end_value=None
) -> Schedule:
    """``init_value`` multiplied by ``decay_rate`` every ``transition_steps`` steps.

    With ``B = transition_begin`` and ``p = (t - B) / transition_steps`` (floored when
    ``staircase``)::

        value(t) = init_value                       for t <= B
                 = init_value * decay_rate ** p     after,

    bounded below by ``end_value`` when ``decay_rate < 1`` (above when ``decay_rate > 1``).
    Unlike Optax, ``decay_rate=0`` is an error rather than a constant schedule.

    Example:
        >>> sched = exponential_decay(init_value=1.0, transition_steps=10, decay_rate=0.5, end_value=0.2)
        >>> [round(float(sched(t)), 4) for t in (0, 5, 10, 20, 30)]
        [1.0, 0.7071, 0.5, 0.25, 0.2]
    """
    check_positive("transition_steps", python_number(transition_steps))
    check_positive("decay_rate", python_number(decay_rate))
    check_nonnegative("transition_begin", python_number(transition_begin))

    def schedule(step):
        t = _float(step) - transition_begin
        p = jnp.floor(t / transition_steps) if staircase else t / transition_steps
        value = jnp.where(t <= 0, init_value, init_value * jnp.power(decay_rate, p))
        if end_value is not None:
            value = jnp.where(decay_rate < 1, jnp.maximum(value, end_value), jnp.minimum(value, end_value))
        return value

    return schedule


def cosine_decay_schedule(init_value, decay_steps, alpha=0.0, exponent=1.0) -> Schedule:
    """Half a cosine from ``init_value`` down to ``alpha * init_value`` (Loshchilov & Hutter, 2017).

    With ``s = min(t, decay_steps) / decay_steps``::

        value(t) = init_value * (alpha + (1 - alpha) * (0.5 * (1 + cos(pi * s))) ** exponent)

    Example:
        >>> sched = cosine_decay_schedule(init_value=1.0, decay_steps=10, alpha=0.1)
        >>> [round(float(sched(t)), 4) for t in (0, 5, 10, 20)]
        [1.0, 0.55, 0.1, 0.1]
    """
    check_positive("decay_steps", python_number(decay_steps))
    knots = [(0, init_value), (decay_steps, alpha * init_value)]
    return lambda step: _interpolate(_float(step), knots, [lambda s: _cosine(s) ** exponent])


def warmup_constant_schedule(init_value, peak_value, warmup_steps) -> Schedule:
    """A linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then ``peak_value``.

    Example:
        >>> sched = warmup_constant_schedule(init_value=0.0, peak_value=1.0, warmup_steps=4)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 4, 100)]
        [0.0, 0.25, 1.0, 1.0]
    """
    check_nonnegative("warmup_steps", python_number(warmup_steps))
    knots = [(0, init_value), (warmup_steps, peak_value)]
    return lambda step: _interpolate(_float(step), knots, [_linear])


def warmup_cosine_decay_schedule(
    init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0
) -> Schedule:
    """A linear warmup to ``peak_value``, then a cosine decay to ``end_value``.

    ``decay_steps`` counts the whole schedule, warmup included (as in Optax). With
    ``W = warmup_steps``, ``D = decay_steps`` and ``s = clip((t - W) / (D - W), 0, 1)``::

        value(t) = init_value + (peak_value - init_value) * t / W               for t < W
                 = end_value + (peak_value - end_value) * (0.5 * (1 + cos(pi * s))) ** exponent

    Example:
        >>> sched = warmup_cosine_decay_schedule(0.0, peak_value=1.0, warmup_steps=2, decay_steps=12)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 7, 12, 50)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    check_nonnegative("warmup_steps", python_number(warmup_steps))
    if isinstance(warmup_steps, numbers.Real):
        check_that(
            "decay_steps",
            python_number(decay_steps),
            lambda d: d > warmup_steps,
            f"greater than warmup_steps={warmup_steps!r}",
        )
    knots = [(0, init_value), (warmup_steps, peak_value), (decay_steps, end_value)]
    return lambda step: _interpolate(_float(step), knots, [_linear, lambda s: _cosine(s) ** exponent])


def warmup_exponential_decay_schedule(
    init_value,
    peak_value,
    warmup_steps,
    transition_steps,
    decay_rate,
    transition_begin=0,
    staircase=False,
    end_value=None,
) -> Schedule:
    """A linear warmup to ``peak_value``, then ``exponential_decay`` from it (its step counted from ``warmup_steps``).

    Example:
        >>> sched = warmup_exponential_decay_schedule(0.0, 1.0, warmup_steps=2, transition_steps=1, decay_rate=0.5)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 3, 4)]
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    return join_schedules(
        [
            warmup_constant_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value),
        ],
        [warmup_steps],
    )


def piecewise_constant_schedule(init_value, boundaries_and_scales=None) -> Schedule:
    """``init_value`` times the product of the scales of all boundaries reached.

    ``value(t) = init_value * prod(scale for boundary, scale in boundaries_and_scales.items() if t >= boundary)``

    Example:
        >>> sched = piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.5})
        >>> [round(float(sched(t)), 4) for t in (0, 9, 10, 20, 99)]
        [1.0, 1.0, 0.1, 0.05, 0.05]
    """
    boundaries, scales = _boundaries_and_scales(boundaries_and_scales)
    values = _cumulative(init_value, scales)
    return lambda step: _staircase(_float(step), boundaries, values)


def piecewise_interpolate_schedule(interpolate_type, init_value, boundaries_and_scales=None) -> Schedule:
    """Like ``piecewise_constant_schedule``, but reaching each new value by a linear or cosine ramp.

    The value at boundary ``b_i`` is ``v_i = init_value * s_0 * ... * s_i``; between ``b_{i-1}``
    (``b_{-1} = 0``, ``v_{-1} = init_value``) and ``b_i`` it goes from ``v_{i-1}`` to ``v_i``
    linearly or along half a cosine (``interpolate_type``: ``'linear'`` or ``'cosine'``).

    Example:
        >>> sched = piecewise_interpolate_schedule('linear', 1.0, {4: 0.5, 8: 0.0})
        >>> [round(float(sched(t)), 4) for t in (0, 2, 4, 6, 8, 10)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    check_one_of("interpolate_type", interpolate_type, ("linear", "cosine"))
    boundaries, scales = _boundaries_and_scales(boundaries_and_scales)
    knots = list(zip([0, *boundaries], _cumulative(init_value, scales)))
    shapes = [_linear if interpolate_type == "linear" else _cosine] * len(boundaries)
    return lambda step: _interpolate(_float(step), knots, shapes)


def _onecycle_checks(transition_steps, pct_start, div_factor, final_div_factor) -> None:
    check_positive("transition_steps", python_number(transition_steps))
    check_that("pct_start", python_number(pct_start), lambda p: 0 < p < 1, "in (0, 1)")
    check_positive("div_factor", python_number(div_factor))
    check_positive("final_div_factor", python_number(final_div_factor))


def linear_onecycle_schedule(
    transition_steps, peak_value, pct_start=0.3, pct_final=0.85, div_factor=25.0, final_div_factor=1e4
) -> Schedule:
    """The one-cycle policy in three linear phases (Smith & Topin, 2017).

    With ``T = transition_steps`` and ``v0 = peak_value / div_factor``: from ``v0`` up to
    ``peak_value`` by step ``int(pct_start * T)``, back down to ``v0`` by
    ``int(pct_final * T)``, then down to ``v0 / final_div_factor`` by step ``T``.

    Example:
        >>> sched = linear_onecycle_schedule(10, peak_value=1.0, pct_start=0.2, pct_final=0.6, div_factor=10)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 4, 6, 10)]
        [0.1, 0.55, 1.0, 0.55, 0.1, 0.0]
    """
    _onecycle_checks(transition_steps, pct_start, div_factor, final_div_factor)
    check_that("pct_final", python_number(pct_final), lambda p: pct_start < p <= 1, f"in (pct_start={pct_start!r}, 1]")
    v0 = peak_value / div_factor
    knots = [
        (0, v0),
        (int(pct_start * transition_steps), peak_value),
        (int(pct_final * transition_steps), v0),
        (transition_steps, v0 / final_div_factor),
    ]
    return lambda step: _interpolate(_float(step), knots, [_linear] * 3)


def cosine_onecycle_schedule(
    transition_steps, peak_value, pct_start=0.3, div_factor=25.0, final_div_factor=1e4
) -> Schedule:
    """The one-cycle policy with cosine ramps (Smith & Topin, 2017; torch's ``OneCycleLR``).

    With ``T = transition_steps`` and ``v0 = peak_value / div_factor``: half a cosine from
    ``v0`` up to ``peak_value`` by step ``int(pct_start * T)``, then down to
    ``v0 / final_div_factor`` by step ``T``.

    Example:
        >>> sched = cosine_onecycle_schedule(10, peak_value=1.0, pct_start=0.2, div_factor=10)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 6, 10)]
        [0.1, 0.55, 1.0, 0.5, 0.0]
    """
    _onecycle_checks(transition_steps, pct_start, div_factor, final_div_factor)
    v0 = peak_value / div_factor
    knots = [(0, v0), (int(pct_start * transition_steps), peak_value), (transition_steps, v0 / final_div_factor)]
    return lambda step: _interpolate(_float(step), knots, [_cosine] * 2)


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[Any]) -> Schedule:
    """``schedules[0]`` before ``boundaries[0]``, then ``schedules[i + 1](t - boundaries[i])`` from it on.

    Each later schedule counts its steps from its own boundary.

    Example:
        >>> sched = join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 4)], [10])
        >>> [round(float(sched(t)), 4) for t in (0, 9, 10, 12, 20)]
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules:
        raise ValueError("schedules must not be empty, got schedules=[]")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"boundaries must have one entry fewer than schedules ({len(schedules)}), got boundaries={boundaries!r}"
        )
    _sorted_steps("boundaries", boundaries)

    def schedule(step):
        out = jnp.asarray(schedules[0](step))
        for boundary, later in zip(boundaries, schedules[1:]):
            out = jnp.where(step < boundary, out, later(step - boundary))
        return out

    return schedule


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    """Stochastic gradient descent with warm restarts (Loshchilov & Hutter, 2017).

    One ``warmup_cosine_decay_schedule(**kwargs)`` per entry of ``cosine_kwargs``, joined
    end to end: each starts when the previous one's ``decay_steps`` have passed.

    Example:
        >>> sched = sgdr_schedule([dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=4)] * 2)
        >>> [round(float(sched(t)), 4) for t in (0, 2, 4, 6, 8)]
        [1.0, 0.5, 1.0, 0.5, 0.0]
    """
    cosine_kwargs = [dict(kwargs) for kwargs in cosine_kwargs]
    if not cosine_kwargs:
        raise ValueError("cosine_kwargs must not be empty, got cosine_kwargs=[]")
    starts = list(itertools.accumulate(kwargs["decay_steps"] for kwargs in cosine_kwargs))[:-1]
    return join_schedules([warmup_cosine_decay_schedule(**kwargs) for kwargs in cosine_kwargs], starts)


# ------------------------------------------------------------------ torch-named schedules


def step_decay_schedule(init_value, step_size, gamma=0.1) -> Schedule:
    """``init_value`` multiplied by ``gamma`` every ``step_size`` steps; torch's ``StepLR``.

    ``value(t) = init_value * gamma ** floor(t / step_size)``

    Example:
        >>> sched = step_decay_schedule(1.0, step_size=10, gamma=0.5)
        >>> [round(float(sched(t)), 4) for t in (0, 9, 10, 25)]
        [1.0, 1.0, 0.5, 0.25]
    """
    check_positive("step_size", python_number(step_size))
    check_nonnegative("gamma", python_number(gamma))
    return lambda step: init_value * jnp.power(gamma, jnp.floor(_float(step) / step_size))


def multistep_decay_schedule(init_value, milestones, gamma=0.1) -> Schedule:
    """``init_value`` multiplied by ``gamma`` at each milestone reached; torch's ``MultiStepLR``.

    ``value(t) = init_value * gamma ** (number of milestones m with m <= t)``; a milestone
    listed twice counts twice, as in torch.

    Example:
        >>> sched = multistep_decay_schedule(1.0, milestones=[10, 15], gamma=0.5)
        >>> [round(float(sched(t)), 4) for t in (0, 10, 14, 15, 99)]
        [1.0, 0.5, 0.5, 0.25, 0.25]
    """
    milestones = list(milestones)
    _sorted_steps("milestones", milestones)
    check_nonnegative("gamma", python_number(gamma))
    values = _cumulative(init_value, [gamma] * len(milestones))
    return lambda step: _staircase(_float(step), milestones, values)


def cyclic_schedule(base_value, max_value, step_size_up, step_size_down=None, mode="triangular", gamma=1.0) -> Schedule:
    """Triangle waves between ``base_value`` and ``max_value`` (Smith, 2017); torch's ``CyclicLR``.

    Each cycle rises linearly for ``step_size_up`` steps and falls for ``step_size_down``
    (default: the same). With ``n`` the number of completed cycles and ``h(t)`` the triangle
    (0 at the start of a cycle, 1 at its peak)::

        value(t) = base_value + (max_value - base_value) * h(t) * a

    where ``a`` is 1 (``mode='triangular'``), ``0.5 ** n`` (``'triangular2'``) or ``gamma ** t``
    (``'exp_range'``).

    Example:
        >>> sched = cyclic_schedule(0.0, 1.0, step_size_up=2, mode='triangular2')
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 3, 4, 6, 8, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.5, 0.0, 0.25]
    """
    step_size_down = step_size_up if step_size_down is None else step_size_down
    check_positive("step_size_up", python_number(step_size_up))
    check_positive("step_size_down", python_number(step_size_down))
    check_one_of("mode", mode, ("triangular", "triangular2", "exp_range"))
    check_nonnegative("gamma", python_number(gamma))
    cycle = step_size_up + step_size_down
    triangle = [(0, 0.0), (step_size_up, 1.0), (cycle, 0.0)]

    def schedule(step):
        t = _float(step)
        n = jnp.floor(t / cycle)
        height = _interpolate(t - n * cycle, triangle, [_linear, _linear])
        if mode == "triangular2":
            height = height * 0.5**n
        elif mode == "exp_range":
            height = height * jnp.power(gamma, t)
        return base_value + (max_value - base_value) * height

    return schedule


def cosine_annealing_warm_restarts_schedule(init_value, period, period_mult=1, min_value=0.0) -> Schedule:
    """Cosine decays from ``init_value`` to ``min_value``, restarted at the end of each period;
    torch's ``CosineAnnealingWarmRestarts`` (``T_0 = period``, ``T_mult = period_mult``,
    ``eta_min = min_value``; Loshchilov & Hutter, 2017).

    Period ``k`` lasts ``P_k = period * period_mult ** k`` steps and starts at
    ``S_k = period * (period_mult ** k - 1) / (period_mult - 1)`` (``period * k`` when
    ``period_mult == 1``). For ``t`` in period ``k``, found in closed form with a logarithm::

        value(t) = min_value + (init_value - min_value) * 0.5 * (1 + cos(pi * (t - S_k) / P_k))

    Example:
        >>> sched = cosine_annealing_warm_restarts_schedule(1.0, period=2, period_mult=2)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 3, 4, 5, 6)]
        [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
    """
    check_positive("period", python_number(period))
    check_that("period_mult", python_number(period_mult), lambda m: m >= 1 and float(m).is_integer(), "an integer >= 1")

    def start(k):
        return period * k if period_mult == 1 else period * (period_mult**k - 1) / (period_mult - 1)

    def schedule(step):
        t = jnp.maximum(_float(step), 0.0)
        if period_mult == 1:
            k = jnp.floor(t / period)
        else:
            k = jnp.floor(jnp.log1p(t * (period_mult - 1) / period) / math.log(period_mult))
            # The logarithm can round across a restart; one step either way puts it right.
            k = jnp.where(t >= start(k + 1), k + 1, jnp.where(t < start(k), k - 1, k))
        frac = (t - start(k)) / (period * period_mult**k)
        return _blend(init_value, min_value, _cosine, frac)

    return schedule


def inverse_sqrt_schedule(peak_value, warmup_steps) -> Schedule:
    """A linear warmup to ``peak_value``, then decay as ``1 / sqrt(t)``: the Transformer schedule.

    ``value(t) = peak_value * min(t / warmup_steps, sqrt(warmup_steps / t))``

    "Attention is all you need" (Vaswani et al., 2017) writes it
    ``d_model ** -0.5 * min(t ** -0.5, t * warmup_steps ** -1.5)``, which is this schedule with
    ``peak_value = (d_model * warmup_steps) ** -0.5``. In torch it is usually a ``LambdaLR``.

    Example:
        >>> sched = inverse_sqrt_schedule(peak_value=1.0, warmup_steps=4)
        >>> [round(float(sched(t)), 4) for t in (0, 2, 4, 16, 64)]
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    check_positive("warmup_steps", python_number(warmup_steps))

    def schedule(step):
        t = jnp.maximum(_float(step), 0.0)
        rise = t / warmup_steps
        return peak_value * jnp.where(rise < 1, rise, jnp.sqrt(warmup_steps / jnp.maximum(t, warmup_steps)))

    return schedule


def warmup_stable_decay_schedule(
    peak_value, warmup_steps, stable_steps, decay_steps, init_value=0.0, end_value=0.0, decay_type="linear"
) -> Schedule:
    """Warmup, stable, decay (WSD; Hu et al., 2024, MiniCPM), the schedule of many LLM runs.

    A linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, ``peak_value``
    for ``stable_steps``, then a decay to ``end_value`` over ``decay_steps``: with ``s`` the
    fraction of the decay done, ``value = end_value + (peak_value - end_value) * r(s)`` where
    ``r(s)`` is ``1 - s`` (``'linear'``), ``0.5 * (1 + cos(pi * s))`` (``'cosine'``) or
    ``1 - sqrt(s)`` (``'sqrt'``, Hägele et al., 2024). torch has no class for it.

    Example:
        >>> sched = warmup_stable_decay_schedule(1.0, warmup_steps=2, stable_steps=4, decay_steps=4)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 2, 6, 8, 10, 20)]
        [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    check_nonnegative("warmup_steps", python_number(warmup_steps))
    check_nonnegative("stable_steps", python_number(stable_steps))
    check_positive("decay_steps", python_number(decay_steps))
    check_one_of("decay_type", decay_type, ("linear", "cosine", "sqrt"))
    decay_start = warmup_steps + stable_steps
    knots = [
        (0, init_value),
        (warmup_steps, peak_value),
        (decay_start, peak_value),
        (decay_start + decay_steps, end_value),
    ]
    shapes = [_linear, _linear, {"linear": _linear, "cosine": _cosine, "sqrt": _sqrt}[decay_type]]
    return lambda step: _interpolate(_float(step), knots, shapes)
