"""Projections onto convex sets, as in ``optax.projections``.

Each maps a tree of parameters to the closest point of a set, :math:`\\arg\\min_{y \\in C}
\\lVert y - x \\rVert_2`, for projected gradient descent: ``params = projection(apply_updates(params,
updates))``. Boxes act entry by entry (:mod:`~gradtx.projections.boxes`); norm balls, spheres,
the simplex and affine sets take all leaves of the tree together as one vector
(:mod:`~gradtx.projections.norm_balls`, :mod:`~gradtx.projections.simplex`,
:mod:`~gradtx.projections.affine`). All run under ``jax.jit``.
"""

from gradtx.projections.affine import projection_halfspace, projection_hyperplane, projection_vector
from gradtx.projections.boxes import projection_box, projection_hypercube, projection_non_negative
from gradtx.projections.norm_balls import (
    projection_l1_ball,
    projection_l1_sphere,
    projection_l2_ball,
    projection_l2_sphere,
    projection_linf_ball,
)
from gradtx.projections.simplex import projection_simplex

__all__ = [
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
]
