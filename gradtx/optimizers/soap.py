r"""SOAP (Vyas et al., 2024, :arxiv:`2409.11321`): Adam run in the eigenbasis of Shampoo's
preconditioner.

For every axis :math:`k` of a leaf, SOAP keeps Shampoo's statistic :math:`L_k`, a moving average
of :math:`G_{(k)} G_{(k)}^\top` (the gradient unfolded along that axis: :math:`L` and :math:`R` of
a matrix), and an orthogonal basis :math:`Q_k` of its eigenvectors. Adam's second moment lives in
the rotated coordinates :math:`\tilde G = G \times_1 Q_1^\top \cdots \times_n Q_n^\top`; the bases
are refreshed only every few steps, by one step of power iteration and a QR decomposition, so
that Adam sees a slowly turning basis rather than Shampoo's costly inverse roots.

Following the authors' reference implementation: the first update only gathers the statistics
and takes the first bases by an eigendecomposition (it moves nothing); the first moment is kept
in the parameters' own space and rotated at every step; at a refresh the second moment is
carried over by reordering it with the basis (each axis sorted by the eigenvalues estimated in
the old basis), not by rotating it. Axes longer than ``max_precond_dim`` keep the identity basis,
and 1-D leaves run plain Adam unless ``precondition_1d``.

Departure from the authors' code: a rank-deficient statistic (the first one of any non-square
kernel, :math:`G^\top G` of a (3, 4) one) has a null space in which ``eigh`` (or the refresh's QR)
picks a basis by rounding, and Adam's elementwise normalisation of the next gradient there
depends on it: other reductions (another device layout) gave other steps. Here the columns of
eigenvalue (or :math:`|R_{ii}|`) at most :math:`n\,\varepsilon\,\lambda_{\max}` are replaced by
a basis of the complement of the others that depends on that subspace only (the eigenvectors of
:math:`P\,\mathrm{diag}(1, \ldots, n)\,P`, :math:`P` its projector), at the cost of one more
``eigh`` on the steps that have such columns, and every eigenvector is signed to make its largest
entry positive; a full-rank statistic's basis is eigh's up to these signs, which no update
depends on. Left as it is: when two successive gradients are equal (a loss that does not depend on
the batch: the first update moves nothing), the second, rotated, is diagonal up to rounding, and
Adam normalises that rounding into steps of order :math:`(1-\beta_1)/\sqrt{1-\beta_2}` where it
exceeds ``eps``, as in the authors' code.

State and sharding: the moments are made from the parameters and follow their shardings; the
statistics and bases (:math:`d \times d` per axis) are not shaped like any parameter and are plain
arrays, kept in at least float32 (an eigendecomposition in bfloat16 or float16 is not useful).
"""

from __future__ import annotations

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
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.paths import leaves_with_path, path_str
from gradtx.core.validation import check_decay, check_nonnegative, check_positive, check_range, check_that
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

HIGHEST = jax.lax.Precision.HIGHEST


