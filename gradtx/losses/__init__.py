"""Loss functions, under the names of ``optax.losses``: ``gradtx.losses.softmax_cross_entropy``.

Each loss returns one value per example (or per element), never a mean over the batch; the
inputs it compares must have the same shape (nothing is broadcast), and a ``where`` mask leaves
entries out of the computation. The most used ones are also at the top level
(``gradtx.softmax_cross_entropy_with_integer_labels``), as in Optax.
"""

from gradtx.losses.classification import (
    poly_loss_cross_entropy,
    safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from gradtx.losses.contrastive import (
    ntxent,
    triplet_margin_loss,
)
from gradtx.losses.ctc import (
    ctc_loss,
    ctc_loss_with_forward_probs,
)
from gradtx.losses.divergences import (
    convex_kl_divergence,
    generalized_kl_divergence,
    kl_divergence,
    kl_divergence_with_log_targets,
)
from gradtx.losses.fenchel_young import (
    make_fenchel_young_loss,
    multiclass_sparsemax_loss,
    sparsemax_loss,
)
from gradtx.losses.margins import (
    hinge_loss,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    perceptron_loss,
)
from gradtx.losses.ranking import (
    ranking_softmax_loss,
)
from gradtx.losses.regression import (
    cosine_distance,
    cosine_similarity,
    huber_loss,
    l2_loss,
    log_cosh,
    squared_error,
)
from gradtx.losses.segmentation import (
    binary_dice_loss,
    dice_loss,
    multiclass_generalized_dice_loss,
)

__all__ = [
    "binary_dice_loss",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_loss",
    "generalized_kl_divergence",
    "hinge_loss",
    "huber_loss",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "l2_loss",
    "log_cosh",
    "make_fenchel_young_loss",
    "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "ntxent",
    "perceptron_loss",
    "poly_loss_cross_entropy",
    "ranking_softmax_loss",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss",
    "squared_error",
    "triplet_margin_loss",
]
