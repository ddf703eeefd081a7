r"""Orthogonalization by Newton-Schulz iterations, shared by the Muon family
(:func:`~gradtx.optimizers.muon.muon`, :func:`~gradtx.optimizers.normuon.normuon`).

:func:`newton_schulz` sends every singular value of a matrix into a band around 1 with a few
iterations of an odd quintic, :math:`X \mapsto aX + b(XX^\top)X + c(XX^\top)^2X`, one triple
:math:`(a, b, c)` for all steps or one per step (:data:`NS_PRESETS`). Which axes of a leaf form
the matrix is said by :class:`MuonDimensionNumbers`; :func:`matrix_axes` resolves them for a tree
and :func:`as_matrices` views a leaf as a stack of matrices.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree
from gradtx.core.kit import cast_scalars
from gradtx.core.numerics import compute_dtype, real_dtype
from gradtx.core.validation import check_one_of

__all__ = [
    "NS_PRESETS",
    "PRECONDITIONINGS",
    "MatrixAxes",
    "MuonDimensionNumbers",
    "apply_newton_schulz",
    "as_matrices",
    "matrix_axes",
    "matrix_fans",
    "matrix_leaves",
    "newton_schulz",
    "ns_coefficients",
]

# Polar Express (Amsel et al., 2025, Algorithm 1): the per-step quintics optimal for singular
# values in [1e-3, 1], each but the last divided by its safety factor, p(x / 1.01).
_POLAR_EXPRESS = tuple(
    (a / 1.01, b / 1.01**3, c / 1.01**5)
    for a, b, c in (
        (8.28721201814563, -23.595886519098837, 17.300387312530933),
        (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
        (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
        (3.3184196573706015, -2.488488024314874, 0.51004894012372),
        (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
        (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
        (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    )
) + ((1.875, -1.25, 0.375),)

# The quintic of Jordan et al. (torch.optim.Muon's default too); the per-step coefficients of the
# Dion optimizer's implementation (Ahn et al., 2025), as Optax names them; Polar Express's.
NS_PRESETS: dict[str, Any] = {
    "standard": (3.4445, -4.7750, 2.0315),
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
    "polar_express": _POLAR_EXPRESS,
}
# Presets whose number of steps is ns_steps: the first ns_steps triples, the last one repeated after them.
_BY_STEPS = ("polar_express",)
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


class MuonDimensionNumbers(NamedTuple):
    """The axes of a leaf that form Muon's matrix: rows ``reduction_axis`` (the inputs, fan-in),
    columns ``output_axis`` (fan-out); each an axis or a sequence of axes. Other axes are batch axes."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


# ------------------------------------------------------------------ Newton-Schulz


def ns_coefficients(ns_coeffs: Any, ns_steps: Any) -> np.ndarray:
    """The Newton-Schulz coefficients as an array of shape ``(3,)`` or ``(steps, 3)``, checked.

    Args:
        ns_coeffs: a triple, a sequence of triples or a name in :data:`NS_PRESETS`.
        ns_steps: the number of iterations, an integer >= 0; it must be at least the number of
            triples of a sequence, and it picks the triples of ``"polar_express"``.

    Example:
        >>> from gradtx.transforms.orthogonalization import ns_coefficients
        >>> ns_coefficients("polar_express", 3).shape, ns_coefficients("standard", 3).shape
        ((3, 3), (3,))
    """
    if not isinstance(ns_steps, numbers.Integral) or isinstance(ns_steps, bool) or ns_steps < 0:
        raise TypeError(f"ns_steps must be a non-negative integer, got {ns_steps!r}")
    if isinstance(ns_coeffs, str):
        check_one_of("ns_coeffs", ns_coeffs, tuple(NS_PRESETS))
        if ns_coeffs in _BY_STEPS:
            table = NS_PRESETS[ns_coeffs]
            return np.asarray(table[:ns_steps] + table[-1:] * (ns_steps - len(table)), np.float64).reshape(-1, 3)
        ns_coeffs = NS_PRESETS[ns_coeffs]
    coeffs = np.asarray(ns_coeffs, dtype=np.float64)
    if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3 or coeffs.size == 0:
        raise ValueError(f"ns_coeffs must be a triple (a, b, c) or a sequence of triples, got shape {coeffs.shape}")
    if not np.all(np.isfinite(coeffs)):
        raise ValueError(f"ns_coeffs must be finite, got {ns_coeffs!r}")
    if coeffs.ndim == 2 and ns_steps < len(coeffs):
        raise ValueError(f"ns_steps={ns_steps} is fewer than the {len(coeffs)} triples of ns_coeffs")
    return coeffs


