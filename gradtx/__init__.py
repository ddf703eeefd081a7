"""gradtx: composable gradient transformations for JAX.

An optimizer is a pure pair ``init(params) -> state`` and
``update(updates, state, params=None, **extra_args) -> (updates, state)``, built
by chaining small transforms. Every hyperparameter lives in the state, where
``gradtx.hyperparams`` reads it and ``gradtx.set_hyperparams`` changes it.
"""

from gradtx import checkpoint, distributed, tree

from gradtx.core.base import (
    EmptyState,
    GradientTransformation,
    apply_updates,
    identity,
    incremental_update,
    periodic_update,
    set_to_zero,
    stateless,
)
from gradtx.transforms.clipping import ClipState, clip, clip_by_global_norm
from gradtx.transforms.combine import (
    ConditionalState,
    MaskedNode,
    MaskedState,
    PartitionState,
    chain,
    conditionally_mask,
    conditionally_transform,
    freeze,
    masked,
    multi_transform,
    named_chain,
    partition,
    selective_transform,
    with_extra_args_support,
)
from gradtx.core.hyperparams import (
    InjectHyperparamsState,
    Scheduled,
    hyperparams,
    inject_hyperparams,
    set_hyperparams,
    step_count,
)
from gradtx.optimizers.adam import (
    EmaState,
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByStddevState,
    TraceState,
    ema,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
    trace,
)
from gradtx.microbatching import microbatch
from gradtx.optimizers.sgd import (
    adagrad,
    adam,
    adamax,
    adamaxw,
    adamw,
    amsgrad,
    nadam,
    nadamw,
    rmsprop,
    sgd,
)
from gradtx.transforms.masking import path_labels, path_mask
from gradtx.transforms.regularizers import AddDecayedWeightsState, add_decayed_weights
from gradtx.schedules import (
    constant_schedule,
    cosine_annealing_warm_restarts_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cyclic_schedule,
    exponential_decay,
    inverse_sqrt_schedule,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    multistep_decay_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    step_decay_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
    warmup_stable_decay_schedule,
)
from gradtx.transforms.scaling import (
    ReduceOnPlateauState,
    ScaleByScheduleState,
    ScaleState,
    reduce_on_plateau,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)

from gradtx.transforms.wrappers import (
    ApplyEveryState,
    ApplyIfFiniteState,
    LookaheadParams,
    LookaheadState,
    MultiSteps,
    MultiStepsState,
    apply_every,
    apply_if_finite,
    flatten,
    lookahead,
    skip_large_updates,
    skip_not_finite,
)

# --- issue 3, helper A: imports ---
from gradtx.optimizers.adam_variants import (
    ScaleByAdaDeltaState,
    ScaleByAdanState,
    ScaleByNovogradState,
    adabelief,
    adadelta,
    adan,
    novograd,
    radam,
    scale_by_adadelta,
    scale_by_adan,
    scale_by_belief,
    scale_by_novograd,
    scale_by_radam,
    scale_by_yogi,
    yogi,
)
from gradtx.optimizers.factored import FactoredState, ScaleBySM3State, adafactor, scale_by_factored_rms, scale_by_sm3, sm3
from gradtx.optimizers.sign import (
    ScaleByLionState,
    ScaleByRpropState,
    lion,
    rprop,
    scale_by_lion,
    scale_by_rprop,
    scale_by_sign,
    sign_sgd,
    signum,
)
# --- issue 3, helper B: imports ---
from gradtx.transforms.clipping import (
    adaptive_grad_clip,
    clip_by_block_rms,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from gradtx.optimizers.layerwise import (
    NormalizeByUpdateNormState,
    ScaleByParamBlockState,
    ScaleByTrustRatioState,
    fromage,
    lamb,
    lars,
    normalize_by_update_norm,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_trust_ratio,
)
from gradtx.optimizers.optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from gradtx.transforms.regularizers import (
    AddNoiseState,
    ZeroNansState,
    add_noise,
    centralize,
    keep_params_nonnegative,
    noisy_sgd,
    zero_nans,
)
from gradtx.optimizers.step_size import (
    DoGState,
    ScaleByPolyakState,
    dog,
    polyak_sgd,
    scale_by_distance_over_gradients,
    scale_by_polyak,
)
# --- issue 3, helper C: imports ---
from gradtx.optimizers.averaging import ScaleByAsgdState, asgd, scale_by_asgd
from gradtx.optimizers.lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from gradtx.transforms.linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)

__version__ = "0.1.0"

