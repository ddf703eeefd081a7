"""The schedules known by their ``torch.optim.lr_scheduler`` class names (step, multi-step, cyclic,
cosine annealing with warm restarts), inverse square root and warmup-stable-decay; each docstring
names its torch equivalent."""

from __future__ import annotations

import math

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
    blend,
    cosine_shape,
    cumulative,
    float_step,
    interpolate,
    linear_shape,
    sorted_steps,
    sqrt_shape,
    staircase,
)

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
    return lambda step: init_value * jnp.power(gamma, jnp.floor(float_step(step) / step_size))


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
    sorted_steps("milestones", milestones)
    check_nonnegative("gamma", python_number(gamma))
    values = cumulative(init_value, [gamma] * len(milestones))
    return lambda step: staircase(float_step(step), milestones, values)


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
        t = float_step(step)
        n = jnp.floor(t / cycle)
        height = interpolate(t - n * cycle, triangle, [linear_shape, linear_shape])
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
        t = jnp.maximum(float_step(step), 0.0)
        if period_mult == 1:
            k = jnp.floor(t / period)
        else:
            k = jnp.floor(jnp.log1p(t * (period_mult - 1) / period) / math.log(period_mult))
            # The logarithm can round across a restart; one step either way puts it right.
            k = jnp.where(t >= start(k + 1), k + 1, jnp.where(t < start(k), k - 1, k))
        frac = (t - start(k)) / (period * period_mult**k)
        return blend(init_value, min_value, cosine_shape, frac)

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
        t = jnp.maximum(float_step(step), 0.0)
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
    shapes = [
        linear_shape,
        linear_shape,
        {"linear": linear_shape, "cosine": cosine_shape, "sqrt": sqrt_shape}[decay_type],
    ]
    return lambda step: interpolate(float_step(step), knots, shapes)
