"""The second layer: generic blocks (combinators, masking, scaling, clipping, wrappers, ...), and
the namespace ``gradtx.transforms`` with the names Optax keeps in ``optax.transforms``.

No named optimizer lives here; each module imports only from :mod:`gradtx.core` and its own layer.
"""

from gradtx.core.aliases import ConditionFn, ShouldSkipUpdateFunction
from gradtx.transforms.clipping import (
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_clip,
    unitwise_norm,
)
from gradtx.transforms.combine import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    chain,
    conditionally_mask,
    conditionally_transform,
    named_chain,
)
from gradtx.transforms.masking import (
    MaskedNode,
    MaskedState,
    PartitionState,
    freeze,
    masked,
    partition,
    selective_transform,
)
from gradtx.transforms.momentum import EmaState, TraceState, ema, trace
from gradtx.transforms.monitoring import MonitorState, SnapshotState, measure_with_ema, monitor, snapshot
from gradtx.transforms.regularizers import (
    AddNoiseState,
    NonNegativeParamsState,
    ZeroNansState,
    add_decayed_weights,
    add_noise,
    keep_params_nonnegative,
    zero_nans,
)
from gradtx.transforms.wrappers import (
    ApplyIfFiniteState,
    MultiSteps,
    MultiStepsState,
    apply_if_finite,
    flatten,
    skip_large_updates,
    skip_not_finite,
)

__all__ = [
    "AddNoiseState",
    "ApplyIfFiniteState",
    "ConditionFn",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaState",
    "MaskedNode",
    "MaskedState",
    "MonitorState",
    "MultiSteps",
    "MultiStepsState",
    "NonNegativeParamsState",
    "PartitionState",
    "ShouldSkipUpdateFunction",
    "SnapshotState",
    "TraceState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "apply_if_finite",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "conditionally_mask",
    "conditionally_transform",
    "ema",
    "flatten",
    "freeze",
    "keep_params_nonnegative",
    "masked",
    "measure_with_ema",
    "monitor",
    "named_chain",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "selective_transform",
    "skip_large_updates",
    "skip_not_finite",
    "snapshot",
    "trace",
    "unitwise_clip",
    "unitwise_norm",
    "zero_nans",
]
