"""gradtx: composable gradient transformations for JAX.

An optimizer is a pure pair ``init(params) -> state`` and
``update(updates, state, params=None, **extra_args) -> (updates, state)``, built
by chaining small transforms. Every hyperparameter lives in the state, where
``gradtx.hyperparams`` reads it and ``gradtx.set_hyperparams`` changes it.
"""

from gradtx import checkpoint, distributed, tree
from gradtx.core.base import (  # The protocol
    EmptyState,
    GradientTransformation,
    apply_updates,
    identity,
    incremental_update,
    periodic_update,
    set_to_zero,
    stateless,
)
from gradtx.core.hyperparams import (  # Hyperparameters in the state
    Scheduled,
    hyperparams,
    set_hyperparams,
    step_count,
)
from gradtx.microbatching import (  # Microbatching
    microbatch,
)
from gradtx.optimizers.adam import (  # Adam
    ScaleByAdamState,
    ScaleByAmsgradState,
    adam,
    adamax,
    adamaxw,
    adamw,
    amsgrad,
    nadam,
    nadamw,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
)
from gradtx.optimizers.adam_variants import (  # Adam's relatives
    ScaleByAdanState,
    adabelief,
    adan,
    radam,
    scale_by_adan,
    scale_by_belief,
    scale_by_radam,
    scale_by_yogi,
    yogi,
)
from gradtx.optimizers.averaging import (  # Averaging
    ScaleByAsgdState,
    asgd,
    scale_by_asgd,
)
from gradtx.optimizers.factored import (  # Factored second moments
    FactoredState,
    ScaleBySM3State,
    adafactor,
    scale_by_factored_rms,
    scale_by_sm3,
    sm3,
)
from gradtx.optimizers.layerwise import (  # Layer-wise
    ScaleByNovogradState,
    fromage,
    lamb,
    lars,
    novograd,
    scale_by_novograd,
)
from gradtx.optimizers.lbfgs import (  # L-BFGS
    ScaleByLBFGSState,
    lbfgs,
    scale_by_lbfgs,
)
from gradtx.optimizers.optimistic import (  # Optimistic methods
    ScaleByOptimisticGradientState,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from gradtx.optimizers.rmsprop import (  # RMSProp and AdaGrad
    ScaleByAdaDeltaState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByStddevState,
    adadelta,
    adagrad,
    rmsprop,
    scale_by_adadelta,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from gradtx.optimizers.sgd import (  # Optimizers: SGD
    noisy_sgd,
    sgd,
)
from gradtx.optimizers.sign import (  # Sign methods
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
from gradtx.optimizers.step_size import (  # Step sizes from the problem
    DoGState,
    ScaleByPolyakState,
    dog,
    polyak_sgd,
    scale_by_distance_over_gradients,
    scale_by_polyak,
)
from gradtx.schedules import (  # Schedules
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
from gradtx.transforms.block_scaling import (  # Block scaling
    NormalizeByUpdateNormState,
    ScaleByParamBlockState,
    ScaleByTrustRatioState,
    normalize_by_update_norm,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_trust_ratio,
)
from gradtx.transforms.clipping import (  # Clipping
    ClipState,
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from gradtx.transforms.combine import (  # Combining transforms
    ConditionalState,
    chain,
    conditionally_mask,
    conditionally_transform,
    named_chain,
    with_extra_args_support,
)
from gradtx.transforms.linesearch import (  # Line searches
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from gradtx.transforms.masking import (  # Masks and partitions
    MaskedNode,
    MaskedState,
    PartitionState,
    freeze,
    masked,
    multi_transform,
    partition,
    path_labels,
    path_mask,
    selective_transform,
)
from gradtx.transforms.momentum import (  # Momentum
    EmaState,
    TraceState,
    ema,
    trace,
)
from gradtx.transforms.regularizers import (  # Regularizers
    AddDecayedWeightsState,
    AddNoiseState,
    ZeroNansState,
    add_decayed_weights,
    add_noise,
    centralize,
    keep_params_nonnegative,
    zero_nans,
)
from gradtx.transforms.scaling import (  # Scaling
    ReduceOnPlateauState,
    ScaleByScheduleState,
    ScaleState,
    reduce_on_plateau,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from gradtx.transforms.wrappers import (  # Wrappers
    ApplyEveryState,
    ApplyIfFiniteState,
    InjectHyperparamsState,
    LookaheadParams,
    LookaheadState,
    MultiSteps,
    MultiStepsState,
    apply_every,
    apply_if_finite,
    flatten,
    inject_hyperparams,
    lookahead,
    skip_large_updates,
    skip_not_finite,
)

__version__ = "0.1.0"

__all__ = [
    # The protocol
    "apply_updates",
    "EmptyState",
    "GradientTransformation",
    "identity",
    "incremental_update",
    "periodic_update",
    "set_to_zero",
    "stateless",
    # Hyperparameters in the state
    "hyperparams",
    "Scheduled",
    "set_hyperparams",
    "step_count",
    # Combining transforms
    "chain",
    "conditionally_mask",
    "conditionally_transform",
    "ConditionalState",
    "named_chain",
    "with_extra_args_support",
    # Masks and partitions
    "freeze",
    "masked",
    "MaskedNode",
    "MaskedState",
    "multi_transform",
    "partition",
    "PartitionState",
    "path_labels",
    "path_mask",
    "selective_transform",
    # Momentum
    "ema",
    "EmaState",
    "trace",
    "TraceState",
    # Scaling
    "reduce_on_plateau",
    "ReduceOnPlateauState",
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "ScaleByScheduleState",
    "ScaleState",
    # Block scaling
    "normalize_by_update_norm",
    "NormalizeByUpdateNormState",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_trust_ratio",
    "ScaleByParamBlockState",
    "ScaleByTrustRatioState",
    # Clipping
    "adaptive_grad_clip",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "ClipState",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    # Regularizers
    "add_decayed_weights",
    "add_noise",
    "AddDecayedWeightsState",
    "AddNoiseState",
    "centralize",
    "keep_params_nonnegative",
    "zero_nans",
    "ZeroNansState",
    # Wrappers
    "apply_every",
    "apply_if_finite",
    "ApplyEveryState",
    "ApplyIfFiniteState",
    "flatten",
    "inject_hyperparams",
    "InjectHyperparamsState",
    "lookahead",
    "LookaheadParams",
    "LookaheadState",
    "MultiSteps",
    "MultiStepsState",
    "skip_large_updates",
    "skip_not_finite",
    # Line searches
    "BacktrackingLinesearchInfo",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByZoomLinesearchState",
    "value_and_grad_from_state",
    "ZoomLinesearchInfo",
    # Schedules
    "constant_schedule",
    "cosine_annealing_warm_restarts_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "cyclic_schedule",
    "exponential_decay",
    "inverse_sqrt_schedule",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "multistep_decay_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "step_decay_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "warmup_stable_decay_schedule",
    # Microbatching
    "microbatch",
    # Optimizers: SGD
    "noisy_sgd",
    "sgd",
    # Adam
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "amsgrad",
    "nadam",
    "nadamw",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    # RMSProp and AdaGrad
    "ScaleByAdaDeltaState",
    "adadelta",
    "scale_by_adadelta",
    "adagrad",
    "rmsprop",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByStddevState",
    # Adam's relatives
    "adabelief",
    "adan",
    "radam",
    "scale_by_adan",
    "scale_by_belief",
    "scale_by_radam",
    "scale_by_yogi",
    "ScaleByAdanState",
    "yogi",
    # Factored second moments
    "adafactor",
    "FactoredState",
    "scale_by_factored_rms",
    "scale_by_sm3",
    "ScaleBySM3State",
    "sm3",
    # Sign methods
    "lion",
    "rprop",
    "scale_by_lion",
    "scale_by_rprop",
    "scale_by_sign",
    "ScaleByLionState",
    "ScaleByRpropState",
    "sign_sgd",
    "signum",
    # Layer-wise
    "ScaleByNovogradState",
    "novograd",
    "scale_by_novograd",
    "fromage",
    "lamb",
    "lars",
    # Step sizes from the problem
    "dog",
    "DoGState",
    "polyak_sgd",
    "scale_by_distance_over_gradients",
    "scale_by_polyak",
    "ScaleByPolyakState",
    # Optimistic methods
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "scale_by_optimistic_gradient",
    "ScaleByOptimisticGradientState",
    # Averaging
    "asgd",
    "scale_by_asgd",
    "ScaleByAsgdState",
    # L-BFGS
    "lbfgs",
    "scale_by_lbfgs",
    "ScaleByLBFGSState",
    # namespaces
    "checkpoint",
    "distributed",
    "tree",
]