__all__ = [
    # base
    "GradientTransformation", "EmptyState", "identity", "stateless", "set_to_zero",
    "apply_updates", "incremental_update", "periodic_update",
    # combine
    "chain", "named_chain", "masked", "MaskedNode", "MaskedState", "partition", "multi_transform",
    "PartitionState", "freeze", "selective_transform", "conditionally_mask", "conditionally_transform",
    "ConditionalState", "with_extra_args_support",
    # paths
    "path_mask", "path_labels",
    # wrappers
    "MultiSteps", "MultiStepsState", "skip_not_finite", "skip_large_updates", "apply_every",
    "ApplyEveryState", "apply_if_finite", "ApplyIfFiniteState", "lookahead", "LookaheadParams",
    "LookaheadState", "flatten",
    # microbatch
    "microbatch",
    # hyperparams
    "hyperparams", "set_hyperparams", "step_count", "Scheduled", "inject_hyperparams",
    "InjectHyperparamsState",
    # moments
    "trace", "ema", "scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_rms",
    "scale_by_stddev", "scale_by_rss", "TraceState", "EmaState", "ScaleByAdamState",
    "ScaleByAmsgradState", "ScaleByRmsState", "ScaleByStddevState", "ScaleByRssState",
    # scaling
    "scale", "scale_by_learning_rate", "scale_by_schedule", "ScaleState", "ScaleByScheduleState",
    "reduce_on_plateau", "ReduceOnPlateauState",
    # clipping
    "clip", "clip_by_global_norm", "ClipState",
    # regularizers
    "add_decayed_weights", "AddDecayedWeightsState",
    # schedules
    "constant_schedule", "polynomial_schedule", "linear_schedule", "exponential_decay",
    "cosine_decay_schedule", "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "piecewise_constant_schedule",
    "piecewise_interpolate_schedule", "linear_onecycle_schedule", "cosine_onecycle_schedule",
    "join_schedules", "sgdr_schedule", "step_decay_schedule", "multistep_decay_schedule",
    "cyclic_schedule", "cosine_annealing_warm_restarts_schedule", "inverse_sqrt_schedule",
    "warmup_stable_decay_schedule",
    # optimizers
    "sgd", "adam", "adamw", "nadam", "nadamw", "amsgrad", "adamax", "adamaxw", "rmsprop", "adagrad",
    # --- issue 3, helper A: names ---
    "scale_by_belief", "adabelief", "scale_by_yogi", "yogi", "scale_by_radam", "radam",
    "scale_by_adan", "adan", "scale_by_novograd", "novograd", "scale_by_adadelta", "adadelta",
    "ScaleByAdanState", "ScaleByNovogradState", "ScaleByAdaDeltaState",
    "scale_by_factored_rms", "adafactor", "scale_by_sm3", "sm3", "FactoredState", "ScaleBySM3State",
    "scale_by_sign", "sign_sgd", "signum", "scale_by_lion", "lion", "scale_by_rprop", "rprop",
    "ScaleByLionState", "ScaleByRpropState",
    # --- issue 3, helper B: names ---
    "clip_by_block_rms", "adaptive_grad_clip", "per_example_global_norm_clip", "per_example_layer_norm_clip",
    "scale_by_trust_ratio", "scale_by_param_block_norm", "scale_by_param_block_rms", "normalize_by_update_norm",
    "ScaleByTrustRatioState", "ScaleByParamBlockState", "NormalizeByUpdateNormState", "lars", "lamb", "fromage",
    "centralize", "add_noise", "AddNoiseState", "keep_params_nonnegative", "zero_nans", "ZeroNansState", "noisy_sgd",
    "scale_by_polyak", "ScaleByPolyakState", "polyak_sgd", "scale_by_distance_over_gradients", "DoGState", "dog",
    "scale_by_optimistic_gradient", "ScaleByOptimisticGradientState", "optimistic_gradient_descent",
    "optimistic_adam_v2",
    # --- issue 3, helper C: names ---
    "scale_by_backtracking_linesearch", "scale_by_zoom_linesearch", "value_and_grad_from_state",
    "ScaleByBacktrackingLinesearchState", "ScaleByZoomLinesearchState", "BacktrackingLinesearchInfo",
    "ZoomLinesearchInfo", "scale_by_lbfgs", "lbfgs", "ScaleByLBFGSState", "scale_by_asgd", "asgd",
    "ScaleByAsgdState",
    # modules
    "tree", "checkpoint", "distributed",
]
