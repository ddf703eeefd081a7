r"""NorMuon: Muon's orthogonalized momentum, normalized neuron by neuron (Li et al., 2025,
"NorMuon: Making Muon more efficient and scalable", :arxiv:`2510.05491`).

Muon's update :math:`O = \mathrm{NS}(M)` has singular values near 1 but rows (neurons) of very
different norms. NorMuon keeps an Adam-like second moment of each output neuron of :math:`O` (its
mean square over the fan-in), divides by its root, and rescales the matrix so that its RMS is
AdamW's. The matrices, their Newton-Schulz iteration and :class:`~gradtx.transforms.orthogonalization.MuonDimensionNumbers` are those of
Muon (gradtx/transforms/orthogonalization.py); :func:`normuon` updates the other leaves with AdamW.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, update_moment, whole
from gradtx.core.numerics import abs_sq, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of, check_positive
from gradtx.optimizers.adam import adam_first_moment, with_adam_for_the_rest
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

__all__ = ["NorMuonState", "normuon", "scale_by_normuon"]


class NorMuonState(NamedTuple):
    """NorMuon's state: the step count, the momentum ``mu``, the neurons' second moments ``v``
    (each shaped like its parameter with the reduction axes of size 1) and the Newton-Schulz
    coefficients, shape ``(3,)`` or ``(steps, 3)`` (settable with ``state._replace``)."""

    count: jax.Array  # type: ignore[assignment]  # as MuonState's; it shadows tuple.count
    mu: Updates
    v: Updates
    ns_coeffs: jax.Array
    hyperparams: dict[str, Any]


def _neuron_moments(params: Any, axes: Any) -> Any:
    """Zeros shaped like each parameter with its reduction axes reduced to 1, laid out as it is."""
    return jax.tree.map(lambda z, ax: jnp.sum(z, axis=ax.reduction, keepdims=True), magnitudes_like(params), axes)


def _safe_divide(x: jax.Array, d: jax.Array) -> jax.Array:
    return x / jnp.where(d > 0, d, 1)  # a zero update stays zero


def scale_by_normuon(
    ns_coeffs: Any = NS_PRESETS["standard"],
    ns_steps: int = 5,
    beta: float = 0.95,
    beta2: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    preconditioning: str = "frobenius",
    consistent_rms: float | None = 0.2,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""NorMuon's direction (Li et al., 2025, :arxiv:`2510.05491`, Algorithm 1), matrix by matrix:

    .. math::
        M_t = \beta M_{t-1} + (1-\beta) G_t, \qquad O_t = \mathrm{NS}(\hat M_t), \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \mathrm{mean}_\mathrm{in}(O_t \odot O_t), \\
        \hat O_t = O_t / (\sqrt{v_t} + \epsilon), \qquad
        u_t = r \sqrt{AB}\, \hat O_t / \lVert \hat O_t \rVert_F

    for an :math:`A \times B` matrix (:math:`A` = fan-in, the ``reduction_axis``; :math:`B` =
    fan-out): :math:`v_t` holds one entry per output neuron, the mean over the fan-in, broadcast
    back over it; :math:`u_t` has RMS :math:`r` (the paper's
    :math:`\hat\eta = 0.2\,\eta\sqrt{mn}/\lVert \hat O_t\rVert_F`, as a factor of the update).
    :math:`\hat M_t` is Nesterov's look-ahead :math:`\beta M_t + (1-\beta) G_t` with ``nesterov``
    (the authors' code; the paper's algorithm box takes :math:`M_t`), and :math:`\mathrm{NS}` the
    iteration of :func:`~gradtx.transforms.orthogonalization.newton_schulz`. No bias correction,
    as the paper: the rescale makes :math:`v_t`'s overall scale irrelevant.

    Args:
        ns_coeffs: the quintic's :math:`(a, b, c)`, a sequence of one triple per step, or
            ``"standard"``, ``"dion"`` or ``"polar_express"`` (as :func:`~gradtx.optimizers.muon.scale_by_muon`).
        ns_steps: Newton-Schulz iterations, an integer >= 0 (5).
        beta: the momentum :math:`\beta`, a number or 0-d array in [0, 1) (0.95, the paper's).
        beta2: the neurons' second-moment decay :math:`\beta_2` in [0, 1) (0.95, the paper's).
        eps: :math:`\epsilon \ge 0`, of the Newton-Schulz normalization and of the division by
            :math:`\sqrt{v_t}` (1e-8; the authors' code uses 1e-7 and 1e-10).
        mu_dtype: the dtype of :math:`M`; ``None`` keeps each parameter's (:math:`v` is real, in
            the parameter's precision).
        nesterov: use the look-ahead :math:`\hat M_t` (True, the authors' code).
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"schatten"`` or ``"aol"`` (see
            :func:`~gradtx.transforms.orthogonalization.newton_schulz`).
        consistent_rms: :math:`r > 0`, the update's RMS (0.2, the paper's); ``None``: the authors'
            code instead, :math:`u_t = \sqrt{\max(1, B/A)}\, \lVert O_t\rVert_F\, \hat O_t / \lVert
            \hat O_t\rVert_F` (Muon's norm and shape factor).
        weight_dimension_numbers: the :class:`~gradtx.transforms.orthogonalization.MuonDimensionNumbers` of every leaf: one for all, a tree
            like the parameters (None leaves: 2-D, axes (0, 1)), or a function of the parameters
            returning one; ``None``: every leaf must be 2-D.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.normuon import scale_by_normuon
        >>> tx = scale_by_normuon()
        >>> u, _ = tx.update(jnp.array([[3.0, 0.0], [0.0, 0.5]]), tx.init(jnp.zeros((2, 2))))
        >>> round(float(jnp.sqrt(jnp.mean(u**2))), 4)  # the RMS of AdamW's updates
        0.2
    """
    coeffs = ns_coefficients(ns_coeffs, ns_steps)
    check_one_of("preconditioning", preconditioning, PRECONDITIONINGS)
    values = dict(beta=check_decay("beta", beta), beta2=check_decay("beta2", beta2), eps=check_nonnegative("eps", eps))
    if consistent_rms is not None:
        values["consistent_rms"] = check_positive("consistent_rms", consistent_rms)
    hp = Hyperparams(**values, allow_schedules=False)

    def init(params):
        axes = matrix_axes(weight_dimension_numbers, params, who="scale_by_normuon")
        return NorMuonState(
            zero_count(),
            moments_like(params, mu_dtype),
            _neuron_moments(params, axes),
            jnp.asarray(coeffs, float_dtype()),
            hp.init(),
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        axes = matrix_axes(weight_dimension_numbers, updates if params is None else params, who="scale_by_normuon")
        h = hp.values(state.hyperparams)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["beta"], 1), updates, state.mu)

        def matrices(g, m, ax):  # the leaf's stack of matrices (None: no entries) and the way back
            dtype = compute_dtype(g, m)
            (beta_,) = cast_scalars(dtype, h["beta"])
            m_hat = adam_first_moment(g.astype(dtype), m.astype(dtype), beta_, 1, 1, nesterov)
            if m_hat.size == 0:  # no matrix entries: nothing to orthogonalize or normalize
                return None, lambda o: o
            m_hat, lay_out = whole(m_hat)  # the iteration's products need the whole matrix
            stack, back = as_matrices(m_hat, ax)
            return stack, lambda o: lay_out(back(o))

        def step(g, v, ax, o, finish):  # the neurons' second moment and the rescaled update, given O
            if o is None:
                return jnp.zeros_like(g), v
            dtype = compute_dtype(g, o)
            beta2_, eps_ = cast_scalars(dtype, h["beta2"], h["eps"])
            v_old, lay_out_v = whole(v)
            v_stack, back_v = as_matrices(v_old.astype(real_dtype(dtype)), ax)  # (batch, 1, fan_out)
            v_new = beta2_ * v_stack + (1 - beta2_) * jnp.mean(abs_sq(o), axis=-2, keepdims=True)
            o_hat = o / (jnp.sqrt(v_new) + eps_)
            norm_hat = jnp.linalg.norm(o_hat, axis=(-2, -1), keepdims=True)
            fan_in, fan_out = matrix_fans(g.shape, ax)
            if consistent_rms is not None:
                (rms,) = cast_scalars(dtype, h["consistent_rms"])
                target = rms * math.sqrt(fan_in * fan_out)
            else:  # the authors' code: O's norm kept, then Muon's shape factor
                target = math.sqrt(max(1.0, fan_out / fan_in)) * jnp.linalg.norm(o, axis=(-2, -1), keepdims=True)
            u = o_hat * _safe_divide(target, norm_hat)
            return finish(u).astype(g.dtype), lay_out_v(back_v(v_new).astype(v.dtype))

        # Newton-Schulz once per matrix shape, on the stack of every leaf of that shape
        flat, treedef = jax.tree.flatten(updates)
        flat_axes = treedef.flatten_up_to(axes)
        prepared = [matrices(g, m, ax) for g, m, ax in zip(flat, treedef.flatten_up_to(mu), flat_axes)]
        full = [i for i, (stack, _) in enumerate(prepared) if stack is not None]
        stacks = [prepared[i][0] for i in full]
        found = dict(
            zip(full, apply_newton_schulz_grouped(stacks, state.ns_coeffs, ns_steps, h["eps"], preconditioning))
        )
        flat_v = treedef.flatten_up_to(state.v)
        pairs = [
            step(g, v, ax, found.get(i), prepared[i][1]) for i, (g, v, ax) in enumerate(zip(flat, flat_v, flat_axes))
        ]
        out = jax.tree.unflatten(treedef, [u for u, _ in pairs])
        v = jax.tree.unflatten(treedef, [v for _, v in pairs])
        return out, NorMuonState(safe_increment(state.count), mu, v, state.ns_coeffs, state.hyperparams)

    return GradientTransformation(init, update)