def _safe_divide(x: jax.Array, d: jax.Array) -> jax.Array:
    return x / jnp.where(d > 0, d, 1)  # a zero matrix (or row) stays zero


def _precondition(x: jax.Array, eps: jax.Array, preconditioning: str) -> jax.Array:
    """``x`` (wide) scaled so that its singular values are at most about 1."""
    if preconditioning == "frobenius":
        return x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + eps)
    if preconditioning == "spectral":
        return x / (jnp.linalg.norm(x, ord=2, axis=(-2, -1), keepdims=True) + eps)
    gram = x @ jnp.conj(x).mT
    if preconditioning == "schatten":  # the Schatten-4 norm, (tr (XX^H)^2)^(1/4)
        return _safe_divide(x, jnp.sqrt(jnp.linalg.norm(gram, axis=(-2, -1), keepdims=True)))
    # AOL (Prach & Lampert, 2022, arXiv 2208.03160): row i by 1 / sqrt(sum_j |XX^H|_ij)
    return _safe_divide(x, jnp.sqrt(jnp.sum(jnp.abs(gram), axis=-1, keepdims=True)))


def newton_schulz(
    x: jax.Array,
    ns_coeffs: Any = NS_PRESETS["standard"],
    ns_steps: int = 5,
    eps: float = 1e-8,
    preconditioning: str = "frobenius",
) -> jax.Array:
    r"""The semi-orthogonal factor of a matrix (or a stack of them), by Newton-Schulz iterations.

    .. math::
        X_0 = G / (\lVert G \rVert_F + \epsilon), \qquad
        X_{k+1} = a_k X_k + b_k (X_k X_k^\top) X_k + c_k (X_k X_k^\top)^2 X_k

    on the wide orientation of :math:`G` (transposed when it has more rows than columns), with
    :math:`X^H` for complex :math:`G`; computed in at least float32, returned in ``x``'s dtype.

    ``"polar_express"`` takes the per-step quintics of Polar Express (Amsel, Persson, Musco &
    Gower, 2025, :arxiv:`2505.16932`, Algorithm 1), with the paper's safety factor 1.01
    (:math:`p_k(x/1.01)` for all but the last): the first ``ns_steps`` of its eight, the eighth
    repeated after them. The paper also divides :math:`X_0` by 1.01 more; here :math:`X_0` is the
    same for every preset.

    Args:
        x: an array of shape ``(..., m, n)``, the matrices in the last two axes.
        ns_coeffs: :math:`(a, b, c)` for every step, a sequence of triples (one per step), or a
            preset name (``"standard"``, ``"dion"``, ``"polar_express"``).
        ns_steps: the number of iterations, an integer >= 0; with a sequence of triples, its
            length decides and ``ns_steps`` must be at least that.
        eps: :math:`\epsilon \ge 0`, added to the norm.
        preconditioning: how :math:`X_0` is scaled: ``"frobenius"`` (above), ``"spectral"``
            (:math:`\lVert G \rVert_2 + \epsilon`), ``"schatten"`` (the Schatten-4 norm) or ``"aol"``
            (each row by :math:`(\sum_j |GG^\top|_{ij})^{-1/2}`); the last two use no :math:`\epsilon`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import newton_schulz
        >>> o = newton_schulz(jax.random.normal(jax.random.key(0), (4, 8)))
        >>> bool(jnp.all(jnp.abs(jnp.linalg.svd(o, compute_uv=False) - 1) < 0.35))
        True
    """
    check_one_of("preconditioning", preconditioning, PRECONDITIONINGS)
    coeffs = jnp.asarray(ns_coefficients(ns_coeffs, ns_steps))
    return apply_newton_schulz(jnp.asarray(x), coeffs, ns_steps, jnp.asarray(eps), preconditioning)


