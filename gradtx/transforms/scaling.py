"""Scaling the updates by a number, a learning rate or a schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule
from gradtx.core.base import GradientTransformation, identity
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import scaled
from gradtx.core.numerics import safe_increment, scalar_loss, zero_count
from gradtx.core.validation import check_nonnegative, check_range


class ScaleState(NamedTuple):
    """``scale``: only the step size, readable by name."""

    hyperparams: dict[str, Any]


def scale(step_size: float) -> GradientTransformation:
    """Multiply every update by ``step_size``.

    Args:
        step_size: the factor, kept in the state as ``step_size``: any number or 0-d array
            (not a schedule; see :func:`scale_by_schedule`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale(-2.0)
        >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
        [-2.0, -2.0]
    """
    hp = Hyperparams(step_size=step_size, allow_schedules=False)

    def init(params):
        return ScaleState(hp.init())

    def update(updates, state, params=None, **extra_args):
        return scaled(updates, hp.values(state.hyperparams)["step_size"]), state

    return GradientTransformation(init, update)


class ScaleByScheduleState(NamedTuple):
    """A transform whose factor may follow a schedule: the step count and the factor."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    hyperparams: dict[str, Any]


def scale_by_hyperparameter(name: str, value: ScalarOrSchedule, sign: float = 1.0) -> GradientTransformation:
    """Multiply the updates by ``sign * value``, with ``value`` kept in the state under ``name``:
    the building block of :func:`scale_by_learning_rate` and of any step size that should read
    back under its own name.

    Args:
        name: the name ``value`` is kept under, which :func:`gradtx.hyperparams` and
            :func:`gradtx.set_hyperparams` read and set.
        value: the factor: a number, a 0-d array or a schedule of the step (update
            :math:`t`, from 0, uses ``value(t)``).
        sign: a constant factor, not kept in the state: ``-1.0`` for descent.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.transforms.scaling import scale_by_hyperparameter
        >>> tx = scale_by_hyperparameter("scaling", 0.5, sign=-1.0)
        >>> state = tx.init(jnp.zeros(1))
        >>> tx.update(jnp.ones(1), state)[0].tolist(), gradtx.hyperparams(state)
        ([-0.5], {'scaling': 0.5})
    """
    hp = Hyperparams(**{name: value})  # type: ignore[arg-type]

    def init(params):
        return ScaleByScheduleState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        factor = hp.values(state.hyperparams)[name]
        count = safe_increment(state.count)
        return scaled(updates, sign * factor), ScaleByScheduleState(count, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True, allow_none: bool = True
) -> GradientTransformation:
    r"""Multiply by :math:`-\eta` (gradient *descent*), or by :math:`+\eta` with ``flip_sign=False``.

    Args:
        learning_rate: :math:`\eta`, at least 0: a number, a 0-d array or a schedule
            ``step -> value`` (update ``t``, counting from 0, uses ``learning_rate(t)``).
            Read or set it with ``gradtx.hyperparams(state)["learning_rate"]``. None (Optax's
            default) leaves the updates as they are, sign included.
        flip_sign: multiply by :math:`-\eta`; ``False`` multiplies by :math:`+\eta`.
        allow_none: whether None means "no scaling"; the named optimizers pass False, so that
            ``gradtx.sgd(None)`` (an unset config value) is an error.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_learning_rate(0.5)
        >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
        [-0.5, -0.5]
    """
    if learning_rate is None:
        if allow_none:
            return identity()
        raise TypeError("learning_rate must be a number, an array or a schedule, got None")
    check_nonnegative("learning_rate", learning_rate)
    return scale_by_hyperparameter("learning_rate", learning_rate, -1.0 if flip_sign else 1.0)


def scale_by_schedule(step_size_fn: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """Multiply update ``t`` (counting from 0) by ``step_size_fn(t)``.

    Args:
        step_size_fn: a function of the step (an int32 0-d array) returning the factor, a
            0-d value; its value for the next update is kept in the state as ``step_size``.
            Anything not callable is a ``TypeError``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_schedule(lambda t: 1.0 / (t + 1))
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.ones(1), state)
        >>> tx.update(jnp.ones(1), state)[0].tolist()
        [0.5]
    """
    if not callable(step_size_fn):
        raise TypeError(f"step_size_fn must be a function of the step, got {step_size_fn!r}")
    return scale_by_hyperparameter("step_size", step_size_fn, 1.0)


class ReduceOnPlateauState(NamedTuple):
    """``reduce_on_plateau``: the current ``scale`` and the bookkeeping that drives it: the best
    window mean so far, the windows without improvement and of cooldown, the number of updates
    (``count``, all of them: Optax's counts those of the current window) and ``avg_value``, the
    mean loss of the current window so far."""

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    avg_value: jax.Array
    hyperparams: dict[str, Any]


ReduceLROnPlateauState = ReduceOnPlateauState  # the name optax.contrib gives it


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformation:
    r"""Multiply the updates by a ``scale`` that shrinks by ``factor`` when the loss stops improving.

    Needs the loss as the extra argument ``value``. Every ``accumulation_size``
    updates, the mean loss :math:`\bar f` of that window is compared with the best
    so far: it improves when :math:`\bar f < (1 - rtol)\, f_{best} - atol`. After
    ``patience`` windows in a row without improvement (at least one) the scale becomes
    :math:`\max(scale \cdot factor, min\_scale)`, the count starts again, and ``cooldown``
    windows follow in which no reduction happens. This is Optax's count; torch.optim's
    ``ReduceLROnPlateau(patience=p)`` reduces after ``p + 1`` such windows, which is
    ``patience=p + 1`` here.
    Place it after the learning rate: ``chain(adam(1e-3), reduce_on_plateau())``.
    ``factor``, ``rtol``, ``atol`` and ``min_scale`` are numbers or 0-d arrays, not
    schedules.

    Args:
        factor: the scale's factor at each reduction, in (0, 1).
        patience: the number of windows in a row without improvement that trigger a reduction,
            an int of at least 0 (0 and 1 both reduce at the first such window).
        rtol: the relative improvement on :math:`f_{best}` that counts, in [0, 1].
        atol: the absolute improvement that counts, at least 0.
        cooldown: the number of windows after a reduction in which none happens, an int of
            at least 0.
        accumulation_size: the number of updates in a window, an int of at least 1.
        min_scale: the floor of the scale, at least 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.reduce_on_plateau(factor=0.5, patience=1)
        >>> state = tx.init(jnp.zeros(1))
        >>> for loss in [3.0, 2.0, 2.0, 2.0]:
        ...     updates, state = tx.update(jnp.ones(1), state, value=loss)
        >>> float(state.scale), updates.tolist()  # reduced at the 3rd and the 4th loss
        (0.25, [0.25])
    """
    check_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
    for name, value in [("patience", patience), ("cooldown", cooldown)]:
        check_range(name, value, 0)
    check_range("accumulation_size", accumulation_size, 1)
    hp = Hyperparams(
        factor=factor,
        rtol=check_range("rtol", rtol, 0.0, 1.0),
        atol=check_nonnegative("atol", atol),
        min_scale=check_nonnegative("min_scale", min_scale),
        allow_schedules=False,
    )

    def init(params):
        dtype = float_dtype()
        return ReduceOnPlateauState(
            scale=jnp.ones((), dtype),
            best_value=jnp.asarray(jnp.inf, dtype),
            plateau_count=zero_count(),
            cooldown_count=zero_count(),
            count=zero_count(),
            avg_value=jnp.zeros((), dtype),
            hyperparams=hp.init(),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        if value is None:
            raise ValueError("reduce_on_plateau needs the loss: call update(..., value=loss)")
        value = scalar_loss(value, "reduce_on_plateau")
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        in_window = (state.count % accumulation_size + 1).astype(state.avg_value.dtype)  # this value's place
        mean = state.avg_value + (jnp.asarray(value).astype(state.avg_value.dtype) - state.avg_value) / in_window
        window_done = count % accumulation_size == 0

        improved = mean < (1 - h["rtol"]) * state.best_value - h["atol"]
        in_cooldown = state.cooldown_count > 0
        plateau = jnp.where(improved | in_cooldown, 0, state.plateau_count + 1)
        reduce = plateau >= max(patience, 1)
        evaluated = ReduceOnPlateauState(
            scale=jnp.where(reduce, jnp.maximum(state.scale * h["factor"], h["min_scale"]), state.scale),
            best_value=jnp.where(improved, mean, state.best_value),
            plateau_count=jnp.where(reduce, 0, plateau).astype(state.plateau_count.dtype),
            cooldown_count=jnp.where(reduce, cooldown, jnp.maximum(state.cooldown_count - 1, 0)).astype(
                state.cooldown_count.dtype
            ),
            count=count,
            avg_value=jnp.zeros_like(mean),
            hyperparams=state.hyperparams,
        )
        waiting = state._replace(count=count, avg_value=mean)
        new_state = jax.tree.map(lambda a, b: jnp.where(window_done, a, b), evaluated, waiting)
        return scaled(updates, new_state.scale), new_state

    return GradientTransformation(init, update)
