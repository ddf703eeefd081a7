"""Checks of the arguments an optimizer is built with, in one message format.

Every check names the argument and the value it got, ``"<name> must be <requirement>, got
<value>"``, and returns the value unchanged so that it can be used inline. A value that is not
known when the optimizer is built (a schedule, an array traced under ``jit``) passes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def _is_concrete_number(value: Any) -> bool:
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, bool)


def concrete_value(value: Any) -> Any:
    """``value`` as a Python number when it is one, or a 0-d numeric array whose value is
    known now (not traced under ``jit``); otherwise None.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.validation import concrete_value
        >>> concrete_value(jnp.asarray(0.5)), concrete_value(lambda step: 0.5)
        (0.5, None)
    """
    if _is_concrete_number(value):
        return value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, (jax.Array, np.ndarray)) or np.ndim(value) != 0 or value.dtype == bool:
        return None
    try:
        return np.asarray(value).item()
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def python_number(value: Any) -> Any:
    """``value`` when it is a Python number, else None: for the checks that leave every array to
    the caller, as the schedules do (their arguments are often arrays traced inside a step).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.validation import check_positive, python_number
        >>> check_positive("transition_steps", python_number(jnp.asarray(0)))  # an array: not checked
    """
    return value if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """Validate a hyperparameter given as a number or a 0-d array; schedules and traced values pass.

    Raises ``ValueError`` naming the argument and its value when it lies outside
    ``[low, high]`` (``(low`` / ``high)`` when open), or is not finite. A value
    traced under ``jit`` is not known when the optimizer is built, and passes.

    Example:
        >>> from gradtx.core.validation import check_range
        >>> check_range("b1", 1.5, 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: b1 must be in [0.0, 1.0), got 1.5
    """
    number = None if callable(value) else concrete_value(value)
    if number is None:
        return value
    if isinstance(number, complex):
        raise ValueError(f"{name} must be a real number, got {number!r}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above or not np.isfinite(number):
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        opening = "(" if low_open or low is None else "["
        closing = ")" if high_open or high is None else "]"
        raise ValueError(f"{name} must be in {opening}{lo}, {hi}{closing}, got {number!r}")
    return value


def check_decay(name: str, value: Any) -> Any:
    """A decay rate or momentum: a number in ``[0, 1)``."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_nonnegative(name: str, value: Any) -> Any:
    """A number ``>= 0`` (eps, weight decay, ...)."""
    return check_range(name, value, 0.0)


def check_positive(name: str, value: Any) -> Any:
    """A number ``> 0`` (a clipping threshold, ...)."""
    return check_range(name, value, 0.0, low_open=True)


def check_that(name: str, value: Any, ok: Callable[[Any], bool], requirement: str) -> Any:
    """A number that must satisfy ``ok``, which ``requirement`` says in words; other values pass.

    Example:
        >>> from gradtx.core.validation import check_that
        >>> check_that("pct_start", 1.5, lambda p: 0 < p < 1, "in (0, 1)")
        Traceback (most recent call last):
        ...
        ValueError: pct_start must be in (0, 1), got 1.5
    """
    number = None if callable(value) else concrete_value(value)
    if number is not None and not ok(number):
        raise ValueError(f"{name} must be {requirement}, got {number!r}")
    return value


def check_one_of(name: str, value: Any, options: Sequence[Any]) -> Any:
    """One of a few named choices.

    Example:
        >>> from gradtx.core.validation import check_one_of
        >>> check_one_of("mode", "sine", ("triangular", "exp_range"))
        Traceback (most recent call last):
        ...
        ValueError: mode must be one of 'triangular', 'exp_range', got 'sine'
    """
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value