def apply_newton_schulz(x: jax.Array, coeffs: jax.Array, ns_steps: int, eps: Any, preconditioning: str) -> jax.Array:
    r""":func:`newton_schulz` with the coefficients already checked: an array from
    :func:`ns_coefficients`, which may be traced (a state's settable coefficients).

    Args:
        x: an array of shape ``(..., m, n)``.
        coeffs: shape ``(3,)`` (used ``ns_steps`` times) or ``(steps, 3)`` (one row per step).
        ns_steps: the number of iterations of a single triple, an integer >= 0.
        eps: :math:`\epsilon \ge 0`, a number or 0-d array.
        preconditioning: one of :data:`PRECONDITIONINGS`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import apply_newton_schulz, ns_coefficients
        >>> o = apply_newton_schulz(jnp.eye(2), jnp.asarray(ns_coefficients("standard", 5)), 5, 1e-8, "frobenius")
        >>> o.shape
        (2, 2)
    """
    dtype = compute_dtype(x)
    (eps,) = cast_scalars(dtype, eps)
    coeffs = coeffs.astype(real_dtype(dtype))
    triples = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)
    tall = x.shape[-2] > x.shape[-1]
    g = x.astype(dtype).mT if tall else x.astype(dtype)
    g = _precondition(g, eps, preconditioning)
    for a, b, c in triples:
        gram = g @ jnp.conj(g).mT
        g = a * g + (b * gram + c * gram @ gram) @ g
    return (g.mT if tall else g).astype(x.dtype)


def apply_newton_schulz_grouped(
    stacks: list[jax.Array], coeffs: jax.Array, ns_steps: int, eps: Any, preconditioning: str
) -> list[jax.Array]:
    r""":func:`apply_newton_schulz` on each stack of matrices ``(batch, m, n)`` of ``stacks``, with
    the stacks of the same matrix shape and dtype joined along the batch axis first: one batched
    iteration per shape, not one per leaf, so that a model of 12 equal layers compiles and runs
    5 batched iterations rather than 60 (the results are the per-stack ones).

    Args:
        stacks: arrays of shape ``(batch, m, n)``.
        coeffs: shape ``(3,)`` or ``(steps, 3)``, as for :func:`apply_newton_schulz`.
        ns_steps: the number of iterations of a single triple, an integer >= 0.
        eps: :math:`\epsilon \ge 0`, a number or 0-d array.
        preconditioning: one of :data:`PRECONDITIONINGS`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import apply_newton_schulz_grouped, ns_coefficients
        >>> coeffs = jnp.asarray(ns_coefficients("standard", 5))
        >>> out = apply_newton_schulz_grouped([jnp.ones((1, 2, 3)), jnp.eye(2)[None]], coeffs, 5, 1e-8, "frobenius")
        >>> [o.shape for o in out]
        [(1, 2, 3), (1, 2, 2)]
    """
    tall = [x.shape[-2] > x.shape[-1] for x in stacks]
    wide = [x.mT if t else x for x, t in zip(stacks, tall)]  # the iteration runs on wide matrices
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, x in enumerate(wide):
        groups.setdefault((x.shape[1:], x.dtype), []).append(i)
    out: list[Any] = [None] * len(stacks)
    for members in groups.values():
        joined = jnp.concatenate([wide[i] for i in members]) if len(members) > 1 else wide[members[0]]
        o = apply_newton_schulz(joined, coeffs, ns_steps, eps, preconditioning)
        starts = np.cumsum([0] + [wide[i].shape[0] for i in members])
        for i, start, stop in zip(members, starts[:-1], starts[1:]):
            part = o[int(start) : int(stop)]
            out[i] = part.mT if tall[i] else part
    return out


# ---------------------------------------------------------- which axes form the matrix


@dataclasses.dataclass(frozen=True)
class MatrixAxes:
    """A leaf's matrix axes, resolved: non-negative, disjoint (or ``reduction is None``: no matrix)."""

    reduction: tuple[int, ...] | None
    output: tuple[int, ...] = ()


def _axes(value: Any, ndim: int, where: str) -> tuple[int, ...]:
    axes = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    if not axes or any(not isinstance(a, numbers.Integral) or not -ndim <= int(a) < ndim for a in axes):
        raise ValueError(
            f"weight_dimension_numbers at '{where}': axes {value!r} do not fit a leaf of {ndim} dimensions"
        )
    return tuple(int(a) % ndim for a in axes)


def _leaf_axes(dims: Any, leaf: Any, where: str, default_2d: bool, who: str) -> MatrixAxes:
    ndim = jnp.ndim(leaf)
    if dims is None:
        if not default_2d:
            return MatrixAxes(None)
        if ndim != 2:
            raise ValueError(
                f"{who}: the leaf '{where}' has shape {jnp.shape(leaf)}; give it MuonDimensionNumbers "
                f"(weight_dimension_numbers=) or use {who.removeprefix('scale_by_')}, which sends such leaves to Adam"
            )
        dims = MuonDimensionNumbers()
    if not isinstance(dims, MuonDimensionNumbers):
        raise TypeError(f"weight_dimension_numbers at '{where}' must be MuonDimensionNumbers or None, got {dims!r}")
    reduction, output = _axes(dims.reduction_axis, ndim, where), _axes(dims.output_axis, ndim, where)
    if len(set(reduction + output)) != len(reduction) + len(output):
        raise ValueError(f"weight_dimension_numbers at '{where}': the axes {dims} repeat")
    return MatrixAxes(reduction, output)


