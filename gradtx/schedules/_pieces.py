"""What the schedules share: the checks of their step arguments and the shapes they are built from
(a step as a float, linear, cosine and square-root ramps, interpolation between knots, staircases)."""

from __future__ import annotations

import itertools
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# ------------------------------------------------------------------ argument checks


def sorted_steps(name: str, steps: Sequence[Any]) -> None:
    """Steps (boundaries, milestones) must be non-negative and non-decreasing."""
    given = [s for s in steps if isinstance(s, numbers.Real)]
    if any(s < 0 for s in given) or any(b < a for a, b in zip(given, given[1:])):
        raise ValueError(f"{name} must be non-negative steps in increasing order, got {name}={list(steps)!r}")


def split_boundaries_and_scales(mapping: Mapping[Any, Any] | None) -> tuple[list, list]:
    """The ``{step: scale}`` dict of the piecewise schedules, sorted by step and checked."""
    items = sorted((mapping or {}).items())
    for what, index in (("steps", 0), ("scales", 1)):
        if any(isinstance(item[index], numbers.Real) and item[index] < 0 for item in items):
            raise ValueError(
                f"boundaries_and_scales must have non-negative {what}, got boundaries_and_scales={mapping!r}"
            )
    return [b for b, _ in items], [s for _, s in items]


# ------------------------------------------------------------------ shared pieces


def float_step(step: Any) -> jax.Array:
    return jnp.asarray(step, dtype=float)


# Shapes of a transition: the fraction of the way still to go, 1 at frac=0 and 0 at frac=1.
def linear_shape(frac):
    return 1.0 - frac


def cosine_shape(frac):
    return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def sqrt_shape(frac):
    return 1.0 - jnp.sqrt(frac)


def blend(start, end, shape, frac):
    """The value ``shape``-interpolated from ``start`` (frac=0) to ``end`` (frac=1)."""
    return end + (start - end) * shape(frac)


def interpolate(t: jax.Array, knots: Sequence[tuple[Any, Any]], shapes: Sequence[Callable]) -> jax.Array:
    """The curve through ``knots = [(t_0, v_0), (t_1, v_1), ...]`` (``t_i`` non-decreasing).

    ``v_0`` before ``t_0``; on ``[t_i, t_{i+1})`` the ``shapes[i]`` blend of ``v_i`` and
    ``v_{i+1}`` at ``frac = (t - t_i) / (t_{i+1} - t_i)``; ``v_last`` from the last knot on.
    An interval of length zero is a jump.
    """
    out = knots[0][1] + jnp.zeros_like(t)
    for (ta, va), (tb, vb), shape in zip(knots, knots[1:], shapes):
        frac = jnp.clip((t - ta) / jnp.where(tb > ta, tb - ta, 1), 0.0, 1.0)
        out = jnp.where(t < ta, out, jnp.where(t < tb, blend(va, vb, shape, frac), vb))
    return out


def staircase(t: jax.Array, boundaries: Sequence[Any], values: Sequence[Any]) -> jax.Array:
    """``values[0]`` before ``boundaries[0]``, then ``values[i + 1]`` from ``boundaries[i]`` on."""
    out = values[0] + jnp.zeros_like(t)
    for boundary, value in zip(boundaries, values[1:]):
        out = jnp.where(t < boundary, out, value)
    return out


def cumulative(init_value: Any, factors: Iterable[Any]) -> list:
    """``[v, v*f_0, v*f_0*f_1, ...]``: the value after each multiplicative step."""
    return list(itertools.accumulate([init_value, *factors], operator.mul))
