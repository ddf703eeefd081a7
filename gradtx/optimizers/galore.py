r"""GaLore (Zhao et al., 2024, :arxiv:`2403.03507`): Adam in a low-rank subspace of each matrix's
gradient, so that its moments take :math:`r \times n` memory instead of :math:`m \times n`.

Every ``update_proj_gap`` steps a projector is taken from the top-``rank`` singular vectors of the
gradient; in between it is kept. The base optimizer (Adam by default) sees the projected gradient,
and its direction is projected back and multiplied by ``scale``. Leaves that are not matrices (or
that the dimension numbers leave out) get the base optimizer as they are.

State and sharding: the projectors (:math:`m \times r` or :math:`n \times r`) and the base
optimizer's moments of the projected leaves (:math:`r \times n` or :math:`m \times r`) are not
shaped like any parameter, so they are made as plain arrays and do not follow the parameters'
shardings; the moments of the leaves left as they are are made from the parameters and do.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.control import cond
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, whole
from gradtx.core.numerics import compute_dtype, safe_increment, zero_count
from gradtx.core.validation import check_nonnegative, check_one_of, check_range
from gradtx.optimizers.adam import scale_by_adam
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a leaf form the rows (``reduction_axis``) and the columns (``output_axis``)
    of the matrix GaLore projects; every axis must be one or the other."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """GaLore's state: the step count, the base optimizer's state over the projected gradients,
    the projector of every leaf (a 0-d placeholder for leaves left as they are) and the
    hyperparameters ``scale`` and ``update_proj_gap``."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    base_optimizer_state: Any
    projector: Any
    hyperparams: dict[str, Any]


class _Plan(NamedTuple):
    """How one leaf is projected: its axes as matrix rows and columns, the matrix's size, the rank
    and the side (``left``: :math:`P^H G`, else :math:`G Q`)."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    m: int
    n: int
    rank: int
    left: bool


class _Box:
    """Holds one leaf's dimension numbers (or None) through ``jax.tree.map`` as a leaf."""

    def __init__(self, value: Any):
        self.value = value


_SIDES = ("smaller", "larger")


def _axes(value: Any) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, numbers.Integral) else tuple(int(a) for a in value)


def _plans(who: str, spec: Any, tree: Any, rank: int, side: str) -> list[_Plan | None]:
    """One plan per leaf of ``tree`` (in flattening order), or None for a leaf left as it is."""
    paths_leaves = _tree.leaves_with_path(tree)
    if spec is None:
        dims = [GaLoreDimensionNumbers() if jnp.ndim(x) == 2 else None for _, x in paths_leaves]
    else:
        if callable(spec) and not isinstance(spec, GaLoreDimensionNumbers):
            spec = spec(tree)
        if isinstance(spec, GaLoreDimensionNumbers):
            dims = [spec if jnp.ndim(x) >= 2 else None for _, x in paths_leaves]
        else:
            is_dim = lambda x: x is None or isinstance(x, GaLoreDimensionNumbers)  # noqa: E731
            try:
                boxed = jax.tree.map(lambda d, sub: jax.tree.map(lambda _: _Box(d), sub), spec, tree, is_leaf=is_dim)
                flat = jax.tree.structure(tree).flatten_up_to(boxed)  # type: ignore[attr-defined]
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{who}: weight_dimension_numbers must be a tree shaped like the parameters (or a prefix "
                    "of them) with a GaLoreDimensionNumbers or None for every leaf"
                ) from error
            dims = [b.value for b in flat]
    plans: list[_Plan | None] = []
    for (path, x), d in zip(paths_leaves, dims):
        if d is None:
            plans.append(None)
            continue
        shape, ndim = jnp.shape(x), jnp.ndim(x)
        rows = tuple(a % ndim if -ndim <= a < ndim else a for a in _axes(d.reduction_axis))
        cols = tuple(a % ndim if -ndim <= a < ndim else a for a in _axes(d.output_axis))
        if not rows or not cols or sorted(rows + cols) != list(range(ndim)):
            raise ValueError(
                f"{who}: the dimension numbers {d} do not fit '{_tree.path_str(path)}' of shape {shape}: "
                "every axis must be a reduction or an output axis, once, and both must be given"
            )
        m, n = math.prod(shape[a] for a in rows), math.prod(shape[a] for a in cols)
        r = min(rank, m, n)
        plans.append(None if r == 0 else _Plan(rows, cols, m, n, r, (m <= n) if side == "smaller" else (m >= n)))
    return plans