def _is_dims(x: Any) -> bool:
    return x is None or isinstance(x, MuonDimensionNumbers)


@dataclasses.dataclass(frozen=True)
class _Given:
    dims: Any  # a leaf's MuonDimensionNumbers or None, boxed: not a pytree, so tree functions keep it whole


def matrix_axes(dims: Any, tree: Any, default_2d: bool = True, who: str = "scale_by_muon") -> Any:
    """A tree shaped like ``tree`` of each leaf's :class:`MatrixAxes`.

    Args:
        dims: :class:`MuonDimensionNumbers` for every leaf, a tree (prefix) of them and None, or a
            function of ``tree`` returning one.
        tree: the parameters (or updates).
        default_2d: a None leaf is a 2-D matrix with axes (0, 1) (and any other leaf an error);
            False: a None leaf has no matrix.
        who: the transform named in the error for a leaf that is no matrix.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import matrix_axes
        >>> matrix_axes(None, {"w": jnp.zeros((2, 3))})["w"]
        MatrixAxes(reduction=(0,), output=(1,))
    """
    given = dims(tree) if callable(dims) else dims
    paths = _tree.leaves_with_path(tree)
    if _is_dims(given):
        per_leaf = [given] * len(paths)
    else:
        try:
            boxed = jax.tree.map(lambda d, sub: jax.tree.map(lambda _: _Given(d), sub), given, tree, is_leaf=_is_dims)
        except (ValueError, TypeError):
            _tree.check_same_structure(tree, given, "the parameters", "weight_dimension_numbers")
            raise
        per_leaf = [b.dims for b in jax.tree.leaves(boxed)]
    found = [_leaf_axes(d, leaf, _tree.path_str(path), default_2d, who) for d, (path, leaf) in zip(per_leaf, paths)]
    return jax.tree.unflatten(jax.tree.structure(tree), found)


def as_matrices(x: jax.Array, axes: MatrixAxes) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """``x`` as a stack ``(batch, fan_in, fan_out)`` of matrices, and the map back.

    Args:
        x: a leaf.
        axes: its :class:`MatrixAxes` (with a matrix).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import MatrixAxes, as_matrices
        >>> stack, back = as_matrices(jnp.zeros((2, 3, 4)), MatrixAxes((1,), (2,)))
        >>> stack.shape, back(stack).shape
        ((2, 3, 4), (2, 3, 4))
    """
    assert axes.reduction is not None
    batch = [a for a in range(x.ndim) if a not in axes.reduction + axes.output]
    order = batch + list(axes.reduction) + list(axes.output)
    moved = jnp.transpose(x, order) if order != list(range(x.ndim)) else x
    fan_in, fan_out = matrix_fans(x.shape, axes)
    stack = moved.reshape((-1, fan_in, fan_out))

    def back(y: jax.Array) -> jax.Array:
        y = y.reshape(moved.shape)
        return jnp.transpose(y, tuple(int(i) for i in np.argsort(order))) if order != list(range(x.ndim)) else y

    return stack, back


def matrix_fans(shape: tuple[int, ...], axes: MatrixAxes) -> tuple[int, int]:
    """The matrix's (fan_in, fan_out): the products of the reduction and the output axes' sizes.

    Args:
        shape: the leaf's shape.
        axes: its :class:`MatrixAxes` (with a matrix).

    Example:
        >>> from gradtx.transforms.orthogonalization import MatrixAxes, matrix_fans
        >>> matrix_fans((2, 3, 4), MatrixAxes((0, 1), (2,)))
        (6, 4)
    """
    assert axes.reduction is not None
    return math.prod(shape[a] for a in axes.reduction), math.prod(shape[a] for a in axes.output)


def matrix_leaves(params: Any) -> Any:
    """Optax's default for Muon: the 2-D leaves are matrices, with axes (0, 1); the others None.

    Args:
        params: the parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalization import matrix_leaves
        >>> matrix_leaves({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
        {'b': None, 'w': MuonDimensionNumbers(reduction_axis=0, output_axis=1)}
    """
    return jax.tree.map(lambda p: MuonDimensionNumbers() if jnp.ndim(p) == 2 else None, params)