def normuon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = NS_PRESETS["standard"],
    ns_steps: int = 5,
    beta: float = 0.95,
    beta2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    preconditioning: str = "frobenius",
    consistent_rms: float | None = 0.2,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    adam_eps: float | None = None,
) -> GradientTransformation:
    r"""NorMuon (Li et al., 2025, :arxiv:`2510.05491`) for the matrices, AdamW for the other leaves.

    .. math::
        W_t = W_{t-1} - \eta_t \left( u_t + \lambda W_{t-1} \right)

    for a matrix leaf, with :math:`u_t` of :func:`scale_by_normuon` (RMS :math:`r = 0.2`: the
    paper's :math:`\hat\eta_t \hat O_t`) and the decoupled weight decay of the paper's Algorithm 1
    (at the rate :math:`\eta_t`, not :math:`\hat\eta_t`). Leaves without dimension numbers (by
    default, those that are not 2-D) get :math:`-\eta'(\mathrm{Adam}_t + \lambda' W_{t-1})`,
    NAdam's look-ahead with ``nesterov``, as :func:`~gradtx.optimizers.muon.muon`.

    Args:
        learning_rate: :math:`\eta`, a number, 0-d array or schedule, >= 0.
        ns_coeffs: the Newton-Schulz coefficients (see :func:`scale_by_normuon`).
        ns_steps: Newton-Schulz iterations (5).
        beta: the momentum :math:`\beta` in [0, 1) (0.95).
        beta2: the neurons' second-moment decay :math:`\beta_2` in [0, 1) (0.95).
        eps: :math:`\epsilon \ge 0` of the normalizations, and Adam's (1e-8).
        weight_decay: :math:`\lambda \ge 0` for the matrix leaves, a number, 0-d array or schedule.
        weight_decay_mask: which matrix leaves to decay: a tree of bools or a function of the
            parameters; ``None``: all.
        mu_dtype: the dtype of the first moments (NorMuon's and Adam's); ``None``: each parameter's.
        nesterov: Nesterov's look-ahead, for NorMuon and Adam (True, the authors' code).
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"schatten"`` or ``"aol"``.
        consistent_rms: :math:`r > 0`, the matrix updates' RMS (0.2); ``None``: the authors' code's
            rescale (see :func:`scale_by_normuon`).
        adam_b1: Adam's :math:`\beta_1` in [0, 1).
        adam_b2: Adam's :math:`\beta_2` in [0, 1).
        adam_eps_root: Adam's :math:`\epsilon_{root} \ge 0`.
        adam_weight_decay: :math:`\lambda' \ge 0` for every Adam leaf, a number, 0-d array or schedule.
        adam_learning_rate: :math:`\eta'` for the Adam leaves; ``None``: ``learning_rate``.
        muon_weight_dimension_numbers: each leaf's :class:`~gradtx.transforms.orthogonalization.MuonDimensionNumbers`, or None for Adam: one
            for all, a tree like the parameters, or a function of the parameters returning one;
            ``None``: the 2-D leaves, axes (0, 1).
        adam_eps: Adam's own :math:`\epsilon`; ``None``: ``eps``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.normuon import normuon
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)
        >>> tx = normuon(lambda t: 0.5 * 0.97**t)
        >>> state = tx.init(params)
        >>> for _ in range(100):
        ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> bool(loss(params) < 0.01)
        True
    """
    dims = matrix_leaves if muon_weight_dimension_numbers is None else muon_weight_dimension_numbers

    def labels(params):
        axes = matrix_axes(dims, params, default_2d=False, who="scale_by_normuon")
        return jax.tree.map(lambda a: "adam" if a.reduction is None else "normuon", axes)

    normuon_part = scale_by_normuon(
        ns_coeffs, ns_steps, beta, beta2, eps, mu_dtype, nesterov=nesterov, preconditioning=preconditioning,
        consistent_rms=consistent_rms, weight_dimension_numbers=dims,
    )  # fmt: skip
    return with_adam_for_the_rest(
        "normuon", normuon_part, labels, learning_rate, weight_decay, weight_decay_mask,
        adam_b1=adam_b1, adam_b2=adam_b2, adam_eps=eps if adam_eps is None else adam_eps, adam_eps_root=adam_eps_root,
        mu_dtype=mu_dtype, nesterov=nesterov, adam_learning_rate=adam_learning_rate, adam_weight_decay=adam_weight_decay,
    )  # fmt: skip
