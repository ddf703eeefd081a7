r"""Shampoo (Gupta, Koren & Singer, 2018, :arxiv:`1802.09568`) in the blocked, grafted form of
Anil et al. (2020), "Scalable Second Order Optimization for Deep Learning", :arxiv:`2002.09018`.

A leaf of rank :math:`k` keeps one statistic :math:`L_i` per axis, the Gram matrix of the gradient
along that axis, and is preconditioned along every axis by :math:`L_i^{-1/(2k)}`: a Kronecker
product of small matrices that stands for full-matrix AdaGrad. Axes longer than ``block_size`` are
cut into blocks, each with its own statistics; the inverse roots are refreshed every
``preconditioning_compute_steps`` and reused in between. The Shampoo direction takes the norm of a
simple optimizer's direction (*grafting*), which keeps the learning rate of that optimizer. Names
and defaults follow the authors' reference implementation (``distributed_shampoo``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.control import cond
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, whole
from gradtx.core.linear_algebra import HIGHEST, matrix_inverse_pth_root
from gradtx.core.numerics import compute_dtype, safe_increment, stable_norm, zero_count
from gradtx.core.tree import check_real, leaves_with_path, path_str
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of, check_range, check_that
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

# The reference's GraftingType members, lower-cased.
GRAFT_TYPES = ("sgd", "adagrad", "rmsprop", "rmsprop_normalized", "sqrt_n", "adagrad_normalized")
INVERSE_ROOT_METHODS = ("newton", "eigh")
_TINY = 1e-16  # the reference's guard of the norms it divides by


class ShampooState(NamedTuple):
    """Shampoo's state. ``statistics`` and ``preconditioners`` hold, for each parameter leaf, a list
    of square matrices, :math:`L` and :math:`L^{-1/p}`: one per axis of each block, blocks in
    row-major order (an empty list for a leaf that is not preconditioned). ``diagonal_statistics``
    is the grafted optimizer's second moment (``None`` for ``"sgd"`` and ``"sqrt_n"``), and
    ``diagonal_momentum`` / ``momentum`` the momenta of the grafted and the Shampoo directions."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in every gradtx state
    statistics: Any
    preconditioners: Any
    diagonal_statistics: Any
    diagonal_momentum: Updates
    momentum: Updates
    hyperparams: dict[str, Any]


# ----------------------------------------------------------------------------- blocks


def merge_small_dims(shape: tuple[int, ...], max_dim: int) -> tuple[int, ...]:
    """The shape with runs of neighbouring axes merged while their product stays at most
    ``max_dim``, and axes of length 1 dropped (an all-ones shape becomes ``(1,)``).

    Args:
        shape: the shape of a leaf.
        max_dim: the largest product of merged axes (an axis longer than this stays as it is).

    Example:
        >>> from gradtx.optimizers.shampoo import merge_small_dims
        >>> merge_small_dims((1, 2, 512, 1, 2048, 1, 3, 4), 1024)
        (1024, 2048, 12)
    """
    if shape and all(d == 1 for d in shape):
        return (1,)
    merged: list[int] = []
    run = 1
    for d in shape:
        if run * d <= max_dim:
            run *= d
            continue
        if run > 1:
            merged.append(run)
        run = d
    if run > 1:
        merged.append(run)
    return tuple(merged)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one leaf is preconditioned: reshaped to ``merged``, each axis cut into blocks of the
    lengths in ``sizes``; ``preconditioned`` is False for a leaf that is only grafted."""

    shape: tuple[int, ...]
    merged: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]
    preconditioned: bool

    def factor_sizes(self) -> list[int]:
        """The side of every statistic, in the order of the state's lists."""
        return [d for block in itertools.product(*self.sizes) for d in block] if self.preconditioned else []

    def blocks(self, x: jax.Array) -> list[jax.Array]:
        """The blocks of ``x`` (shaped like the leaf), in row-major order."""
        pieces = [x.reshape(self.merged)]
        for axis, lengths in enumerate(self.sizes):
            cuts = list(itertools.accumulate(lengths))[:-1]
            pieces = [part for piece in pieces for part in (jnp.split(piece, cuts, axis) if cuts else [piece])]
        return pieces

    def merge(self, blocks: list[jax.Array]) -> jax.Array:
        """The inverse of :meth:`blocks`."""
        for axis in reversed(range(len(self.sizes))):
            n = len(self.sizes[axis])
            blocks = [jnp.concatenate(blocks[i : i + n], axis) for i in range(0, len(blocks), n)]
        return blocks[0].reshape(self.shape)


