r"""Muon: momentum orthogonalized by Newton-Schulz (Jordan et al., 2024, "Muon: an optimizer for
hidden layers"; Liu et al., 2025, :arxiv:`2502.16982`, for weight decay and the RMS-matched scale).

Each matrix leaf's momentum :math:`M` is replaced by the nearest semi-orthogonal matrix
:math:`O \approx UV^\top` (for :math:`M = U\Sigma V^\top`), computed by a few Newton-Schulz
iterations of an odd quintic (gradtx/transforms/orthogonalization.py, shared with NorMuon), which
sends every singular value into a band around 1. Which axes of a leaf form the matrix is said by
:class:`MuonDimensionNumbers`; the other axes are batch axes, each slice its own matrix.
:func:`muon` updates the other leaves (by default, those that are not 2-D) with AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import cast_scalars, check_updates, moments_like, update_moment, whole
from gradtx.core.numerics import compute_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of, check_positive
from gradtx.optimizers.adam import adam_first_moment, bias_reciprocals, with_adam_for_the_rest
from gradtx.transforms.combine import chain
from gradtx.transforms.orthogonalization import (
    NS_PRESETS,
    PRECONDITIONINGS,
    apply_newton_schulz_grouped,
    as_matrices,
    matrix_axes,
    matrix_fans,
    matrix_leaves,
    ns_coefficients,
)

_ADJUST_LR = ("original", "match_rms_adamw")


class MuonState(NamedTuple):
    """Muon's state: the step count, the momentum ``mu`` and the Newton-Schulz coefficients, shape
    ``(3,)`` or ``(steps, 3)`` (settable with ``state._replace``)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    ns_coeffs: jax.Array
    hyperparams: dict[str, Any]


# ------------------------------------------------------------------------- Muon


def scale_by_muon(
    ns_coeffs: Any = NS_PRESETS["standard"],
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Muon's direction (from K. Jordan's 2024 blog post, which has no arXiv identifier): momentum,
    orthogonalized matrix by matrix.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
        \hat m_t = \beta m_t + (1-\beta) g_t \ \text{(Nesterov) or } m_t, \qquad
        u_t = \mathrm{NS}(\hat m_t)

    with :math:`\mathrm{NS}` the Newton-Schulz iteration of :func:`~gradtx.transforms.orthogonalization.newton_schulz`, on the matrices
    that ``weight_dimension_numbers`` define (batch axes: one matrix per slice). ``adaptive``
    multiplies :math:`u_t` by :math:`\mathrm{Re}\langle \hat m_t, u_t \rangle_F` (about the nuclear
    norm, the dual of the spectral norm; Bernstein & Newhouse, :arxiv:`2409.20325`), per matrix.
    ``bias_correction=True`` takes Optax's :math:`\hat m_t` instead, Adam's bias-corrected moment
    (NAdam's look-ahead with ``nesterov``): the same direction without Nesterov (up to
    :math:`\epsilon`), with other weights of :math:`g_t` and :math:`m_t` in the first steps with it.

    Args:
        ns_coeffs: the quintic's :math:`(a, b, c)` (Optax's and torch.optim's default
            (3.4445, -4.7750, 2.0315)), a sequence of one triple per step, or ``"standard"``, ``"dion"``
            or ``"polar_express"`` (Amsel et al., 2025, :arxiv:`2505.16932`: ``ns_steps`` of its
            per-step quintics).
        ns_steps: Newton-Schulz iterations, an integer >= 0 (5); a sequence of triples sets its own
            number of steps, and ``ns_steps`` must be at least its length (as Optax); with
            ``"polar_express"`` it picks how many of the preset's steps run.
        beta: the momentum :math:`\beta`, a number or 0-d array in [0, 1).
        eps: :math:`\epsilon \ge 0` of the normalization (Optax's 1e-8; torch.optim.Muon uses 1e-7).
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        nesterov: use Nesterov's look-ahead :math:`\hat m_t` (True).
        adaptive: scale by :math:`\mathrm{Re}\langle \hat m_t, u_t \rangle`, per matrix (Optax sums
            over the batch axes of a leaf as well).
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"schatten"`` or ``"aol"`` (see :func:`~gradtx.transforms.orthogonalization.newton_schulz`).
        weight_dimension_numbers: the :class:`MuonDimensionNumbers` of every leaf: one for all, a tree
            like the parameters (None leaves: 2-D, axes (0, 1)), or a function of the parameters
            returning one; ``None``: every leaf must be 2-D.
        bias_correction: Optax's bias-corrected momentum (False: the paper's).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.muon import scale_by_muon
        >>> tx = scale_by_muon()
        >>> u, _ = tx.update(jnp.array([[3.0, 0.0], [0.0, 0.5]]), tx.init(jnp.zeros((2, 2))))
        >>> [[round(x, 1) for x in row] for row in u.tolist()]  # singular values 3, 0.5 -> about 1
        [[0.7, 0.0], [0.0, 1.0]]
    """
    coeffs = ns_coefficients(ns_coeffs, ns_steps)
    check_one_of("preconditioning", preconditioning, PRECONDITIONINGS)
    hp = Hyperparams(beta=check_decay("beta", beta), eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        matrix_axes(weight_dimension_numbers, params)  # fail at init on a leaf with no matrix
        return MuonState(zero_count(), moments_like(params, mu_dtype), jnp.asarray(coeffs, float_dtype()), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        specs = matrix_axes(weight_dimension_numbers, updates if params is None else params)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["beta"], 1), updates, state.mu)

        def matrices(g, m, spec):  # the leaf's stack of matrices, and the way back to the leaf
            dtype = compute_dtype(g, m)
            (beta_,) = cast_scalars(dtype, h["beta"])
            c1, c1_next = bias_reciprocals(beta_, beta_, count)[:2] if bias_correction else (1, 1)
            m_hat = adam_first_moment(g.astype(dtype), m.astype(dtype), beta_, c1, c1_next, nesterov)
            if m_hat.size == 0:  # no matrix entries: nothing to orthogonalize
                return m_hat, lambda o: o.astype(g.dtype)
            m_hat, lay_out = whole(m_hat)  # the iteration's products need the whole matrix
            stack, back = as_matrices(m_hat, spec)
            return stack, lambda o: lay_out(back(o)).astype(g.dtype)

        flat, treedef = jax.tree.flatten(updates)
        prepared = [matrices(*leaf) for leaf in zip(flat, treedef.flatten_up_to(mu), treedef.flatten_up_to(specs))]
        stacks = [stack for stack, _ in prepared]
        full = [i for i, stack in enumerate(stacks) if stack.size]  # an empty matrix stays empty
        ortho = apply_newton_schulz_grouped(
            [stacks[i] for i in full], state.ns_coeffs, ns_steps, h["eps"], preconditioning
        )
        found = dict(zip(full, ortho))
        out = []
        for i, (stack, finish) in enumerate(prepared):
            o = found.get(i, stack)
            if adaptive and i in found:
                o = o * jnp.sum(jnp.real(jnp.conj(stack) * o), axis=(-2, -1), keepdims=True)
            out.append(finish(o))
        return jax.tree.unflatten(treedef, out), MuonState(count, mu, state.ns_coeffs, state.hyperparams)

    return GradientTransformation(init, update)


class ScaleByMatrixShapeState(NamedTuple):
    """Muon's learning-rate adjustment for the matrix shape: its constant, if it has one."""

    hyperparams: dict[str, Any]


