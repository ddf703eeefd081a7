"""The schedules under Optax's names and keyword arguments: constant, polynomial, linear,
exponential and cosine decays, their warm-up versions, piecewise schedules, one-cycle, joins and SGDR."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from gradtx.core.aliases import Schedule
from gradtx.core.validation import (
    check_nonnegative,
    check_one_of,
    check_positive,
    check_that,
    python_number,
)
from gradtx.schedules._pieces import (
    cosine_shape,
    cumulative,
    float_step,
    interpolate,
    linear_shape,
    sorted_steps,
    split_boundaries_and_scales,
    staircase,
)

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
    return lambda step: interpolate(float_step(step), knots, [lambda s: (1.0 - s) ** power])


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
        t = float_step(step) - transition_begin
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
    return lambda step: interpolate(float_step(step), knots, [lambda s: cosine_shape(s) ** exponent])


def warmup_constant_schedule(init_value, peak_value, warmup_steps) -> Schedule:
    """A linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then ``peak_value``.

    Example:
        >>> sched = warmup_constant_schedule(init_value=0.0, peak_value=1.0, warmup_steps=4)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 4, 100)]
        [0.0, 0.25, 1.0, 1.0]
    """
    check_nonnegative("warmup_steps", python_number(warmup_steps))
    knots = [(0, init_value), (warmup_steps, peak_value)]
    return lambda step: interpolate(float_step(step), knots, [linear_shape])


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
    return lambda step: interpolate(float_step(step), knots, [linear_shape, lambda s: cosine_shape(s) ** exponent])


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
    boundaries, scales = split_boundaries_and_scales(boundaries_and_scales)
    values = cumulative(init_value, scales)
    return lambda step: staircase(float_step(step), boundaries, values)


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
    boundaries, scales = split_boundaries_and_scales(boundaries_and_scales)
    knots = list(zip([0, *boundaries], cumulative(init_value, scales)))
    shapes = [linear_shape if interpolate_type == "linear" else cosine_shape] * len(boundaries)
    return lambda step: interpolate(float_step(step), knots, shapes)


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
    return lambda step: interpolate(float_step(step), knots, [linear_shape] * 3)


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
    return lambda step: interpolate(float_step(step), knots, [cosine_shape] * 2)


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
    sorted_steps("boundaries", boundaries)

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
