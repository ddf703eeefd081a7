"""Wrappers that change *when* an optimizer steps: accumulation, guards, look-ahead.

Each wraps an inner transform and keeps its state whole, so reading or setting
the inner hyperparameters by name works through the wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, Updates
from gradtx.core.base import GradientTransformation, check_state
from gradtx.core.hyperparams import (
    Hyperparams,
)
from gradtx.core.kit import copied, moments_like
from gradtx.core.numerics import safe_increment, zero_count
from gradtx.core.recipe import recipe
from gradtx.core.validation import check_range


def _zeros_like_updates(updates: Updates) -> Updates:
    return jax.tree.map(jnp.zeros_like, updates)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# --------------------------------------------------------- gradient accumulation


def skip_not_finite(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, dict]:
    """A ``should_skip_update_fn`` for :class:`MultiSteps`: skip a step with a NaN or Inf.

    Args:
        updates: the gradients of this call.
        gradient_step: the number of optimizer steps taken so far (not used).
        params: the parameters, or ``None`` (not used).

    Returns:
        ``(skip, skip_state)``: whether any leaf holds a NaN or Inf (a boolean 0-d array),
        and the dict ``{"should_skip": skip, "num_not_finite": count}``.
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(x)).astype(jnp.int32) for x in jax.tree.leaves(updates)]
    num_not_finite = jnp.sum(jnp.stack(counts)) if counts else jnp.zeros((), jnp.int32)
    return num_not_finite > 0, {"should_skip": num_not_finite > 0, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates,
    gradient_step: jax.Array,
    params: Params | None,
    max_squared_norm: float,
) -> tuple[jax.Array, dict]:
    """A ``should_skip_update_fn``: skip a step whose squared l2 norm exceeds ``max_squared_norm``.

    A non-finite norm is skipped too.

    Args:
        updates: the gradients of this call; their norm is that of all leaves together.
        gradient_step: the number of optimizer steps taken so far (not used).
        params: the parameters, or ``None`` (not used).
        max_squared_norm: the largest squared norm kept. Bind it with
            ``functools.partial(skip_large_updates, max_squared_norm=...)``.

    Returns:
        ``(skip, skip_state)``: a boolean 0-d array, and the dict
        ``{"should_skip": skip, "norm_squared": squared_norm}``.
    """
    del gradient_step, params
    norm_squared = _tree.norm(updates, squared=True)
    skip = ~(norm_squared <= max_squared_norm)
    return skip, {"should_skip": skip, "norm_squared": norm_squared}


class MultiStepsState(NamedTuple):
    """``MultiSteps``: where in the window we are, the accumulated gradients, the inner state."""

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Updates
    skip_state: Any = ()