class ScaleBySoapState(NamedTuple):
    """SOAP's state: the step count; the first moment ``mu`` (in the parameters' space) and the
    second moment ``nu`` (in the eigenbasis), shaped like the parameters; per leaf, a tuple with
    one statistic ``GG`` (the paper's :math:`L`, :math:`R`: the moving average of
    :math:`G_{(k)} G_{(k)}^\top`) and one eigenbasis ``Q`` per axis (after ``merge_dims``), a 0-d
    placeholder for an axis that is not rotated; and the hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    GG: Any
    Q: Any
    hyperparams: dict[str, Any]


class _Plan(NamedTuple):
    """How a leaf is preconditioned: its shape as the statistics see it (merged axes) and which of
    those axes are rotated."""

    shape: tuple[int, ...]
    rotated: tuple[bool, ...]


def _merged_shape(shape: tuple[int, ...], max_dim: int) -> tuple[int, ...]:
    """Adjacent axes multiplied together while the product stays at most ``max_dim`` (the
    reference's ``merge_dims``): (2, 3, 5, 7) with 30 gives (30, 7)."""
    out: list[int] = []
    run = 1
    for d in shape:
        if run * d <= max_dim:
            run *= d
        elif run > 1:
            out.append(run)
            run = d
        else:
            out.append(d)
    if run > 1 or not out:
        out.append(run)
    return tuple(out)


def _plan(shape: tuple[int, ...], max_dim: int, merge_dims: bool, precondition_1d: bool) -> _Plan:
    if not shape or math.prod(shape) == 0:  # a scalar or an empty leaf: plain Adam
        return _Plan(tuple(shape), (False,) * len(shape))
    if len(shape) == 1:
        return _Plan(tuple(shape), (precondition_1d and shape[0] <= max_dim,))
    dims = _merged_shape(tuple(shape), max_dim) if merge_dims else tuple(shape)
    return _Plan(dims, tuple(d <= max_dim for d in dims))


def _project(x: jax.Array, qs: list[Any], back: bool = False) -> jax.Array:
    r""":math:`x \times_1 Q_1^H \cdots` (into the eigenbasis), or with ``back`` :math:`x \times_1 Q_1 \cdots`."""
    for k, q in enumerate(qs):
        if q is not None:
            y = (
                jnp.tensordot(x, q, axes=([k], [1]), precision=HIGHEST)
                if back
                else jnp.tensordot(x, jnp.conj(q), axes=([k], [0]), precision=HIGHEST)
            )
            x = jnp.moveaxis(y, -1, k)
    return x


def _statistic(x: jax.Array, k: int) -> jax.Array:
    """:math:`G_{(k)} G_{(k)}^H`: ``x`` unfolded along axis ``k``, times its conjugate transpose."""
    unfolded = jnp.moveaxis(x, k, 0).reshape(x.shape[k], -1)
    return jnp.matmul(unfolded, jnp.conj(unfolded).T, precision=HIGHEST)


def _negligible(x: jax.Array) -> jax.Array:
    r"""Where the magnitudes ``x`` (eigenvalues, or the diagonal of QR's R) are at most
    :math:`n\,\varepsilon \max_i x_i`: the rounding level of a rank-deficient statistic."""
    level = x.shape[0] * jnp.finfo(x.dtype).eps * jnp.maximum(jnp.max(x), 0)
    return x <= level


def _fill_null_space(q: jax.Array, null: jax.Array) -> jax.Array:
    r"""``q`` with its columns where ``null`` replaced by a basis of the orthogonal complement of
    the others that depends on that subspace only, not on the rounding that chose ``q``'s columns.

    :math:`P = I - K K^H` (:math:`K`: the kept columns) projects onto the complement; the new
    columns are the eigenvectors of :math:`P D P`, :math:`D = \mathrm{diag}(1, \ldots, n)`,
    with nonzero eigenvalue (those of :math:`D` compressed to the complement, all >= 1), by
    increasing eigenvalue, signed by :func:`_signed`. A zero statistic gives the identity."""
    n = q.shape[0]
    kept = jnp.where(null[None, :], jnp.zeros_like(q), q)
    p = jnp.eye(n, dtype=q.dtype) - jnp.matmul(kept, jnp.conj(kept).T, precision=HIGHEST)
    weights = jnp.arange(1, n + 1, dtype=real_dtype(q.dtype))
    m = jnp.matmul(p * weights[None, :], p, precision=HIGHEST)
    vectors = jnp.linalg.eigh(0.5 * (m + jnp.conj(m).T))[1]  # the kept space first (eigenvalues ~0)
    rank = jnp.cumsum(null) - 1  # the i-th null column takes the i-th vector of the complement
    fill = jnp.take(vectors, jnp.where(null, n - jnp.sum(null) + rank, 0), axis=1)
    return jnp.where(null[None, :], _signed(fill), q)


def _signed(q: jax.Array) -> jax.Array:
    """Each column of ``q`` scaled to make its entry of largest magnitude real and positive (the
    first of equal ones): eigenvectors then do not flip with rounding. The updates do not depend
    on these signs, only the bases in the state."""
    big = jnp.take_along_axis(q, jnp.argmax(jnp.abs(q), axis=0)[None, :], axis=0)
    return q * (jnp.conj(big) / jnp.abs(big))


def _canonical(q: jax.Array, null: jax.Array) -> jax.Array:
    """:func:`_fill_null_space` where some column is ``null``; ``q`` itself (the cost of nothing
    more) when none is."""
    return cond(jnp.any(null), lambda: _fill_null_space(q, null), lambda: q)


def _eigenbasis(gg: jax.Array) -> jax.Array:
    """The eigenvectors of ``gg``, by decreasing eigenvalue (the reference flips ``eigh``'s order),
    signed by :func:`_signed`, those of negligible eigenvalue replaced by :func:`_fill_null_space`'s."""
    w, q = jnp.linalg.eigh(gg)
    return _canonical(_signed(q[:, ::-1]), _negligible(w[::-1]))


def _power_step(gg: jax.Array, q: jax.Array, v: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """One power-iteration step and a QR decomposition from the previous basis, its columns (and
    ``v`` along axis ``k``) first sorted by decreasing estimated eigenvalue :math:`q_i^H L q_i`;
    the columns whose :math:`|R_{ii}|` is negligible (dependent on the ones before them: a
    rank-deficient statistic) replaced by :func:`_fill_null_space`'s."""
    lq = jnp.matmul(gg, q, precision=HIGHEST)
    estimate = jnp.real(jnp.sum(jnp.conj(q) * lq, axis=0))
    order = jnp.argsort(-estimate, stable=True)
    new, r = jnp.linalg.qr(lq[:, order])
    return _canonical(new, _negligible(jnp.abs(jnp.diagonal(r)))), jnp.take(v, order, axis=k)


def _check_bases(path: Any, g: Any, qs: Any, plan: _Plan) -> None:
    """A ``ValueError`` naming the leaf when the state's bases are not the ones this optimizer makes."""
    want = tuple((d, d) if r else () for d, r in zip(plan.shape, plan.rotated))
    got = tuple(jnp.shape(q) for q in qs) if isinstance(qs, tuple) else None
    if got != want:
        raise ValueError(
            f"scale_by_soap: the state has bases of shapes {got} for '{path_str(path)}' (shape {jnp.shape(g)}), "
            f"but these settings make {want}: was the state made with other max_precond_dim, merge_dims "
            "or precondition_1d?"
        )


def _check_int(name: str, value: Any) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    check_range(name, value, 1)
    return int(value)


def scale_by_soap(
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float = -1.0,
    eps: float = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> GradientTransformation:
    r"""SOAP's direction (Vyas et al., 2024, :arxiv:`2409.11321`, its algorithm box): Adam in the
    eigenbasis of Shampoo's preconditioner, axis by axis.

    For a leaf :math:`G_t` with axes :math:`k = 1..n`, step :math:`t \ge 1` (the first call is
    :math:`t = 0`), :math:`\beta_s` = ``shampoo_beta`` (:math:`\beta_2` when negative) and
    :math:`\mathcal{Q}(X) = X \times_1 Q_1^\top \cdots \times_n Q_n^\top` (the identity on an axis
    that is not rotated):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) G_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \mathcal{Q}(G_t)^2, \\
        u_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\;
              \mathcal{Q}^{-1}\!\left(\frac{\mathcal{Q}(m_t)}{\sqrt{v_t} + \epsilon}\right), \qquad
        L_{k,t} = \beta_s L_{k,t-1} + (1-\beta_s)\, G_{t(k)} G_{t(k)}^\top,

    with :math:`m`, :math:`v`, :math:`L` zero at first. At :math:`t = 0` only :math:`L_{k,0}` is
    gathered, :math:`Q_k` becomes its eigenvectors (by decreasing eigenvalue) and the update is
    zero. After the update of every step :math:`t` that is a multiple of :math:`f` =
    ``precondition_frequency``, each :math:`Q_k` is refreshed as
    :math:`\mathrm{QR}(L_{k,t} Q_k)`, its columns first sorted by decreasing
    :math:`\mathrm{diag}(Q_k^\top L_{k,t} Q_k)` and :math:`v_t` reordered with them along axis
    :math:`k` (the reference's way of carrying :math:`v` into the new basis). ``normalize_grads``
    divides :math:`\mathcal{Q}^{-1}(\cdot)` by its RMS (plus 1e-30) before the bias correction.
    Complex leaves use :math:`G G^H` and :math:`Q^H`, and :math:`|\cdot|^2`.

    The defaults are those of the authors' reference implementation. Leaves of any
    rank get one statistic per axis, as the reference does.

    Args:
        b1: :math:`\beta_1` of the first moment, a number or 0-d array in [0, 1) (0.95).
        b2: :math:`\beta_2` of the second moment, in [0, 1) (0.95).
        shampoo_beta: :math:`\beta_s` of the statistics, in [0, 1); a negative value (the default,
            -1) uses :math:`\beta_2`.
        eps: :math:`\epsilon`, added to :math:`\sqrt{v}`: a number or 0-d array, > 0.
        precondition_frequency: :math:`f`, the steps between refreshes of the bases: an int >= 1
            (kept in the state as a hyperparameter).
        max_precond_dim: an axis longer than this keeps the identity basis (no statistic): an int >= 1.
        merge_dims: first merge adjacent axes while their product stays at most ``max_precond_dim``
            (e.g. a (64, 3, 3) kernel with 1000 becomes (576,)), for leaves of 2 or more axes.
        precondition_1d: rotate 1-D leaves too (of length at most ``max_precond_dim``); otherwise
            they run plain Adam (with the same first step).
        normalize_grads: divide each leaf's direction by its RMS.
        correct_bias: Adam's bias correction :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.soap import scale_by_soap
        >>> tx = scale_by_soap()
        >>> state = tx.init(jnp.zeros((2, 2)))
        >>> g = jnp.array([[3.0, 0.0], [0.0, 1.0]])
        >>> u, state = tx.update(g, state)  # the first call only takes the eigenbases
        >>> u.tolist()
        [[0.0, 0.0], [0.0, 0.0]]
        >>> u, state = tx.update(g, state)  # Adam's first step in that basis: the signs
        >>> [[round(x, 4) for x in row] for row in u.tolist()]
        [[1.0, 0.0], [0.0, 1.0]]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        shampoo_beta=check_that("shampoo_beta", shampoo_beta, lambda x: x < 1, "in [0, 1), or negative to use b2"),
        eps=check_positive("eps", eps),
        precondition_frequency=_check_int("precondition_frequency", precondition_frequency),
        allow_schedules=False,
    )
    max_dim = _check_int("max_precond_dim", max_precond_dim)

    def plan(shape: tuple[int, ...]) -> _Plan:
        return _plan(tuple(shape), max_dim, bool(merge_dims), bool(precondition_1d))

    def init(params):
        def factors(p, fill):
            p = jnp.asarray(p)
            dtype, pl = compute_dtype(p), plan(p.shape)
            return tuple(fill(d, dtype) if r else jnp.zeros((), dtype) for d, r in zip(pl.shape, pl.rotated))

        gg = jax.tree.map(lambda p: factors(p, lambda d, dtype: jnp.zeros((d, d), dtype)), params)
        q = jax.tree.map(lambda p: factors(p, lambda d, dtype: jnp.eye(d, dtype=dtype)), params)
        return ScaleBySoapState(zero_count(), moments_like(params), magnitudes_like(params), gg, q, hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = state.count
        first = count == 0  # t = 0: gather the statistics, take the eigenbases, move nothing
        frequency = jnp.maximum(jnp.round(h["precondition_frequency"]).astype(count.dtype), 1)
        refresh = (count > 0) & (count % frequency == 0)
        shampoo_b = jnp.where(h["shampoo_beta"] >= 0, h["shampoo_beta"], h["b2"])

        def step(g, m, v, ggs, qs):
            pl = plan(g.shape)
            g, lay_out = whole(g)
            dtype = compute_dtype(g, m, v, *ggs)
            rdtype = real_dtype(dtype)
            b1_, b2_, eps_, bs_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"], shampoo_b)
            t = jnp.maximum(count, 1).astype(rdtype)
            x = g.astype(dtype).reshape(pl.shape)
            basis = [q.astype(dtype) if r else None for q, r in zip(qs, pl.rotated)]
            m_new = b1_ * whole(m)[0].astype(dtype).reshape(pl.shape) + (1 - b1_) * x
            v_old = whole(v)[0].astype(rdtype).reshape(pl.shape)
            v_new = b2_ * v_old + (1 - b2_) * abs_sq(_project(x, basis))
            u = _project(_project(m_new, basis) / (jnp.sqrt(v_new) + eps_), basis, back=True)
            if normalize_grads and u.size:
                u = u / (1e-30 + jnp.sqrt(jnp.mean(abs_sq(u))))
            if correct_bias:
                u = u * (jnp.sqrt(1 - b2_**t) / (1 - b1_**t))
            u = jnp.where(first, jnp.zeros_like(u), u)
            m_new = jnp.where(first, jnp.zeros_like(m_new), m_new)
            v_new = jnp.where(first, jnp.zeros_like(v_new), v_new)
            # L_k <- b_s L_k + (1 - b_s) G_(k) G_(k)^H, after the update (not used by this step)
            stats = [
                bs_ * gg.astype(dtype) + (1 - bs_) * _statistic(x, k) if r else gg
                for k, (gg, r) in enumerate(zip(ggs, pl.rotated))
            ]
            axes = [k for k, r in enumerate(pl.rotated) if r]

            def eigenbases():
                return tuple(_eigenbasis(stats[k]) for k in axes), v_new

            def power_step():
                new, w = [], v_new
                for k in axes:
                    q, w = _power_step(stats[k], basis[k], w, k)
                    new.append(q)
                return tuple(new), w

            def kept():
                return tuple(basis[k] for k in axes), v_new

            if axes:
                fresh, v_new = cond(first, eigenbases, lambda: cond(refresh, power_step, kept))
                by_axis = dict(zip(axes, fresh))
            else:
                by_axis = {}
            new_qs = tuple(by_axis[k].astype(q.dtype) if k in by_axis else q for k, q in enumerate(qs))
            new_ggs = tuple(s.astype(gg.dtype) for s, gg in zip(stats, ggs))
            back = lambda y, like: lay_out(y.reshape(like.shape)).astype(like.dtype)  # noqa: E731
            return back(u, g), back(m_new, m), back(v_new, v), new_ggs, new_qs

        treedef = jax.tree.structure(updates)
        flat = treedef.flatten_up_to
        for (path, g), qs in zip(leaves_with_path(updates), flat(state.Q)):
            _check_bases(path, g, qs, plan(g.shape))
        out = [step(*a) for a in zip(flat(updates), flat(state.mu), flat(state.nu), flat(state.GG), flat(state.Q))]
        u, mu, nu, gg, q = (jax.tree.unflatten(treedef, [o[i] for o in out]) for i in range(5))
        return u, ScaleBySoapState(safe_increment(count), mu, nu, gg, q, state.hyperparams)

    return GradientTransformation(init, update)


class _FirstStepState(NamedTuple):
    """The step count of :func:`_no_first_step`."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count


def _no_first_step() -> GradientTransformation:
    """Zero updates on the first call, as they come afterwards: SOAP's first step moves nothing
    (weight decay included, as in the reference)."""

    def init(params):
        return _FirstStepState(zero_count())

    def update(updates, state, params=None, **extra_args):
        first = state.count == 0
        zeroed = jax.tree.map(lambda u: jnp.where(first, jnp.zeros_like(u), u), updates)
        return zeroed, _FirstStepState(safe_increment(state.count))

    return GradientTransformation(init, update)


def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float = -1.0,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> GradientTransformation:
    r"""SOAP (Vyas et al., 2024, :arxiv:`2409.11321`):
    :math:`\theta_t = \theta_{t-1} - \eta\,(u_t + \lambda\,\theta_{t-1})` for :math:`t \ge 1`.

    :math:`u_t` is :func:`scale_by_soap`'s direction; the first call (:math:`t = 0`) leaves the
    parameters where they are, weight decay included. The defaults are the authors' reference
    implementation's. The reference decays the weights after the step,
    :math:`\theta \leftarrow (\theta - \eta u_t)(1 - \eta\lambda)`; here the decay is AdamW's,
    from :math:`\theta_{t-1}` (a difference of :math:`\eta^2 \lambda u_t`).

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule, >= 0 (3e-3).
        b1: :math:`\beta_1` in [0, 1) (0.95).
        b2: :math:`\beta_2` in [0, 1) (0.95).
        shampoo_beta: :math:`\beta_s` of Shampoo's statistics in [0, 1); negative: :math:`\beta_2` (-1).
        eps: :math:`\epsilon > 0` (1e-8).
        weight_decay: the decoupled weight decay :math:`\lambda \ge 0`: a number, 0-d array or schedule (0.01).
        precondition_frequency: the steps between refreshes of the eigenbases, an int >= 1 (10).
        max_precond_dim: longer axes are not rotated, an int >= 1 (10000).
        merge_dims: merge adjacent axes up to ``max_precond_dim`` first (False).
        precondition_1d: rotate 1-D leaves too (False: plain Adam for them).
        normalize_grads: divide each leaf's direction by its RMS (False).
        correct_bias: Adam's bias correction (True).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.soap import soap
        >>> target = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
        >>> loss = lambda w: jnp.sum((w - target) ** 2)
        >>> tx, w = soap(0.05, weight_decay=0.0), jnp.zeros((2, 3))
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> bool(loss(w) < 1e-3)
        True
    """
    check_nonnegative("weight_decay", weight_decay)
    return chain(
        scale_by_soap(
            b1, b2, shampoo_beta, eps, precondition_frequency, max_precond_dim,
            merge_dims=merge_dims, precondition_1d=precondition_1d, normalize_grads=normalize_grads,
            correct_bias=correct_bias,
        ),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate, allow_none=False),
        _no_first_step(),
    )  # fmt: skip
