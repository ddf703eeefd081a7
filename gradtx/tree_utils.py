"""The ``gradtx.tree_utils`` namespace: the functions of :mod:`gradtx.tree` under the ``tree_``
names of ``optax.tree_utils`` (``tree_add``, ``tree_get``, ...), and :class:`NamedTupleKey`.

Re-exports only; each function is documented under its short name in :mod:`gradtx.tree`.
"""

from gradtx.core.paths import NamedTupleKey
from gradtx.core.paths import get as tree_get
from gradtx.core.paths import get_all_with_path as tree_get_all_with_path
from gradtx.core.paths import map_params as tree_map_params
from gradtx.core.paths import set as tree_set
from gradtx.core.tree import add as tree_add
from gradtx.core.tree import add_scale as tree_add_scale
from gradtx.core.tree import allclose as tree_allclose
from gradtx.core.tree import batch_shape as tree_batch_shape
from gradtx.core.tree import bias_correction as tree_bias_correction
from gradtx.core.tree import cast as tree_cast
from gradtx.core.tree import cast_like as tree_cast_like
from gradtx.core.tree import clip as tree_clip
from gradtx.core.tree import conj as tree_conj
from gradtx.core.tree import div as tree_div
from gradtx.core.tree import dtype as tree_dtype
from gradtx.core.tree import full_like as tree_full_like
from gradtx.core.tree import max as tree_max
from gradtx.core.tree import min as tree_min
from gradtx.core.tree import mul as tree_mul
from gradtx.core.tree import norm as tree_norm
from gradtx.core.tree import ones_like as tree_ones_like
from gradtx.core.tree import random_like as tree_random_like
from gradtx.core.tree import real as tree_real
from gradtx.core.tree import scale as tree_scale
from gradtx.core.tree import size as tree_size
from gradtx.core.tree import split_key_like as tree_split_key_like
from gradtx.core.tree import sub as tree_sub
from gradtx.core.tree import sum as tree_sum
from gradtx.core.tree import unwrap_random_key_data as tree_unwrap_random_key_data
from gradtx.core.tree import update_infinity_moment as tree_update_infinity_moment
from gradtx.core.tree import update_moment as tree_update_moment
from gradtx.core.tree import update_moment_per_elem_norm as tree_update_moment_per_elem_norm
from gradtx.core.tree import vdot as tree_vdot
from gradtx.core.tree import where as tree_where
from gradtx.core.tree import zeros_like as tree_zeros_like

__all__ = [
    "NamedTupleKey",
    "tree_add",
    "tree_add_scale",
    "tree_allclose",
    "tree_batch_shape",
    "tree_bias_correction",
    "tree_cast",
    "tree_cast_like",
    "tree_clip",
    "tree_conj",
    "tree_div",
    "tree_dtype",
    "tree_full_like",
    "tree_get",
    "tree_get_all_with_path",
    "tree_map_params",
    "tree_max",
    "tree_min",
    "tree_mul",
    "tree_norm",
    "tree_ones_like",
    "tree_random_like",
    "tree_real",
    "tree_scale",
    "tree_set",
    "tree_size",
    "tree_split_key_like",
    "tree_sub",
    "tree_sum",
    "tree_unwrap_random_key_data",
    "tree_update_infinity_moment",
    "tree_update_moment",
    "tree_update_moment_per_elem_norm",
    "tree_vdot",
    "tree_where",
    "tree_zeros_like",
]