def _block_lengths(d: int, block_size: int) -> tuple[int, ...]:
    whole, rest = divmod(d, block_size)
    return (d,) if d <= block_size else (block_size,) * whole + ((rest,) if rest else ())


def _layout(shape, block_size, merge, merge_block_size, skip_dim_gt, skip_rank_lt) -> _Layout:
    shape = tuple(int(d) for d in shape)
    merged = merge_small_dims(shape, merge_block_size) if merge else shape
    skip = len(shape) < skip_rank_lt or any(d > skip_dim_gt for d in shape) or not merged or math.prod(shape) == 0
    return _Layout(shape, merged, tuple(_block_lengths(d, block_size) for d in merged), not skip)


# ------------------------------------------------------------------- inverse p-th roots


def _eigh_inverse_root(a: jax.Array, p: int, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    r""":math:`(A + \epsilon \lambda_{max} I)^{-1/p}` by an eigendecomposition, with the ridge rule of
    :func:`~gradtx.core.linear_algebra.matrix_inverse_pth_root`; the error is 0, or NaN when not finite."""
    top = jnp.max(jnp.linalg.eigvalsh(a)) if a.shape[0] > 1 else a[0, 0]
    ridge = eps * jnp.where(top > 0, top, 1)
    w, v = jnp.linalg.eigh(a + ridge * jnp.eye(a.shape[0], dtype=a.dtype))
    root = jnp.matmul(v * jnp.maximum(w, ridge) ** (-1.0 / p), v.T, precision=HIGHEST)
    return root, jnp.where(jnp.all(jnp.isfinite(root)), 0.0, jnp.nan).astype(a.dtype)


@functools.partial(jax.jit, static_argnames=("exponents", "method"))
def _refresh(do, statistics, previous, exponents, eps, threshold, method):
    """:func:`_refreshed` when ``do``, else ``previous``: jitted once per layout, so that an
    eager update does not trace and compile the root iterations again at every step."""
    compute = lambda: _refreshed(statistics, previous, exponents, eps, threshold, method)
    return cond(do, compute, lambda: list(previous))


def _refreshed(statistics, previous, exponents, eps, threshold, method):
    """New roots of every statistic (same-sized ones batched), each kept only where it succeeded:
    finite, with an error below ``threshold``; elsewhere the previous root stays."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (s, p) in enumerate(zip(statistics, exponents)):
        groups.setdefault((s.shape[0], p), []).append(i)
    out = list(previous)
    for (_, p), index in groups.items():
        stacked = jnp.stack([statistics[i] for i in index])
        eps_, threshold_ = cast_scalars(stacked.dtype, eps, threshold)
        if method == "eigh":
            root = lambda a, e, p=p: _eigh_inverse_root(a, p, e)
        else:
            root = lambda a, e, p=p: matrix_inverse_pth_root(a, p, ridge_epsilon=e)
        roots, errors = jax.vmap(root, in_axes=(0, None))(stacked, eps_)
        ok = jnp.isfinite(errors) & (errors < threshold_) & jnp.all(jnp.isfinite(roots), axis=(1, 2))
        old = jnp.stack([previous[i] for i in index])
        kept = jnp.where(ok[:, None, None], roots.astype(old.dtype), old)
        for k, i in enumerate(index):
            out[i] = kept[k]
    return out


# ------------------------------------------------------------------------- the block


def _check_layouts(state: ShampooState, treedef: Any, layouts: list[_Layout]) -> None:
    """A ``ValueError`` naming the first leaf whose statistics are not those these settings make."""
    paths = [path_str(p) for p, _ in leaves_with_path(state.momentum)]
    for path, lay, stats in zip(paths, layouts, treedef.flatten_up_to(state.statistics)):
        have, want = tuple(s.shape[0] for s in stats), tuple(lay.factor_sizes())
        if have != want:
            raise ValueError(
                f"scale_by_shampoo: the state has statistics of sides {have} for '{path}' (shape {lay.shape}), "
                f"but these settings make {want}: was the state made with other block_size, "
                "best_effort_shape_interpretation, merge_small_dims_block_size or skip_preconditioning_* settings?"
            )


def _integer(name: str, value: Any, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _count_at_least(name: str, value: Any, low: int) -> Any:
    ok = lambda n: float(n).is_integer() and n >= low
    return check_that(name, value, ok, f"an integer >= {low}")


def scale_by_shampoo(
    block_size: int = 128,
    beta1: float = 0.9,
    beta2: float = 0.999,
    diagonal_epsilon: float = 1e-10,
    matrix_epsilon: float = 1e-6,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    statistics_compute_steps: int = 1,
    best_effort_shape_interpretation: bool = True,
    graft_type: str = "sgd",
    nesterov: bool = True,
    exponent_override: int = 0,
    *,
    inverse_failure_threshold: float = 0.1,
    moving_average_for_momentum: bool = False,
    skip_preconditioning_dim_size_gt: int = 4096,
    skip_preconditioning_rank_lt: int = 1,
    merge_small_dims_block_size: int = 4096,
    inverse_root_method: str = "newton",
) -> GradientTransformation:
    r"""The direction of distributed Shampoo (Anil et al., 2020, :arxiv:`2002.09018`, Algorithm 1).

    For each block :math:`G` of rank :math:`k` (the leaf reshaped and cut as described below), at
    update :math:`t = 0, 1, \dots`, with :math:`w = 1` if :math:`\beta_2 = 1` else :math:`1 - \beta_2`:

    .. math::
        L_i \leftarrow \beta_2 L_i + w\, G_{(i)} G_{(i)}^\top \quad (t \bmod T_s = 0), \qquad
        P_i \leftarrow (L_i + \epsilon_m \lambda_{max}(L_i) I)^{-1/p} \quad (t \bmod T_p = 0), \\
        S = G \times_1 P_1 \cdots \times_k P_k, \qquad
        \tilde S = \frac{\lVert D \rVert}{\lVert S \rVert + 10^{-16}}\, S, \qquad
        m_t = \beta_1 m_{t-1} + c\, \tilde S, \quad \bar m_t = \beta_1 \bar m_{t-1} + c\, D,

    with :math:`L_i = \epsilon_m I` and :math:`P_i = I` at first, :math:`G_{(i)}` the block unfolded
    along axis :math:`i`, :math:`p = 2k` (or ``exponent_override``), :math:`c = 1 - \beta_1` with
    ``moving_average_for_momentum`` else 1, and :math:`D` the grafted direction of the whole leaf:
    ``"sgd"`` :math:`g`; ``"sqrt_n"`` :math:`\mathrm{sign}(g)`; ``"adagrad"``
    :math:`g / (\sqrt{v_t} + \epsilon_d)`, :math:`v_t = v_{t-1} + g^2`; ``"rmsprop"`` the same with
    :math:`v_t = \beta_2 v_{t-1} + w g^2`; the ``*_normalized`` ones with :math:`g / (\lVert g \rVert
    + 10^{-16})` in place of :math:`g`. The norms are those of the whole leaf (layer-wise grafting,
    as in the paper and the reference). The direction is :math:`m_t` (Nesterov: :math:`\beta_1 m_t +
    c \tilde S`) from step ``start_preconditioning_step`` on, and :math:`\bar m_t` (Nesterov:
    :math:`\beta_1 \bar m_t + c D`) before it; both momenta are kept at every step. A leaf that is
    not preconditioned has :math:`S = D`. A new root that is not finite or whose error exceeds
    ``inverse_failure_threshold`` is dropped and the previous one kept.

    Blocks: with ``best_effort_shape_interpretation`` the leaf is first reshaped by
    :func:`merge_small_dims` (neighbouring axes merged up to ``merge_small_dims_block_size``, axes of
    length 1 dropped); every axis longer than ``block_size`` is then cut into blocks of
    ``block_size`` (the last one shorter). Leaves of rank below ``skip_preconditioning_rank_lt``
    (by default the 0-d ones), leaves with an axis longer than ``skip_preconditioning_dim_size_gt``
    and empty leaves are only grafted. A 1-D leaf is preconditioned with one factor,
    :math:`L^{-1/2}` (full-matrix AdaGrad on each block), as in the reference.

    Args:
        block_size: the longest side of a block, an integer >= 1 (the reference has no default; 128 is
            the one its documentation suggests).
        beta1: :math:`\beta_1`, the momentum, in [0, 1).
        beta2: :math:`\beta_2`, the decay of the statistics (and of ``"rmsprop"``'s second moment), in
            [0, 1]; 1 sums them, as AdaGrad does.
        diagonal_epsilon: :math:`\epsilon_d \ge 0` of the grafted AdaGrad / RMSProp.
        matrix_epsilon: :math:`\epsilon_m \ge 0`, the ridge added before the root, relative to the
            largest eigenvalue of the statistic.
        start_preconditioning_step: the first update (counted from 0) that uses Shampoo's direction,
            an integer >= 0; the updates before it use the grafted direction alone.
        preconditioning_compute_steps: :math:`T_p`, how often the roots are refreshed, an integer >= 1.
        statistics_compute_steps: :math:`T_s`, how often the statistics are updated, an integer >= 1.
        best_effort_shape_interpretation: merge small neighbouring axes before blocking.
        graft_type: one of ``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"rmsprop_normalized"``,
            ``"sqrt_n"``, ``"adagrad_normalized"`` (the reference's ``GraftingType``).
        nesterov: Nesterov momentum (the reference's default, True).
        exponent_override: :math:`p` for every root, an integer >= 1; 0 for :math:`2k`.
        inverse_failure_threshold: the largest error :math:`\max_{ij}|X^p A - I|_{ij}` a new Newton
            root may have, > 0.
        moving_average_for_momentum: :math:`c = 1 - \beta_1` instead of 1.
        skip_preconditioning_dim_size_gt: leaves with an axis longer than this are only grafted.
        skip_preconditioning_rank_lt: leaves of lower rank are only grafted, an integer >= 1.
        merge_small_dims_block_size: the largest product of merged axes.
        inverse_root_method: ``"newton"``, the coupled Newton iteration of
            :func:`~gradtx.core.linear_algebra.matrix_inverse_pth_root` (the reference's), or
            ``"eigh"``, an eigendecomposition (the reference's ``eigh=True``).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.shampoo import scale_by_shampoo
        >>> tx = scale_by_shampoo(
        ...     beta1=0.0, start_preconditioning_step=0, matrix_epsilon=0.0, best_effort_shape_interpretation=False
        ... )  # without the merge, which would make the (2, 2) leaf one vector of 4
        >>> g = jnp.array([[3.0, 0.0], [0.0, 1.0]])
        >>> u, state = tx.update(g, tx.init(jnp.zeros((2, 2))))
        >>> [[round(x, 6) for x in jnp.diag(s).tolist()] for s in state.statistics]  # (1 - beta2) G G^T, G^T G
        [[0.009, 0.001], [0.009, 0.001]]
        >>> [round(x, 4) for x in u.ravel().tolist()]  # L^(-1/4) G R^(-1/4), grafted to |G|
        [2.2361, 0.0, 0.0, 2.2361]
    """
    block_size = _integer("block_size", block_size, 1)
    exponent_override = _integer("exponent_override", exponent_override, 0)
    skip_dim_gt = _integer("skip_preconditioning_dim_size_gt", skip_preconditioning_dim_size_gt, 0)
    skip_rank_lt = _integer("skip_preconditioning_rank_lt", skip_preconditioning_rank_lt, 1)
    merge_block = _integer("merge_small_dims_block_size", merge_small_dims_block_size, 1)
    check_one_of("graft_type", graft_type, GRAFT_TYPES)
    check_one_of("inverse_root_method", inverse_root_method, INVERSE_ROOT_METHODS)
    hp = Hyperparams(
        beta1=check_decay("beta1", beta1),
        beta2=check_range("beta2", beta2, 0.0, 1.0),
        diagonal_epsilon=check_nonnegative("diagonal_epsilon", diagonal_epsilon),
        matrix_epsilon=check_nonnegative("matrix_epsilon", matrix_epsilon),
        start_preconditioning_step=_count_at_least("start_preconditioning_step", start_preconditioning_step, 0),
        preconditioning_compute_steps=_count_at_least(
            "preconditioning_compute_steps", preconditioning_compute_steps, 1
        ),
        statistics_compute_steps=_count_at_least("statistics_compute_steps", statistics_compute_steps, 1),
        inverse_failure_threshold=check_range(
            "inverse_failure_threshold", inverse_failure_threshold, 0.0, low_open=True
        ),
        allow_schedules=False,
    )
    diagonal = graft_type not in ("sgd", "sqrt_n")
    layout = lambda x: _layout(
        jnp.shape(x), block_size, best_effort_shape_interpretation, merge_block, skip_dim_gt, skip_rank_lt
    )

    def exponent(lay: _Layout) -> int:
        return exponent_override or 2 * len(lay.merged)

    def init(params):
        check_real("scale_by_shampoo", params, "its statistics are real Gram matrices")

        def eye(x, scale):
            dtype = compute_dtype(x)
            return [scale * jnp.eye(d, dtype=dtype) for d in layout(x).factor_sizes()]

        return ShampooState(
            zero_count(),
            jax.tree.map(lambda x: eye(x, jnp.asarray(matrix_epsilon, compute_dtype(x))), params),
            jax.tree.map(lambda x: eye(x, 1), params),
            magnitudes_like(params) if diagonal else None,
            moments_like(params),
            moments_like(params),
            hp.init(),
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.momentum, updates)
        h = hp.values(state.hyperparams)
        treedef = jax.tree.structure(state.momentum)
        grads = treedef.flatten_up_to(updates)
        layouts = [layout(g) for g in grads]
        _check_layouts(state, treedef, layouts)
        # the preconditioned leaves whole on every device (on an Explicit mesh; see kit.whole)
        wholes = [whole(g) if lay.preconditioned else (g, None) for g, lay in zip(grads, layouts)]
        step = state.count.astype(h["beta1"].dtype)
        do_statistics = jnp.remainder(step, h["statistics_compute_steps"]) == 0
        do_roots = jnp.remainder(step, h["preconditioning_compute_steps"]) == 0
        run_shampoo = step >= h["start_preconditioning_step"]

        # 1. the statistics L_i of every block, on the steps that update them
        statistics = []
        for (g, _), lay, old in zip(wholes, layouts, treedef.flatten_up_to(state.statistics)):
            if not old:
                statistics.append([])
                continue
            (b2,) = cast_scalars(old[0].dtype, h["beta2"])
            w = jnp.where(b2 == 1, 1, 1 - b2)
            grams = [
                jnp.tensordot(b, b, axes=(others, others), precision=HIGHEST)
                for b in lay.blocks(g.astype(old[0].dtype))
                for others in ([j for j in range(b.ndim) if j != i] for i in range(b.ndim))
            ]
            statistics.append([jnp.where(do_statistics, b2 * s + w * gram, s) for s, gram in zip(old, grams)])

        # 2. their inverse roots, on the steps that refresh them (one batch per matrix size)
        previous = treedef.flatten_up_to(state.preconditioners)
        flat_stats = [s for leaf in statistics for s in leaf]
        flat_prev = [p for leaf in previous for p in leaf]
        exponents = [exponent(lay) for lay, leaf in zip(layouts, statistics) for _ in leaf]
        if flat_stats:
            eps_m, threshold = h["matrix_epsilon"], h["inverse_failure_threshold"]
            flat_prev = _refresh(
                do_roots, flat_stats, flat_prev, tuple(exponents), eps_m, threshold, inverse_root_method
            )
        roots, start = [], 0
        for leaf in statistics:
            roots.append(flat_prev[start : start + len(leaf)])
            start += len(leaf)

        # 3. the grafted and the Shampoo directions, their momenta
        diag = treedef.flatten_up_to(state.diagonal_statistics) if diagonal else [None] * len(grads)

        def direction(g, g_whole, lay, leaf_roots, v, m_graft, m):
            dtype = compute_dtype(g, m)
            b1, b2, eps_d = cast_scalars(dtype, h["beta1"], h["beta2"], h["diagonal_epsilon"])
            x = g.astype(dtype)
            new_v = v
            if graft_type in ("sgd", "sqrt_n"):
                graft = x if graft_type == "sgd" else jnp.sign(x)
            else:
                scaled = x / (stable_norm(x).astype(dtype) + _TINY) if graft_type.endswith("_normalized") else x
                w = jnp.where(b2 == 1, 1, 1 - b2)
                v_dtype = compute_dtype(v)
                if graft_type.startswith("adagrad"):
                    v_new = v.astype(v_dtype) + jnp.square(scaled)
                else:
                    v_new = b2 * v.astype(v_dtype) + w * jnp.square(scaled)
                graft = scaled / (jnp.sqrt(v_new) + eps_d)
                new_v = v_new.astype(v.dtype)
            if lay.preconditioned:
                blocks, k = [], len(lay.merged)
                for n, block in enumerate(lay.blocks(g_whole[0].astype(dtype))):
                    for root in leaf_roots[n * k : (n + 1) * k]:
                        block = jnp.tensordot(block, root.astype(dtype), axes=[[0], [0]], precision=HIGHEST)
                    blocks.append(block)
                shampoo = g_whole[1](lay.merge(blocks))
            else:
                shampoo = graft
            shampoo = shampoo * (stable_norm(graft).astype(dtype) / (stable_norm(shampoo).astype(dtype) + _TINY))
            c = 1 - b1 if moving_average_for_momentum else jnp.ones((), dtype)
            m_new = b1 * m.astype(dtype) + c * shampoo
            m_graft_new = b1 * m_graft.astype(dtype) + c * graft
            momentum = jnp.where(run_shampoo, m_new, m_graft_new)
            out = b1 * momentum + c * jnp.where(run_shampoo, shampoo, graft) if nesterov else momentum
            return out.astype(g.dtype), new_v, m_graft_new.astype(m_graft.dtype), m_new.astype(m.dtype)

        results = [
            direction(*args)
            for args in zip(
                grads,
                wholes,
                layouts,
                roots,
                diag,
                treedef.flatten_up_to(state.diagonal_momentum),
                treedef.flatten_up_to(state.momentum),
            )
        ]
        out, v, m_graft, m = (jax.tree.unflatten(treedef, [r[i] for r in results]) for i in range(4))
        new_state = ShampooState(
            safe_increment(state.count),
            jax.tree.unflatten(treedef, statistics),
            jax.tree.unflatten(treedef, roots),
            v if diagonal else None,
            m_graft,
            m,
            state.hyperparams,
        )
        return out, new_state

    return GradientTransformation(init, update)


def shampoo(
    learning_rate: ScalarOrSchedule,
    block_size: int = 128,
    beta1: float = 0.9,
    beta2: float = 0.999,
    diagonal_epsilon: float = 1e-10,
    matrix_epsilon: float = 1e-6,
    weight_decay: float = 0.0,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    statistics_compute_steps: int = 1,
    best_effort_shape_interpretation: bool = True,
    graft_type: str = "sgd",
    nesterov: bool = True,
    exponent_override: int = 0,
    *,
    inverse_failure_threshold: float = 0.1,
    moving_average_for_momentum: bool = False,
    skip_preconditioning_dim_size_gt: int = 4096,
    skip_preconditioning_rank_lt: int = 1,
    merge_small_dims_block_size: int = 4096,
    inverse_root_method: str = "newton",
) -> GradientTransformation:
    r"""Distributed Shampoo (Anil et al., 2020, :arxiv:`2002.09018`): :math:`\theta \leftarrow
    \theta - \eta\,(u_t + \lambda \theta)`, with :math:`u_t` the direction of :func:`scale_by_shampoo`.

    The arguments are the reference's ``distributed_shampoo``'s, in its order (the last one is
    its ``eigh``); those not described here are :func:`scale_by_shampoo`'s. Needs the parameters.

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        block_size: the longest side of a block, an integer >= 1.
        beta1: the momentum :math:`\beta_1`, in [0, 1).
        beta2: the decay :math:`\beta_2` of the statistics, in [0, 1] (1: sums).
        diagonal_epsilon: :math:`\epsilon_d \ge 0` of the grafted AdaGrad / RMSProp.
        matrix_epsilon: :math:`\epsilon_m \ge 0`, the relative ridge added before the roots.
        weight_decay: :math:`\lambda \ge 0`, decoupled: added after the momentum and scaled by the
            learning rate (the reference's ``decoupled_weight_decay=True``; its default adds it to
            the grafted and Shampoo directions before the momentum).
        start_preconditioning_step: the first update (from 0) that uses Shampoo's direction.
        preconditioning_compute_steps: how often the roots are refreshed, an integer >= 1.
        statistics_compute_steps: how often the statistics are updated, an integer >= 1.
        best_effort_shape_interpretation: merge small neighbouring axes before blocking.
        graft_type: the grafted direction, one of :data:`GRAFT_TYPES`.
        nesterov: Nesterov momentum.
        exponent_override: :math:`p` for every root; 0 for twice the block's rank.
        inverse_failure_threshold: the largest error a new Newton root may have, > 0.
        moving_average_for_momentum: scale the new direction by :math:`1 - \beta_1` in the momentum.
        skip_preconditioning_dim_size_gt: leaves with an axis longer than this are only grafted.
        skip_preconditioning_rank_lt: leaves of lower rank are only grafted, an integer >= 1.
        merge_small_dims_block_size: the largest product of merged axes.
        inverse_root_method: ``"newton"`` or ``"eigh"``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.shampoo import shampoo
        >>> loss = lambda w: jnp.sum((w["a"] @ jnp.array([1.0, 2.0]) - jnp.array([3.0, -1.0])) ** 2)
        >>> tx, w = shampoo(0.1, start_preconditioning_step=1), {"a": jnp.zeros((2, 2))}
        >>> state, update = tx.init(w), jax.jit(tx.update)
        >>> for _ in range(300):
        ...     updates, state = update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> round(float(loss(w)), 4)
        0.0
    """
    return chain(
        scale_by_shampoo(
            block_size,
            beta1,
            beta2,
            diagonal_epsilon,
            matrix_epsilon,
            start_preconditioning_step,
            preconditioning_compute_steps,
            statistics_compute_steps,
            best_effort_shape_interpretation,
            graft_type,
            nesterov,
            exponent_override,
            inverse_failure_threshold=inverse_failure_threshold,
            moving_average_for_momentum=moving_average_for_momentum,
            skip_preconditioning_dim_size_gt=skip_preconditioning_dim_size_gt,
            skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
            merge_small_dims_block_size=merge_small_dims_block_size,
            inverse_root_method=inverse_root_method,
        ),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