class MultiSteps:
    """Accumulate gradients over ``k`` calls and take one optimizer step with their mean (or sum).

    Calls that are not the ``k``-th return zero updates and leave the inner state
    as it was. The accumulator is one gradient-sized buffer.

    Args:
        opt: the inner optimizer, stepped once every ``k`` calls.
        every_k_schedule: ``k``, an int of at least 1, or a function of the number of
            optimizer steps taken returning it.
        use_grad_mean: step with the mean of the ``k`` gradients; ``False`` uses their sum.
        should_skip_update_fn: ``None``, or ``fn(updates, gradient_step, params) -> (skip,
            skip_state)`` (such as :func:`skip_not_finite`): a call where ``skip`` is True
            is dropped altogether, and ``skip_state`` is kept in the state.
        accumulator_dtype: the accumulator's dtype; ``None`` is each parameter's own, promoted to at
            least float32 (so bfloat16 gradients are summed in float32, as Optax's default does,
            and float64 ones stay float64).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> opt = gradtx.MultiSteps(gradtx.sgd(1.0), every_k_schedule=2)
        >>> state = opt.init(jnp.zeros(1))
        >>> first, state = opt.update(jnp.array([1.0]), state)
        >>> second, state = opt.update(jnp.array([3.0]), state)
        >>> first.tolist(), second.tolist(), bool(opt.has_updated(state))
        ([0.0], [-2.0], True)
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable | None = None,
        accumulator_dtype: Any = None,
    ):
        if isinstance(every_k_schedule, int):
            check_range("every_k_schedule", every_k_schedule, 1)
        self.opt = opt
        self.every_k_schedule = every_k_schedule
        self.use_grad_mean = use_grad_mean
        self.should_skip_update_fn = should_skip_update_fn
        self.accumulator_dtype = accumulator_dtype

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MultiSteps) and recipe(vars(self)) == recipe(vars(other))

    def __hash__(self) -> int:
        return hash(recipe(vars(self)))

    @property
    def inner_opt(self) -> GradientTransformation:
        """The inner optimizer (Optax's attribute name; also ``opt``)."""
        return self.opt

    def _accumulator(self, p: Any) -> jax.Array:
        if self.accumulator_dtype is not None:
            return moments_like(p, self.accumulator_dtype)
        dtype = jnp.asarray(p).dtype
        if jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.promote_types(dtype, jnp.float32)
        return moments_like(p, dtype)

    def _k(self, gradient_step):
        k = self.every_k_schedule(gradient_step) if callable(self.every_k_schedule) else self.every_k_schedule
        return jnp.asarray(k, jnp.int32)

    def init(self, params: Params) -> MultiStepsState:
        skip_state = ()
        if self.should_skip_update_fn is not None:
            _, skip_state = self.should_skip_update_fn(_tree.zeros_like(params), zero_count(), params)
        return MultiStepsState(
            mini_step=zero_count(),
            gradient_step=zero_count(),
            inner_opt_state=self.opt.init(params),
            acc_grads=jax.tree.map(self._accumulator, params),
            skip_state=skip_state,  # complex stays complex
        )

    def update(self, updates, state, params=None, **extra_args):
        check_state("MultiSteps", state, MultiStepsState)
        _tree.check_same_structure(state.acc_grads, updates, "the tree this state was built for", "the updates")
        k = self._k(state.gradient_step)
        acc = jax.tree.map(lambda a, g: (a + g).astype(a.dtype), state.acc_grads, updates)

        def step(_):
            grads = jax.tree.map(lambda a, g: (a / k if self.use_grad_mean else a).astype(g.dtype), acc, updates)
            new_updates, inner = self.opt.update(grads, state.inner_opt_state, params, **extra_args)
            return new_updates, MultiStepsState(
                zero_count(), safe_increment(state.gradient_step), inner, _tree.zeros_like(acc), state.skip_state
            )

        def accumulate(_):
            return _zeros_like_updates(updates), state._replace(mini_step=state.mini_step + 1, acc_grads=acc)

        if self.should_skip_update_fn is None:
            return jax.lax.cond(state.mini_step + 1 >= k, step, accumulate, None)

        skip, skip_state = self.should_skip_update_fn(updates, state.gradient_step, params)

        def skipped(_):
            return _zeros_like_updates(updates), state

        new_updates, new_state = jax.lax.cond(
            skip, skipped, lambda _: jax.lax.cond(state.mini_step + 1 >= k, step, accumulate, None), None
        )
        return new_updates, new_state._replace(skip_state=skip_state)

    @staticmethod
    def has_updated(state: MultiStepsState) -> jax.Array:
        """True when the last call took an optimizer step.

        Args:
            state: a :class:`MultiStepsState`, as ``update`` returned it.
        """
        return (state.mini_step == 0) & (state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """This wrapper as a plain ``GradientTransformation`` (for Flax and chains)."""
        return GradientTransformation(self.init, self.update)


class ApplyEveryState(NamedTuple):
    """``apply_every``: the call count and the summed updates."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    grad_acc: Updates


ApplyEvery = ApplyEveryState  # Optax's name for this state


def apply_every(k: int = 1) -> GradientTransformation:
    """Sum the updates of ``k`` calls and emit the sum on every ``k``-th call, zeros otherwise.

    Args:
        k: the number of calls summed, an int of at least 1; 1 passes every update through.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.apply_every(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> first, state = tx.update(jnp.ones(1), state)
        >>> second, state = tx.update(jnp.ones(1), state)
        >>> first.tolist(), second.tolist()
        ([0.0], [2.0])
    """
    check_range("k", k, 1)

    def init(params):
        return ApplyEveryState(zero_count(), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        check_state("apply_every", state, ApplyEveryState)
        _tree.check_same_structure(state.grad_acc, updates, "the tree this state was built for", "the updates")
        count = safe_increment(state.count)
        emit = count % k == 0
        acc = jax.tree.map(lambda a, g: (a + g).astype(a.dtype), state.grad_acc, updates)
        out = jax.tree.map(lambda a, g: jnp.where(emit, a, 0).astype(g.dtype), acc, updates)
        kept = jax.tree.map(lambda a: jnp.where(emit, 0, a).astype(a.dtype), acc)
        return out, ApplyEveryState(count, kept)

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------- guards


class ApplyIfFiniteState(NamedTuple):
    """``apply_if_finite``: counts of skipped steps (consecutive and total) and the inner state."""

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformation:
    """Skip steps whose updates hold a NaN or Inf: zero updates, inner state untouched.

    Parameters and the inner state stay exactly as they were on a bad step.
    ``state.total_notfinite`` counts every skipped step.

    Args:
        inner: the transform applied on the other steps.
        max_consecutive_errors: an int of at least 0: after more than this many bad steps
            in a row the update is applied anyway, so that a run that has truly diverged
            shows it.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=3)
        >>> state = tx.init(jnp.zeros(1))
        >>> updates, state = tx.update(jnp.array([jnp.nan]), state)
        >>> updates.tolist(), int(state.total_notfinite)
        ([0.0], 1)
    """
    check_range("max_consecutive_errors", max_consecutive_errors, 0)

    def init(params):
        return ApplyIfFiniteState(zero_count(), jnp.asarray(True), zero_count(), inner.init(params))

    def update(updates, state, params=None, **extra_args):
        check_state("apply_if_finite", state, ApplyIfFiniteState)
        finite = _all_finite(updates)
        notfinite_count = jnp.where(finite, 0, safe_increment(state.notfinite_count)).astype(jnp.int32)
        apply = finite | (notfinite_count > max_consecutive_errors)

        def run(_):
            return inner.update(updates, state.inner_state, params, **extra_args)

        def skip(_):
            return _zeros_like_updates(updates), state.inner_state

        new_updates, inner_state = jax.lax.cond(apply, run, skip, None)
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return new_updates, ApplyIfFiniteState(notfinite_count, finite, total.astype(jnp.int32), inner_state)

    return GradientTransformation(init, update)


# ------------------------------------------------------------------ look-ahead


class LookaheadParams(NamedTuple):
    """The fast and slow copies of the parameters that :func:`lookahead` updates."""

    fast: Params
    slow: Params

    @classmethod
    def init_synced(cls, params: Params) -> LookaheadParams:
        """Both copies equal to ``params``."""
        return cls(fast=params, slow=copied(params))  # a buffer of its own, so a step can donate both


class LookaheadState(NamedTuple):
    """``lookahead``: the fast optimizer's state and the steps since the last synchronisation."""

    fast_state: Any
    steps_since_sync: jax.Array
    hyperparams: dict[str, Any]


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float,
    reset_state: bool = False,
) -> GradientTransformation:
    r"""Lookahead (Zhang et al., 2019, :arxiv:`1907.08610`): slow weights follow the fast ones every ``k`` steps.

    The fast weights :math:`\theta` take ``k`` steps of ``fast_optimizer``; then
    :math:`\phi \leftarrow \phi + \alpha(\theta - \phi)` and :math:`\theta \leftarrow \phi`.
    Parameters are :class:`LookaheadParams`; the gradients are those of the fast
    weights (a plain tree, or the ``fast`` field of a ``LookaheadParams``).
    Evaluate the model with the slow weights.

    Args:
        fast_optimizer: the optimizer of the fast weights.
        sync_period: ``k``, an int of at least 1.
        slow_step_size: :math:`\alpha`, in [0, 1]: a number or 0-d array (not a schedule).
        reset_state: at each synchronisation, reset the fast optimizer's state to its
            ``init`` of the synchronised weights.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.lookahead(gradtx.sgd(1.0), sync_period=2, slow_step_size=0.5)
        >>> params = gradtx.LookaheadParams.init_synced(jnp.zeros(1))
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     updates, state = tx.update(jnp.ones(1), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> params.fast.tolist(), params.slow.tolist()
        ([-1.0], [-1.0])
    """
    check_range("sync_period", sync_period, 1)
    hp = Hyperparams(slow_step_size=check_range("slow_step_size", slow_step_size, 0.0, 1.0), allow_schedules=False)

    def init(params):
        if not isinstance(params, LookaheadParams):
            raise TypeError("lookahead works on LookaheadParams: use gradtx.LookaheadParams.init_synced(params)")
        return LookaheadState(fast_optimizer.init(params.fast), zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_state("lookahead", state, LookaheadState)
        if not isinstance(params, LookaheadParams):
            raise TypeError("lookahead needs the parameters as LookaheadParams(fast, slow) in update")
        grads = updates.fast if isinstance(updates, LookaheadParams) else updates
        fast_updates, fast_state = fast_optimizer.update(grads, state.fast_state, params.fast, **extra_args)
        fast = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params.fast, fast_updates)
        steps = safe_increment(state.steps_since_sync)
        sync = steps >= sync_period
        alpha = hp.values(state.hyperparams)["slow_step_size"]
        slow = jax.tree.map(
            lambda s, f: jnp.where(sync, s + alpha.astype(s.dtype) * (f - s), s).astype(s.dtype), params.slow, fast
        )
        fast = jax.tree.map(lambda f, s: jnp.where(sync, s, f), fast, slow)
        if reset_state:
            fresh = fast_optimizer.init(fast)
            fast_state = jax.tree.map(lambda new, old: jnp.where(sync, new, old), fresh, fast_state)
        out = LookaheadParams(fast=_tree.sub(fast, params.fast), slow=_tree.sub(slow, params.slow))
        return out, LookaheadState(fast_state, jnp.where(sync, 0, steps).astype(steps.dtype), state.hyperparams)

    return GradientTransformation(init, update)


# ------------------------------------------------------------------- flatten


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Run ``inner`` on all leaves concatenated into one vector, then split the result back.

    Trades a copy for far fewer, larger operations: worth it for trees of many
    small leaves. Leaves are promoted to one dtype for the inner transform and
    cast back afterwards.

    Args:
        inner: the transform to run on the one vector; its state is that of a vector.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.flatten(gradtx.scale(2.0))
        >>> tx.update({"a": jnp.ones(1), "b": jnp.ones(2)}, tx.init({"a": jnp.ones(1), "b": jnp.ones(2)}))[0]["b"].tolist()
        [2.0, 2.0]
    """
    from jax.flatten_util import ravel_pytree

    def init(params):
        return inner.init(ravel_pytree(params)[0])

    def update(updates, state, params=None, **extra_args):
        flat, unravel = ravel_pytree(updates)
        flat_params = None if params is None else ravel_pytree(params)[0]
        new_flat, state = inner.update(flat, state, flat_params, **extra_args)
        return unravel(new_flat), state

    return GradientTransformation(init, update)