def _to_matrix(x: jax.Array, plan: _Plan) -> jax.Array:
    return jnp.transpose(x, plan.rows + plan.cols).reshape(plan.m, plan.n)


def _from_matrix(a: jax.Array, plan: _Plan, shape: tuple[int, ...]) -> jax.Array:
    order = plan.rows + plan.cols
    return jnp.transpose(a.reshape([shape[i] for i in order]), tuple(int(i) for i in np.argsort(order)))


def _projector(g: jax.Array, plan: _Plan) -> jax.Array:
    """The top-``rank`` left (or right) singular vectors of ``g``, as columns, each multiplied by
    a unit number that makes its entry of largest magnitude real and positive (an SVD fixes them
    only up to that factor)."""
    u, _, vh = jnp.linalg.svd(g, full_matrices=False)
    p = u[:, : plan.rank] if plan.left else jnp.conj(vh[: plan.rank]).T
    pivot = jnp.take_along_axis(p, jnp.argmax(jnp.abs(p), axis=0)[None], axis=0)
    magnitude = jnp.abs(pivot)
    return p * jnp.where(magnitude > 0, jnp.conj(pivot) / jnp.where(magnitude > 0, magnitude, 1), 1)


def _project(g: jax.Array, p: jax.Array, plan: _Plan) -> jax.Array:
    return jnp.conj(p).T @ g if plan.left else g @ p


def _project_back(low: jax.Array, p: jax.Array, plan: _Plan) -> jax.Array:
    return p @ low if plan.left else low @ jnp.conj(p).T