def _scale_by_matrix_shape(dims: Any, adjust_lr_fn: Any, consistent_rms: Any) -> GradientTransformation:
    """Each matrix leaf times its shape's factor: sqrt(max(1, fan_out/fan_in)) ("original"),
    rms * sqrt(max(fan_in, fan_out)) ("match_rms_adamw"), or ``adjust_lr_fn(fan_in, fan_out)``."""
    hp = (
        Hyperparams(consistent_rms=consistent_rms, allow_schedules=False)
        if consistent_rms is not None
        else Hyperparams()
    )

    def factor(shape, spec, h):
        fan_in, fan_out = matrix_fans(shape, spec)
        if callable(adjust_lr_fn):
            return jnp.asarray(adjust_lr_fn(fan_in, fan_out))
        if consistent_rms is not None:
            return h["consistent_rms"] * math.sqrt(max(fan_in, fan_out))
        return jnp.asarray(math.sqrt(max(1.0, fan_out / fan_in)) if fan_in else 1.0)  # no entries: any factor

    def init(params):
        return ScaleByMatrixShapeState(hp.init())

    def update(updates, state, params=None, **extra_args):
        h = hp.values(state.hyperparams)
        specs = matrix_axes(dims, updates if params is None else params)

        def scale(u, spec):
            f = factor(u.shape, spec, h)
            return (u * f.astype(jnp.promote_types(u.dtype, f.dtype))).astype(u.dtype)

        return jax.tree.map(scale, updates, specs), state

    return GradientTransformation(init, update)


