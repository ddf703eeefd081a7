"""Type aliases, each defined once: what the signatures of every layer speak of.

They are documentation for readers and type checkers; nothing is checked at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

PyTree = Any
"""Any nesting of dicts, lists, tuples, NamedTuples and ``None`` with arrays as leaves."""

Params = PyTree
"""The model's parameters."""

Updates = PyTree
"""Gradients on the way in, updates on the way out: a tree shaped like the parameters."""

OptState = PyTree
"""An optimizer's state: NamedTuples whose fields are arrays, trees of arrays and ``hyperparams`` dicts."""

KeyPath = tuple[Any, ...]
"""A leaf's path in a tree, as ``jax.tree_util`` gives it."""

Schedule = Callable[[Any], jax.Array]
"""A function of the step count (an int or a 0-d integer array) returning a 0-d value."""

ScalarOrSchedule = float | jax.Array | Schedule
"""A hyperparameter: a number, a 0-d array, or a schedule of the step."""

Mask = PyTree | Callable[[Params], PyTree] | None
"""Which leaves a transform acts on: a tree of booleans shaped like the parameters (or a prefix of
them), a function of the parameters returning one, or ``None`` for all of them."""

ConditionFn = Callable[[jax.Array], jax.Array]
"""A function of the step count returning a boolean 0-d array (``conditionally_transform``)."""

MaskOrFn = Mask
"""Optax's name for :data:`Mask`."""

ShouldSkipUpdateFunction = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
"""``(updates, gradient_step, params) -> (should_skip, auxiliary)``: a test for ``MultiSteps``
(``skip_not_finite``, ``skip_large_updates``)."""

AxisNames = str | Sequence[str]
"""One mesh axis name or several."""