def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
    *,
    b1: float | None = None,
    b2: float | None = None,
    eps: float | None = None,
    projection_side: str = "smaller",
) -> GradientTransformation:
    r"""GaLore's direction (Zhao et al., 2024, :arxiv:`2403.03507`, Algorithm 2).

    For every leaf taken as an :math:`m \times n` matrix :math:`G_t` with :math:`m \le n`
    (the transpose otherwise), with :math:`T` = ``update_proj_gap`` and :math:`t = 0, 1, \dots`:

    .. math::
        P_t = U[:, :r] \text{ of } \operatorname{SVD}(G_t) \text{ if } t \bmod T = 0,
        \text{ else } P_{t-1}, \qquad
        R_t = P_t^\top G_t, \qquad N_t = \operatorname{Adam}(R_t), \qquad
        \tilde G_t = \alpha\, P_t N_t

    The base optimizer's moments live in the :math:`r \times n` space and are kept across a
    change of projector, as in the paper. Each singular vector is signed so that its entry of
    largest magnitude is positive (the paper leaves the sign to the SVD), which makes runs
    reproducible across backends. Complex leaves use :math:`P^H` and the SVD of the complex
    matrix. Leaves without dimension numbers get the base optimizer alone, without :math:`\alpha`.

    Args:
        rank: :math:`r`, a positive int; a matrix with a side shorter than :math:`r` uses that side.
        update_proj_gap: :math:`T`, the number of steps between projectors: an int >= 1 (kept in
            the state as a hyperparameter).
        scale: :math:`\alpha`, the factor on the projected-back direction: a number or 0-d array, >= 0.
        base_optimizer: the transformation applied in the projected space; ``None`` is
            :func:`gradtx.scale_by_adam` (its hyperparameters are then readable by name).
        weight_dimension_numbers: which leaves are projected and how they are matrices: ``None``
            (every 2-d leaf, rows by columns), one :class:`GaLoreDimensionNumbers` (for every leaf
            of 2 or more dimensions), a tree like the parameters (or a prefix) with a
            :class:`GaLoreDimensionNumbers` or ``None`` per leaf, or a function of the parameters
            returning one of these.
        b1: :math:`\beta_1` of the default Adam, in [0, 1) (default 0.9); only without ``base_optimizer``.
        b2: :math:`\beta_2` of the default Adam, in [0, 1) (default 0.999); only without ``base_optimizer``.
        eps: :math:`\epsilon` of the default Adam, >= 0 (default 1e-8); only without ``base_optimizer``.
        projection_side: ``"smaller"`` projects the shorter side of each matrix, as the paper does
            (:math:`P^\top G` for :math:`m \le n`); ``"larger"`` the longer one (:math:`P^\top G`
            for :math:`m \ge n`), as Optax does.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.galore import scale_by_galore
        >>> tx = scale_by_galore(rank=1)
        >>> params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> state.projector["w"].shape, state.base_optimizer_state.mu["w"].shape  # P is 2x1, R is 1x3
        ((2, 1), (1, 3))
        >>> g = {"w": jnp.array([[1.0, 2.0, 2.0], [2.0, 4.0, 4.0]]), "b": jnp.ones(3)}
        >>> u, state = tx.update(g, state, params)
        >>> [round(x, 3) for x in u["w"][1].tolist()]  # Adam's first step is sign(R); P = (1, 2) / sqrt(5)
        [0.894, 0.894, 0.894]
    """
    if not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    if not isinstance(update_proj_gap, numbers.Integral) or isinstance(update_proj_gap, bool):
        raise TypeError(f"update_proj_gap must be an int, got {update_proj_gap!r}")
    check_range("update_proj_gap", update_proj_gap, 1)
    check_one_of("projection_side", projection_side, _SIDES)
    adam_args = {k: v for k, v in dict(b1=b1, b2=b2, eps=eps).items() if v is not None}
    if base_optimizer is None:
        base_optimizer = scale_by_adam(**adam_args)
    elif adam_args:
        raise ValueError(f"scale_by_galore: {', '.join(adam_args)} set the default Adam; give them to base_optimizer")
    elif not isinstance(base_optimizer, GradientTransformation):
        raise TypeError(f"base_optimizer must be a GradientTransformation, got {base_optimizer!r}")
    base = base_optimizer
    hp = Hyperparams(scale=check_nonnegative("scale", scale), update_proj_gap=update_proj_gap, allow_schedules=False)

    def plans(tree):
        return _plans("scale_by_galore", weight_dimension_numbers, tree, int(rank), projection_side)

    def init(params):
        treedef, leaves = jax.tree.structure(params), jax.tree.leaves(params)
        low, proj = [], []
        for p, plan in zip(leaves, plans(params)):
            p = jnp.asarray(p)
            if plan is None:
                low.append(p)
                proj.append(jnp.zeros((), p.dtype))  # a placeholder (0-d: checkpoint formats refuse empty arrays)
            else:
                low.append(jnp.zeros((plan.rank, plan.n) if plan.left else (plan.m, plan.rank), p.dtype))
                proj.append(jnp.zeros((plan.m if plan.left else plan.n, plan.rank), p.dtype))
        base_state = base.init(jax.tree.unflatten(treedef, low))
        return GaLoreState(zero_count(), base_state, jax.tree.unflatten(treedef, proj), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.projector, updates, shapes=False)
        h = hp.values(state.hyperparams)
        gap = jnp.maximum(jnp.round(h["update_proj_gap"]).astype(state.count.dtype), 1)
        renew = state.count % gap == 0  # Algorithm 2: t mod T = 0, with t = 0 at the first update
        treedef = jax.tree.structure(updates)
        flat, tree = treedef.flatten_up_to, functools.partial(jax.tree.unflatten, treedef)
        layout, grads = plans(updates if params is None else params), flat(updates)
        # the SVD and the projections need each matrix whole; the update goes back to G's layout
        gathered = [whole(g) if plan is not None else (g, lambda y: y) for g, plan in zip(grads, layout)]
        grads, lay_outs = [g for g, _ in gathered], [back for _, back in gathered]
        whole_params = (
            None
            if params is None
            else [whole(x)[0] if plan is not None else x for x, plan in zip(flat(params), layout)]
        )

        def projector(g, p, plan):  # P_t: from the SVD of G_t every T steps, else P_{t-1}
            if plan is None:
                return p
            fresh = functools.partial(_projector, _to_matrix(g.astype(compute_dtype(g, p)), plan), plan)
            return cond(renew, fresh, lambda: p.astype(compute_dtype(g, p))).astype(p.dtype)

        def down(x, p, plan):  # R_t = P_t^T G_t (or G_t Q_t), in x's dtype
            if plan is None:
                return x
            dtype = compute_dtype(x, p)
            return _project(_to_matrix(x.astype(dtype), plan), p.astype(dtype), plan).astype(x.dtype)

        def up(g, n, p, plan):  # alpha P_t N_t, shaped and typed like G_t
            if plan is None:
                return n
            dtype = compute_dtype(g, n, p)
            (alpha,) = cast_scalars(dtype, h["scale"])
            back = alpha * _project_back(n.astype(dtype), p.astype(dtype), plan)
            return _from_matrix(back, plan, jnp.shape(g)).astype(g.dtype)

        proj = [projector(g, p, plan) for g, p, plan in zip(grads, flat(state.projector), layout)]
        low = tree([down(g, p, plan) for g, p, plan in zip(grads, proj, layout)])
        low_params = None if whole_params is None else tree([down(*a) for a in zip(whole_params, proj, layout)])
        n, base_state = base.update(low, state.base_optimizer_state, low_params, **extra_args)
        out = tree([lay(up(*a)) for lay, *a in zip(lay_outs, grads, flat(n), proj, layout)])
        return out, GaLoreState(safe_increment(state.count), base_state, tree(proj), state.hyperparams)

    return GradientTransformation(init, update)


