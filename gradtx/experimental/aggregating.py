r"""Aggregators: transforms that take the gradients of every example and return one update.

An :class:`Aggregator` gets per-example updates, batch axes (``per_elt_axis``) in front of each
leaf as ``jax.vmap(jax.grad(loss), (None, 0))`` gives them, and returns an update shaped like the
parameters. :func:`process` puts a transform of the examples before it and an optimizer after it,
which runs only when an aggregator accumulating over calls (microbatches) says ``ready`` in its
state. Rounds weigh every call alike: they equal the mean of all examples when the calls have one
batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx.core.aliases import OptState, Params, PyTree, Updates
from gradtx.core.base import EmptyState, GradientTransformation, InitFn, identity
from gradtx.core.control import cond
from gradtx.core.kit import check_updates, moments_like, unzip, update_moment
from gradtx.core.numerics import abs_sq, bias_correction, compute_dtype, magnitude_dtype, safe_increment, zero_count
from gradtx.core.paths import get_all_with_path, leaves_with_path, path_str
from gradtx.core.tree import magnitudes_like
from gradtx.core.validation import check_decay
from gradtx.transforms.combine import chain

PerElementUpdates = PyTree
"""Updates of every example: each leaf has the batch axes (``per_elt_axis``), then the parameter's shape."""

AggregatedUpdates = PyTree
"""One update shaped like the parameters, made from per-example updates."""

MaybeAxis = int | Sequence[int] | None
"""The batch axis, several, or ``None`` for updates already aggregated."""


