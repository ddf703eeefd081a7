"""Control flow that runs eagerly without compiling: one choice of two branches.

``jax.lax.cond`` traces and compiles its branches on every eager call when they are
closures made afresh by each update (as an optimizer's are): an eager step that takes
the l2 norm of a tree compiled three programs, 0.4 s, every time. Under tracing
(``jit``, ``vmap``, ``grad``, ``shard_map``) the predicate is a tracer and :func:`cond`
is ``lax.cond``, so only the chosen branch runs on a device; when the predicate is
already known it is a Python ``if``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["cond"]


def cond(pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], *operands: Any) -> Any:
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``: ``jax.lax.cond`` when
    ``pred`` is traced, a Python choice when it is a concrete boolean scalar.

    Both branches must return the same tree of shapes and dtypes, as ``lax.cond`` requires;
    an eager call runs only the chosen one and does not check the other.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.core.control import cond
        >>> cond(jnp.array(True), lambda x: x + 1, lambda x: x - 1, jnp.array(1.0)).tolist()
        2.0
        >>> jax.jit(lambda p: cond(p, lambda: 1.0, lambda: -1.0))(False).tolist()
        -1.0
    """
    if isinstance(pred, jax.core.Tracer):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)
    return true_fn(*operands) if bool(pred) else false_fn(*operands)