def galore(
    learning_rate: ScalarOrSchedule = 1e-2,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    weight_dimension_numbers: Any = None,
    *,
    b1: float | None = None,
    b2: float | None = None,
    eps: float | None = None,
    projection_side: str = "smaller",
) -> GradientTransformation:
    r"""GaLore: Adam on low-rank projections of the gradient (Zhao et al., 2024, :arxiv:`2403.03507`).

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \alpha\, P_t\, \operatorname{Adam}(P_t^\top G_t)
        + \lambda\, \theta_{t-1} \right)

    with :math:`P_t` as in :func:`scale_by_galore` and decoupled weight decay :math:`\lambda`
    (AdamW's, as Optax adds it). Needs the parameters.

    Args:
        learning_rate: :math:`\eta`, by default the paper's 1e-2 (Optax has none): a number, 0-d
            array or schedule of the step, >= 0.
        rank: :math:`r`, a positive int.
        update_proj_gap: :math:`T`, the steps between projectors: an int >= 1.
        scale: :math:`\alpha` (the paper trains with 0.25): a number or 0-d array, >= 0.
        base_optimizer: the transformation in the projected space; ``None`` is Adam.
        weight_decay: :math:`\lambda`: a number, 0-d array or schedule of the step, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters or a function of them.
        weight_dimension_numbers: the leaves to project and their matrix axes (see
            :func:`scale_by_galore`).
        b1: :math:`\beta_1` of the default Adam (see :func:`scale_by_galore`).
        b2: :math:`\beta_2` of the default Adam.
        eps: :math:`\epsilon` of the default Adam.
        projection_side: ``"smaller"`` (the paper's) or ``"larger"`` (Optax's), see :func:`scale_by_galore`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.galore import galore
        >>> from gradtx import apply_updates
        >>> target = jnp.outer(jnp.arange(1.0, 5.0), jnp.ones(6))  # a rank-1 target
        >>> loss = lambda w: 0.5 * jnp.sum((w["w"] - target) ** 2)
        >>> tx, w = galore(0.1, rank=2, update_proj_gap=10), {"w": jnp.zeros((4, 6))}
        >>> state, step = tx.init(w), jax.jit(tx.update)
        >>> for _ in range(100):
        ...     updates, state = step(jax.grad(loss)(w), state, w)
        ...     w = apply_updates(w, updates)
        >>> bool(loss(w) < 1e-2)
        True
    """
    return chain(
        scale_by_galore(
            rank,
            update_proj_gap,
            scale,
            base_optimizer,
            weight_dimension_numbers,
            b1=b1,
            b2=b2,
            eps=eps,
            projection_side=projection_side,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


__all__ = ["GaLoreDimensionNumbers", "GaLoreState", "galore", "scale_by_galore"]