class AggregatorUpdateFn(Protocol):
    """``update(updates, state, params=None, **extra_args) -> (aggregated updates, state)``."""

    def __call__(
        self, updates: PerElementUpdates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[AggregatedUpdates, OptState]: ...


class Aggregator(NamedTuple):
    """``init(params) -> state`` and ``update(per-example updates, state, params=None, **extra_args)
    -> (updates, state)``: a ``GradientTransformation``'s signatures, a class of its own so that
    :func:`process` (and a reader) can tell that ``update`` expects the examples' updates.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.base import init_empty_state
        >>> from gradtx.experimental import aggregating
        >>> median = aggregating.Aggregator(init_empty_state, lambda g, s, p=None: (jnp.median(g, axis=0), s))
        >>> median.update(jnp.array([[1.0], [5.0], [2.0]]), median.init(jnp.zeros(1)))[0].tolist()
        [2.0]
    """

    init: InitFn
    update: AggregatorUpdateFn


class AccumulateAvgUpdatesState(NamedTuple):
    """The calls of this round so far, whether the last call ended a round, this round's running mean."""

    micro_step: jax.Array
    ready: jax.Array
    avg_grad: Updates


class PerElementMeanAndSumSqDiffGradsState(NamedTuple):
    """The calls of this round so far, whether the last call ended a round, the round's running statistics."""

    micro_step: jax.Array
    ready: jax.Array
    mean_grads: Updates
    sum_sq_diff_grads: Updates


class PerElementMeanAndVarianceEMAState(NamedTuple):
    """The rounds averaged, the decay rate, the moving averages (not bias-corrected) of mean and variance."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    ema_decay: jax.Array
    mean_grads_ema: Updates
    variance_grads_ema: Updates


def _steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"accumulation_steps must be a positive integer, got {value!r}")
    return value


def _axes(value: Any) -> tuple[int, ...]:
    axes = (value,) if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        raise ValueError(f"per_elt_axis must be an int or a non-empty sequence of ints, got {value!r}")
    return axes


def _batch_size(who: str, updates: PerElementUpdates, axes: tuple[int, ...]) -> int | None:
    """The number of examples, or ``None`` without leaves; a leaf that disagrees raises a ``ValueError``."""
    first: tuple[str, int] | None = None
    for key_path, x in leaves_with_path(updates):
        path, shape = path_str(key_path), jnp.shape(x)
        if any(not -len(shape) <= a < len(shape) for a in axes):
            raise ValueError(
                f"{who}: the per-example updates at '{path}' have shape {shape}, which lacks an axis of per_elt_axis {axes}"
            )
        if len({a % len(shape) for a in axes}) < len(axes):
            raise ValueError(f"{who}: per_elt_axis {axes} names an axis twice for '{path}' of shape {shape}")
        size = math.prod(shape[a] for a in axes)
        if first is not None and size != first[1]:
            raise ValueError(
                f"{who}: the per-example updates must have one batch size along per_elt_axis {axes}, "
                f"got {first[1]} at '{first[0]}' and {size} at '{path}'"
            )
        first = first or (path, size)
    return first[1] if first else None


def _check_kind(who: str, name: str, value: Any, kinds: tuple[type, ...]) -> None:
    if not isinstance(value, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{who}: {name} must be a {wanted}, got {type(value).__name__}")


def get_batch_size_from_per_elt_updates(per_elt_updates: PerElementUpdates, per_elt_axis: int | list[int]) -> int:
    """The number of examples: the product of the sizes of the batch axes, which every leaf must share.

    Args:
        per_elt_updates: the per-example updates.
        per_elt_axis: the batch axis, or several (negative ones count from the back).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> g = {"w": jnp.zeros((2, 4, 3)), "b": jnp.zeros((2, 4))}
        >>> aggregating.get_batch_size_from_per_elt_updates(g, 0), aggregating.get_batch_size_from_per_elt_updates(g, [0, 1])
        (2, 8)
    """
    who = "get_batch_size_from_per_elt_updates"
    size = _batch_size(who, per_elt_updates, _axes(per_elt_axis))
    if size is None:
        raise ValueError(f"{who}: the per-example updates have no leaves to count examples in")
    return size


def average_per_element_updates(per_elt_axis: int | Sequence[int] = 0) -> Aggregator:
    """The aggregator that returns the mean of the per-example updates over their batch axes.

    Args:
        per_elt_axis: the batch axis, or several.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.average_per_element_updates()
        >>> agg.update({"w": jnp.array([[1.0, 2.0], [3.0, 6.0]])}, agg.init({"w": jnp.zeros(2)}))[0]["w"].tolist()
        [2.0, 4.0]
    """
    axes = _axes(per_elt_axis)

    def update(updates, state, params=None, **extra_args):
        _batch_size("average_per_element_updates", updates, axes)
        return jax.tree.map(lambda x: jnp.mean(x.astype(compute_dtype(x)), axes).astype(x.dtype), updates), state

    return Aggregator(lambda params: EmptyState(), update)


def accumulate_avg_updates(accumulation_steps: int) -> GradientTransformation:
    r"""Average the updates of rounds of ``accumulation_steps`` calls (microbatches): zeros until a
    round's last call, then its mean (``ready`` is then true); one step is the identity.

    .. math::
        a_k = a_{k-1} + (g_k - a_{k-1}) / k, \qquad u_k = a_K \text{ at } k = K, \text{ else } 0

    Args:
        accumulation_steps: :math:`K`, the calls in a round, a positive integer.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.accumulate_avg_updates(2)
        >>> first, state = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
        >>> second, state = tx.update(jnp.array([3.0]), state)
        >>> first.tolist(), second.tolist(), bool(state.ready)
        ([0.0], [2.0], True)
    """
    steps = _steps(accumulation_steps)
    if steps == 1:
        return identity()

    def init(params):
        return AccumulateAvgUpdatesState(zero_count(), jnp.asarray(False), moments_like(params))

    def update(updates, state, params=None, **extra_args):
        check_updates(state.avg_grad, updates)
        k = state.micro_step + 1
        done = k == steps

        def step(g, a):
            dtype = compute_dtype(g, a)
            new = a.astype(dtype) + (g.astype(dtype) - a) / k.astype(dtype)
            return jnp.where(done, new, 0).astype(g.dtype), jnp.where(done, 0, new).astype(a.dtype)

        out, avg = unzip(jax.tree.map(step, updates, state.avg_grad), updates)
        return out, AccumulateAvgUpdatesState(jnp.where(done, 0, k), done, avg)

    return GradientTransformation(init, update)


def average_incrementally_updates(
    per_elt_axis: int | Sequence[int] | None, accumulation_steps: int
) -> Aggregator | GradientTransformation:
    """The mean of per-example updates over their batch axes, averaged over ``accumulation_steps`` calls.

    With ``per_elt_axis=None`` this is :func:`accumulate_avg_updates`; otherwise an
    :class:`Aggregator` with the state ``(EmptyState(), <accumulate_avg_updates' state>)``.

    Args:
        per_elt_axis: the batch axis, several, or ``None`` for updates already averaged.
        accumulation_steps: the calls (microbatches) in a round, a positive integer.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.average_incrementally_updates(per_elt_axis=0, accumulation_steps=2)
        >>> _, state = agg.update(jnp.array([[1.0], [3.0]]), agg.init(jnp.zeros(1)))
        >>> agg.update(jnp.array([[5.0], [7.0]]), state)[0].tolist()
        [4.0]
    """
    accumulate = accumulate_avg_updates(accumulation_steps)
    if per_elt_axis is None:
        return accumulate
    average = average_per_element_updates(per_elt_axis)

    def init(params):
        return average.init(params), accumulate.init(params)

    def update(updates, state, params=None, **extra_args):
        mean, average_state = average.update(updates, state[0], params, **extra_args)
        out, accumulate_state = accumulate.update(mean, state[1], params, **extra_args)
        return out, (average_state, accumulate_state)

    return Aggregator(init, update)


def get_per_element_mean_and_sum_sq_diff_grads(
    per_elt_axis: int | Sequence[int] = 0, accumulation_steps: int = 1
) -> Aggregator:
    r"""The mean of per-example gradients, with the sum of their squared differences from it as
    auxiliary output, over rounds of ``accumulation_steps`` calls (for :func:`process` with
    ``aggregator_has_aux=True``).

    ``update`` returns ``((mean, {"sum_sq_diff_grads": M, "sample_size": n}), state)``:
    :math:`M = \sum_i |g_i - \bar g|^2` over the :math:`n` examples of a round (:math:`M / (n-1)` is
    their unbiased variance). Calls merge as in Welford's algorithm, a batch at a time (Chan, Golub
    & LeVeque, 1983, :doi:`10.1080/00031305.1983.10483115`): with :math:`n = n_a + n_b` and
    :math:`\delta = \bar g_b - \bar g_a`,

    .. math::
        \bar g = \bar g_a + \delta\, n_b / n, \qquad M = M_a + M_b + |\delta|^2\, n_a n_b / n,

    :math:`n_a` being the calls so far times this call's batch size (a round's calls share one).
    Until a round's last call the outputs are zeros. With one step the state is ``EmptyState()``
    and ``sample_size`` an int, else an int32 array.

    Args:
        per_elt_axis: the batch axis, or several.
        accumulation_steps: the calls (microbatches) in a round, a positive integer.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.get_per_element_mean_and_sum_sq_diff_grads()
        >>> (mean, aux), _ = agg.update(jnp.array([[1.0], [2.0], [6.0]]), agg.init(jnp.zeros(1)))
        >>> mean.tolist(), aux["sum_sq_diff_grads"].tolist(), aux["sample_size"]
        ([3.0], [14.0], 3)
    """
    who = "get_per_element_mean_and_sum_sq_diff_grads"
    axes, steps = _axes(per_elt_axis), _steps(accumulation_steps)

    def statistics(updates):  # the batch size, and each leaf's mean and M in its compute dtype
        def leaf(x):
            x = x.astype(compute_dtype(x))
            mean = jnp.mean(x, axes, keepdims=True)
            return jnp.squeeze(mean, axes), jnp.sum(abs_sq(x - mean), axes)

        return (_batch_size(who, updates, axes) or 0, *unzip(jax.tree.map(leaf, updates), updates))

    def update_one(updates, state, params=None, **extra_args):
        size, mean, ssd = statistics(updates)
        mean = jax.tree.map(lambda m, x: m.astype(x.dtype), mean, updates)
        ssd = jax.tree.map(lambda s, x: s.astype(magnitude_dtype(x)), ssd, updates)
        return (mean, {"sum_sq_diff_grads": ssd, "sample_size": size}), state

    if steps == 1:
        return Aggregator(lambda params: EmptyState(), update_one)

    def init(params):
        return PerElementMeanAndSumSqDiffGradsState(
            zero_count(), jnp.asarray(False), moments_like(params), magnitudes_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        n_b, mean_b, ssd_b = statistics(updates)
        check_updates(state.mean_grads, mean_b)
        done = state.micro_step + 1 == steps

        def merge(mb, mm_b, ma, mm_a):
            real = mm_b.dtype
            n_a = (state.micro_step * n_b).astype(real)
            n = n_a + n_b
            delta = mb - ma.astype(mb.dtype)
            mean = ma + delta * (n_b / n)
            ssd = mm_a.astype(real) + mm_b + abs_sq(delta) * (n_a * n_b / n)
            keep = [jnp.where(~done, v, 0).astype(like.dtype) for v, like in ((mean, ma), (ssd, mm_a))]
            return jnp.where(done, mean, 0).astype(ma.dtype), jnp.where(done, ssd, 0).astype(mm_a.dtype), *keep

        merged = jax.tree.map(merge, mean_b, ssd_b, state.mean_grads, state.sum_sq_diff_grads)
        out_mean, out_ssd, mean, ssd = unzip(merged, state.mean_grads, 4)
        aux = {"sum_sq_diff_grads": out_ssd, "sample_size": jnp.where(done, jnp.int32(steps * n_b), 0)}
        return (out_mean, aux), PerElementMeanAndSumSqDiffGradsState(
            jnp.where(done, 0, state.micro_step + 1), done, mean, ssd
        )

    return Aggregator(init, update)


def track_per_element_mean_and_variance_with_ema(ema_decay: Any = 0.9) -> GradientTransformation:
    r"""Moving averages of the mean gradient :math:`\bar g_t` (the updates, passed through) and of the
    variance across examples, from the extra arguments ``sum_sq_diff_grads`` (:math:`M_t`) and
    ``sample_size`` (:math:`n_t`) of :func:`get_per_element_mean_and_sum_sq_diff_grads`:

    .. math::
        m_t = \beta m_{t-1} + (1-\beta)\, \bar g_t, \qquad v_t = \beta v_{t-1} + (1-\beta)\, M_t / (n_t - 1).

    An int ``sample_size`` below 2 raises a ``ValueError``; an array's divisor is at least 1.

    Args:
        ema_decay: :math:`\beta`, a number in [0, 1), kept in the state as ``ema_decay``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.track_per_element_mean_and_variance_with_ema(0.5)
        >>> u, state = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)), sum_sq_diff_grads=jnp.array([8.0]), sample_size=5)
        >>> u.tolist(), state.mean_grads_ema.tolist(), state.variance_grads_ema.tolist()
        ([3.0], [1.5], [1.0])
    """
    who = "track_per_element_mean_and_variance_with_ema"
    decay = check_decay("ema_decay", ema_decay)

    def init(params):
        return PerElementMeanAndVarianceEMAState(
            zero_count(), jnp.asarray(decay), moments_like(params), magnitudes_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        missing = [k for k in ("sum_sq_diff_grads", "sample_size") if k not in extra_args]
        if missing:
            raise TypeError(
                f"{who} needs the extra arguments {missing}, which process(..., aggregator_has_aux=True) "
                "passes from get_per_element_mean_and_sum_sq_diff_grads"
            )
        ssd, n = extra_args["sum_sq_diff_grads"], extra_args["sample_size"]
        if isinstance(n, int) and n < 2:
            raise ValueError(f"{who} needs at least 2 examples to estimate a variance, got sample_size={n}")
        check_updates(state.mean_grads_ema, updates)
        check_updates(state.variance_grads_ema, ssd)

        def variance(s, v):
            s = s.astype(compute_dtype(s, v))
            return update_moment(s / jnp.maximum(jnp.asarray(n, s.dtype) - 1, 1), v, state.ema_decay, 1)

        mean = jax.tree.map(lambda g, m: update_moment(g, m, state.ema_decay, 1), updates, state.mean_grads_ema)
        var = jax.tree.map(variance, ssd, state.variance_grads_ema)
        return updates, PerElementMeanAndVarianceEMAState(safe_increment(state.count), state.ema_decay, mean, var)

    return GradientTransformation(init, update)


def get_unbiased_mean_and_variance_ema(state: OptState) -> tuple[Updates, Updates]:
    r"""The bias-corrected averages :math:`m_t / (1-\beta^t)` and :math:`v_t / (1-\beta^t)` of the one
    :class:`PerElementMeanAndVarianceEMAState` in ``state`` (the state itself or any part of it).

    Before the first update they are 0/0, NaN; a state holding none, or several, raises a ``ValueError``.

    Args:
        state: an optimizer state, such as that of :func:`add_mean_variance_to_opt`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.track_per_element_mean_and_variance_with_ema(0.5)
        >>> _, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)), sum_sq_diff_grads=jnp.array([3.0]), sample_size=4)
        >>> [x.tolist() for x in aggregating.get_unbiased_mean_and_variance_ema(state)]
        [[2.0], [1.0]]
    """
    found = get_all_with_path(state, PerElementMeanAndVarianceEMAState.__name__)
    if len(found) != 1:
        where = ", ".join(f"'{path_str(p)}'" for p, _ in found)
        raise ValueError(
            "get_unbiased_mean_and_variance_ema: the state must hold one PerElementMeanAndVarianceEMAState "
            f"(made by track_per_element_mean_and_variance_with_ema), found {len(found)}{' at ' + where if found else ''}"
        )
    ema: PerElementMeanAndVarianceEMAState = found[0][1]

    def corrected(m):
        dtype = compute_dtype(m, ema.ema_decay)
        return bias_correction(m.astype(dtype), ema.ema_decay.astype(dtype), ema.count).astype(m.dtype)

    return jax.tree.map(corrected, ema.mean_grads_ema), jax.tree.map(corrected, ema.variance_grads_ema)


def process(
    preprocessor: GradientTransformation,
    aggregator: GradientTransformation | Aggregator,
    postprocessor: GradientTransformation,
    aggregator_has_aux: bool = False,
) -> GradientTransformation | Aggregator:
    """Per-example updates through ``preprocessor``, ``aggregator`` and ``postprocessor``, in turn.

    Each gets ``params`` and the extra arguments; the state is the triple of theirs. When the
    aggregator's state has a ``ready`` field, the postprocessor runs only where it is true; at the
    other calls the update is zeros and its state is kept. An :class:`Aggregator` when
    ``aggregator`` is one, else a ``GradientTransformation``.

    Args:
        preprocessor: the transform of the per-example updates (a per-example clipping, say).
        aggregator: their aggregation into one update.
        postprocessor: the transform of the aggregated update, usually an optimizer.
        aggregator_has_aux: the aggregator returns ``(updates, aux)``, and the dict ``aux`` goes to
            the postprocessor as extra arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.core.base import identity
        >>> from gradtx.optimizers.sgd import sgd
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.process(identity(), aggregating.average_per_element_updates(), sgd(0.5))
        >>> tx.update(jnp.array([[1.0, 2.0], [3.0, 4.0]]), tx.init(jnp.zeros(2)))[0].tolist()
        [-1.0, -1.5]
    """
    who = "process"
    _check_kind(who, "preprocessor", preprocessor, (GradientTransformation,))
    _check_kind(who, "aggregator", aggregator, (Aggregator, GradientTransformation))
    _check_kind(who, "postprocessor", postprocessor, (GradientTransformation,))

    def init(params):
        return preprocessor.init(params), aggregator.init(params), postprocessor.init(params)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError(f"{who}: the state must be the triple its init makes, got a {type(state).__name__}")
        pre_state, agg_state, post_state = state
        updates, pre_state = preprocessor.update(updates, pre_state, params, **extra_args)
        aggregated, agg_state = aggregator.update(updates, agg_state, params, **extra_args)
        aux: dict[str, Any] = {}
        if aggregator_has_aux:
            if not (isinstance(aggregated, tuple) and len(aggregated) == 2 and isinstance(aggregated[1], dict)):
                raise ValueError(f"{who}: with aggregator_has_aux=True the aggregator must return (updates, aux dict)")
            aggregated, aux = aggregated
        flags = get_all_with_path(agg_state, "ready")
        if len(flags) > 1:
            where = ", ".join(f"'{path_str(p)}'" for p, _ in flags)
            raise ValueError(f"{who}: the aggregator's state has several 'ready' fields ({where}); keep one")

        def post(s):
            return postprocessor.update(aggregated, s, params, **extra_args, **aux)

        def skip(s):
            return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(post, s)[0]), s

        if flags:
            out, post_state = cond(jnp.asarray(flags[0][1], bool), post, skip, post_state)
        else:
            out, post_state = post(post_state)
        return out, (pre_state, agg_state, post_state)

    return Aggregator(init, update) if isinstance(aggregator, Aggregator) else GradientTransformation(init, update)


def add_mean_variance_to_opt(
    opt: GradientTransformation,
    ema_decay: Any = 0.9,
    per_elt_axis: int | list[int] = 0,
    accumulation_steps: int = 1,
) -> Aggregator:
    """``opt`` on the mean of per-example gradients, with moving averages of their mean and variance.

    :func:`process` of :func:`get_per_element_mean_and_sum_sq_diff_grads` and ``chain(``
    :func:`track_per_element_mean_and_variance_with_ema`, ``opt)``; the state is ``(EmptyState(),
    <aggregator's>, (PerElementMeanAndVarianceEMAState, <opt's>))``.

    Args:
        opt: the optimizer, given the mean gradient.
        ema_decay: the decay rate of the moving averages, in [0, 1).
        per_elt_axis: the batch axis of the per-example gradients, or several.
        accumulation_steps: the calls (microbatches) averaged before each step of ``opt``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.sgd import sgd
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.add_mean_variance_to_opt(sgd(1.0), ema_decay=0.5)
        >>> u, state = tx.update(jnp.array([[1.0], [3.0]]), tx.init(jnp.zeros(1)))
        >>> u.tolist(), [x.tolist() for x in aggregating.get_unbiased_mean_and_variance_ema(state)]
        ([-2.0], [[2.0], [2.0]])
    """
    _check_kind("add_mean_variance_to_opt", "opt", opt, (GradientTransformation,))
    aggregator = get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis, accumulation_steps)
    tracked = chain(track_per_element_mean_and_variance_with_ema(ema_decay), opt)
    return process(identity(), aggregator, tracked, aggregator_has_aux=True)  # type: ignore[return-value]