def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = NS_PRESETS["standard"],
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
    adjust_lr_fn: str | Callable[[int, int], Any] | None = None,
    adam_eps: float | None = None,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Muon (K. Jordan's 2024 blog post; Liu et al., 2025, :arxiv:`2502.16982`) for the matrices,
    AdamW for the other leaves.

    .. math::
        W_t = W_{t-1} - \eta_t \left( s(A, B)\, \mathrm{NS}(\hat m_t) + \lambda W_{t-1} \right)

    for an :math:`A \times B` matrix leaf (:math:`A` = fan-in, the ``reduction_axis``;
    :math:`B` = fan-out), with :math:`\hat m_t` and :math:`\mathrm{NS}` as in :func:`scale_by_muon`
    and the decoupled weight decay of Moonlight (Liu et al., :arxiv:`2502.16982`, Algorithm 1).
    The shape factor :math:`s` is, by default, :math:`\sqrt{\max(1, B/A)}` (Optax's;
    torch.optim.Muon's ``"original"``); ``consistent_rms=r`` or ``adjust_lr_fn="match_rms_adamw"``
    gives Moonlight's :math:`r \sqrt{\max(A, B)}` (:math:`r = 0.2`), whose updates have AdamW's RMS.
    Leaves without dimension numbers get :math:`-\eta'(\mathrm{Adam}_t + \lambda' W_{t-1})`, NAdam's
    look-ahead with ``nesterov``.

    Args:
        learning_rate: :math:`\eta`, a number, 0-d array or schedule, >= 0.
        ns_coeffs: the Newton-Schulz coefficients (see :func:`scale_by_muon`).
        ns_steps: Newton-Schulz iterations (5).
        beta: Muon's momentum :math:`\beta` in [0, 1) (0.95).
        eps: :math:`\epsilon` of the normalization, and Adam's (1e-8; torch.optim.Muon's is 1e-7).
        weight_decay: :math:`\lambda \ge 0` for the matrix leaves, a number, 0-d array or schedule.
        weight_decay_mask: which matrix leaves to decay: a tree of bools or a function of the
            parameters; ``None``: all.
        mu_dtype: the dtype of the first moments (Muon's and Adam's); ``None``: each parameter's.
        nesterov: Nesterov's look-ahead, for Muon and Adam.
        adaptive: scale each orthogonalized matrix by :math:`\mathrm{Re}\langle \hat m_t, u_t\rangle`.
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"schatten"`` or ``"aol"``.
        adam_b1: Adam's :math:`\beta_1` in [0, 1).
        adam_b2: Adam's :math:`\beta_2` in [0, 1).
        adam_eps_root: Adam's :math:`\epsilon_{root} \ge 0`.
        adam_weight_decay: :math:`\lambda' \ge 0` for every Adam leaf, a number, 0-d array or schedule.
        adam_learning_rate: :math:`\eta'` for the Adam leaves; ``None``: ``learning_rate``.
        muon_weight_dimension_numbers: each leaf's :class:`MuonDimensionNumbers`, or None for Adam: one
            for all, a tree like the parameters, or a function of the parameters returning one (given
            a tree whose other leaves are empty nodes, so map over it); ``None``: the 2-D leaves.
        consistent_rms: :math:`r > 0` for :math:`s = r\sqrt{\max(A, B)}`; ``None``: see ``adjust_lr_fn``.
        adjust_lr_fn: (gradtx) torch.optim.Muon's choice: ``None`` or ``"original"`` for
            :math:`\sqrt{\max(1, B/A)}`, ``"match_rms_adamw"`` for :math:`r\sqrt{\max(A, B)}`, or a
            function ``(fan_in, fan_out) -> factor``.
        adam_eps: (gradtx) Adam's own :math:`\epsilon`; ``None``: ``eps``.
        bias_correction: (gradtx) Optax's bias-corrected Muon momentum (see :func:`scale_by_muon`);
            False, the paper's, is the default.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.muon import muon
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)
        >>> tx = muon(0.1)
        >>> state = tx.init(params)
        >>> for _ in range(100):
        ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> bool(loss(params) < 0.01)
        True
    """
    if not callable(adjust_lr_fn):
        check_one_of("adjust_lr_fn", adjust_lr_fn, (None, *_ADJUST_LR))
    if consistent_rms is not None:
        check_positive("consistent_rms", consistent_rms)
        if adjust_lr_fn is not None and adjust_lr_fn != "match_rms_adamw":
            raise ValueError(
                f"consistent_rms={consistent_rms!r} is the constant of 'match_rms_adamw', not of adjust_lr_fn={adjust_lr_fn!r}"
            )
    elif adjust_lr_fn == "match_rms_adamw":
        consistent_rms = 0.2
    dims = matrix_leaves if muon_weight_dimension_numbers is None else muon_weight_dimension_numbers

    def labels(params):
        specs = matrix_axes(dims, params, default_2d=False)
        return jax.tree.map(lambda s: "adam" if s.reduction is None else "muon", specs)

    muon_part = chain(
        scale_by_muon(
            ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov, adaptive=adaptive,
            preconditioning=preconditioning, weight_dimension_numbers=dims, bias_correction=bias_correction,
        ),
        _scale_by_matrix_shape(dims, adjust_lr_fn if callable(adjust_lr_fn) else None, consistent_rms),
    )  # fmt: skip
    return with_adam_for_the_rest(
        "muon", muon_part, labels, learning_rate, weight_decay, weight_decay_mask,
        adam_b1=adam_b1, adam_b2=adam_b2, adam_eps=eps if adam_eps is None else adam_eps, adam_eps_root=adam_eps_root,
        mu_dtype=mu_dtype, nesterov=nesterov, adam_learning_rate=adam_learning_rate, adam_weight_decay=adam_weight_decay,
    )  # fmt: skip
