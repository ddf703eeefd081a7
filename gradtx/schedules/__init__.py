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

from gradtx.core.aliases import Schedule
from gradtx.schedules.optax_style import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from gradtx.schedules.torch_style import (
    cosine_annealing_warm_restarts_schedule,
    cyclic_schedule,
    inverse_sqrt_schedule,
    multistep_decay_schedule,
    step_decay_schedule,
    warmup_stable_decay_schedule,
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
