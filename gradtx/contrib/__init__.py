"""``gradtx.contrib``: Optax's ``optax.contrib`` namespace, the research optimizers.

Every name here is a re-export: each optimizer lives with its family in gradtx.optimizers
(or, for a generic wrapper, in gradtx.transforms), and every one is also at the top level
(``gradtx.muon`` is ``gradtx.contrib.muon``).
"""

from gradtx.optimizers.acprop import acprop, scale_by_acprop
from gradtx.optimizers.ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from gradtx.optimizers.adopt import adopt, scale_by_adopt
from gradtx.optimizers.coin_betting import COCOBState, cocob, scale_by_cocob
from gradtx.optimizers.d_adaptation import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from gradtx.optimizers.galore import GaLoreDimensionNumbers, GaLoreState, galore, scale_by_galore
from gradtx.optimizers.madgrad import MadgradState, madgrad, scale_by_madgrad
from gradtx.optimizers.mechanic import MechanicState, mechanize
from gradtx.optimizers.momo import MomoAdamState, MomoState, momo, momo_adam
from gradtx.optimizers.muon import MuonState, muon, scale_by_muon
from gradtx.optimizers.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate, dpsgd
from gradtx.optimizers.sam import NormalizeState, SAMState, normalize, sam
from gradtx.optimizers.schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradtx.optimizers.sophia import SophiaState, sophia
from gradtx.optimizers.step_size import DoGState, DoWGState, dog, dowg
from gradtx.transforms.complex import SplitRealAndImaginaryState, split_real_and_imaginary
from gradtx.transforms.curvature import HutchinsonState, hutchinson_estimator_diag_hessian
from gradtx.transforms.orthogonalization import MuonDimensionNumbers
from gradtx.transforms.scaling import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DoGState",
    "DoWGState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "acprop",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "prodigy",
    "reduce_on_plateau",
    "sam",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_galore",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
    "split_real_and_imaginary",
]
