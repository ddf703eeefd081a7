"""Float64 NumPy references for the projections onto convex sets, each from the set's definition.

Every reference takes the point as one flat vector (a tree's leaves raveled and concatenated in
flattening order, :func:`flatten`) and returns the projection as one flat vector. The simplex is
found by bisection on the threshold :math:`\\theta` of :math:`\\sum_i \\max(v_i - \\theta, 0) = s`,
not by the sort of Held et al. (1974) and Duchi et al. (2008) that gradtx uses; the l1 sphere by
trying every one of its :math:`2^n` faces; the l2 ball and sphere, boxes and affine sets by their
closed forms. Nothing here imports gradtx.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np


def flatten(tree):
    """The leaves of ``tree`` as one float64 (or complex128) vector, and the leaves' shapes."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    dtype = np.complex128 if any(np.iscomplexobj(x) for x in leaves) else np.float64
    if not leaves:
        return np.zeros(0, dtype), []
    return np.concatenate([x.astype(dtype).ravel() for x in leaves]), [x.shape for x in leaves]


def unflatten(v, shapes):
    """The flat vector ``v`` cut back into arrays of ``shapes``."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=int))
        out.append(v[start : start + size].reshape(shape))
        start += size
    assert start == v.size
    return out


def flat_bound(bound, tree):
    """A bound of ``projection_box`` (one number, or a tree like ``tree`` of numbers and arrays
    shaped like its leaves) as a flat vector matching :func:`flatten` of ``tree``."""
    leaves = jax.tree.leaves(tree)
    if np.ndim(bound) == 0 and not isinstance(bound, (dict, list, tuple)):
        return np.full(sum(np.size(x) for x in leaves), float(bound))
    pieces = [
        np.broadcast_to(np.asarray(b, np.float64), np.shape(x)).ravel() for b, x in zip(jax.tree.leaves(bound), leaves)
    ]
    return np.concatenate(pieces) if pieces else np.zeros(0)


# ------------------------------------------------------------------ the simplex, by bisection


def simplex_rows(rows, s, iterations=200):
    """Each row of ``rows`` projected onto :math:`\\{y \\ge 0, \\sum y = s\\}`.

    :math:`f(\\theta) = \\sum_i \\max(v_i - \\theta, 0)` decreases from :math:`f(\\min v - s/n) \\ge s`
    to :math:`f(\\max v) = 0`; bisection brackets the root, then :math:`\\theta` is recomputed
    exactly from the entries above it, :math:`\\theta = (\\sum_{v_i > \\theta} v_i - s) / k`.
    """
    rows = np.asarray(rows, np.float64)
    m, n = rows.shape
    if n == 0:
        return rows.copy()
    if s == 0:
        return np.zeros_like(rows)
    lo = rows.min(axis=1) - s / n
    hi = rows.max(axis=1)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = np.maximum(rows - mid[:, None], 0).sum(axis=1) > s
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    theta = 0.5 * (lo + hi)
    support = rows > theta[:, None]
    count = np.maximum(support.sum(axis=1), 1)
    theta = (np.where(support, rows, 0).sum(axis=1) - s) / count
    return np.maximum(rows - theta[:, None], 0)


def simplex(v, s):
    return simplex_rows(np.asarray(v)[None, :], s)[0]


# ------------------------------------------------------------------ norm balls and spheres


def l1_ball(v, s):
    """Inside: the point itself; outside: the magnitudes onto the simplex, the signs kept."""
    v = np.asarray(v, np.float64)
    if np.sum(np.abs(v)) <= s:
        return v.copy()
    return np.sign(v) * simplex(np.abs(v), s)


def l1_sphere(v, s):
    """The closest point of the l1 sphere, the union of the faces :math:`\\sigma \\odot \\Delta_s` over
    every sign pattern :math:`\\sigma`: each face's projection is :math:`\\sigma \\odot P_\\Delta(\\sigma
    \\odot v)` (:math:`\\sigma` is a reflection), and the closest of the :math:`2^n` is taken."""
    v = np.asarray(v, np.float64)
    n = v.size
    assert n <= 14, "the brute force over faces is for small vectors"
    if n == 0:
        return v.copy()
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=n)))
    candidates = signs * simplex_rows(signs * v, s)
    distances = np.sum((candidates - v) ** 2, axis=1)
    return candidates[int(np.argmin(distances))]


def l2_ball(v, s):
    v = np.asarray(v)
    norm = np.linalg.norm(v)
    return v * (s / norm) if norm > s else v.copy()


def l2_sphere(v, s):
    """:math:`s v / \\lVert v \\rVert`; the origin goes to :math:`s e_1` (gradtx's documented choice)."""
    v = np.asarray(v)
    norm = np.linalg.norm(v)
    if norm == 0:
        out = np.zeros_like(v)
        if out.size:
            out[0] = s
        return out
    return v * (s / norm)


def linf_ball(v, s):
    return np.minimum(np.maximum(np.asarray(v, np.float64), -s), s)


# ------------------------------------------------------------------ boxes


def box(v, lower, upper):
    return np.minimum(np.maximum(np.asarray(v, np.float64), lower), upper)


def non_negative(v):
    return np.maximum(np.asarray(v, np.float64), 0.0)


# ------------------------------------------------------------------ affine sets


def hyperplane(v, a, b):
    """:math:`v - (\\langle a, v \\rangle - b) a / \\lVert a \\rVert^2`, with :math:`\\langle a, v \\rangle = \\sum \\bar a_i v_i`."""
    return v - (np.vdot(a, v) - b) / np.vdot(a, a).real * a


def halfspace(v, a, b):
    v = np.asarray(v, np.float64)
    return v.copy() if np.dot(a, v) <= b else hyperplane(v, a, b)


def vector(v, a):
    return np.vdot(a, v) / np.vdot(a, a).real * a
