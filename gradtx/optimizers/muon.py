r"""Muon: momentum orthogonalized by Newton-Schulz (Jordan et al., 2024, "Muon: an optimizer for
hidden layers"; Liu et al., 2025, :arxiv:`2502.16982`, for weight decay and the RMS-matched scale).

Each matrix leaf's momentum :math:`M` is replaced by the nearest semi-orthogonal matrix
:math:`O \approx UV^\top` (for :math:`M = U\Sigma V^\top`), computed by a few Newton-Schulz
iterations of an odd quintic, which sends every singular value into a band around 1. Which axes
of a leaf form the matrix is said by :class:`MuonDimensionNumbers`; the other axes are batch
axes, each slice its own matrix. :func:`muon` updates the other leaves (by default, those that
are not 2-D) with AdamW.
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
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype, renamed
from gradtx.core.kit import cast_scalars, check_updates, moments_like, update_moment, whole
from gradtx.core.numerics import compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of, check_positive
from gradtx.optimizers.adam import adam_first_moment, bias_reciprocals, scale_by_adam
from gradtx.transforms.combine import chain
from gradtx.transforms.masking import masked, partition, resolve_mask
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_hyperparameter, scale_by_learning_rate

# The quintic of Jordan et al. (torch.optim.Muon's default too), and the per-step coefficients
# of the Dion optimizer's implementation (Ahn et al., 2025), as Optax names them.
NS_PRESETS: dict[str, Any] = {
    "standard": (3.4445, -4.7750, 2.0315),
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}
_PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
_ADJUST_LR = ("original", "match_rms_adamw")


class MuonDimensionNumbers(NamedTuple):
    """The axes of a leaf that form Muon's matrix: rows ``reduction_axis`` (the inputs, fan-in),
    columns ``output_axis`` (fan-out); each an axis or a sequence of axes. Other axes are batch axes."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class MuonState(NamedTuple):
    """Muon's state: the step count, the momentum ``mu`` and the Newton-Schulz coefficients, shape
    ``(3,)`` or ``(steps, 3)`` (settable with ``state._replace``)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    ns_coeffs: jax.Array
    hyperparams: dict[str, Any]


# ------------------------------------------------------------------ Newton-Schulz


def _coefficients(ns_coeffs: Any, ns_steps: Any) -> np.ndarray:
    if isinstance(ns_coeffs, str):
        check_one_of("ns_coeffs", ns_coeffs, tuple(NS_PRESETS))
        ns_coeffs = NS_PRESETS[ns_coeffs]
    if not isinstance(ns_steps, numbers.Integral) or isinstance(ns_steps, bool) or ns_steps < 0:
        raise TypeError(f"ns_steps must be a non-negative integer, got {ns_steps!r}")
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
        X_{k+1} = a X_k + b (X_k X_k^\top) X_k + c (X_k X_k^\top)^2 X_k

    on the wide orientation of :math:`G` (transposed when it has more rows than columns), with
    :math:`X^H` for complex :math:`G`; computed in at least float32, returned in ``x``'s dtype.

    Args:
        x: an array of shape ``(..., m, n)``, the matrices in the last two axes.
        ns_coeffs: :math:`(a, b, c)` for every step, a sequence of triples (one per step), or a
            preset name (``"standard"``, ``"dion"``).
        ns_steps: the number of iterations, an integer >= 0; with a sequence of triples, its
            length decides and ``ns_steps`` must be at least that.
        eps: :math:`\epsilon \ge 0`, added to the norm.
        preconditioning: how :math:`X_0` is scaled: ``"frobenius"`` (above), ``"spectral"``
            (:math:`\lVert G \rVert_2 + \epsilon`), ``"schatten"`` (the Schatten-4 norm) or ``"aol"``
            (each row by :math:`(\sum_j |GG^\top|_{ij})^{-1/2}`); the last two use no :math:`\epsilon`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.muon import newton_schulz
        >>> o = newton_schulz(jax.random.normal(jax.random.key(0), (4, 8)))
        >>> bool(jnp.all(jnp.abs(jnp.linalg.svd(o, compute_uv=False) - 1) < 0.35))
        True
    """
    check_one_of("preconditioning", preconditioning, _PRECONDITIONINGS)
    coeffs = jnp.asarray(_coefficients(ns_coeffs, ns_steps))
    return _newton_schulz(jnp.asarray(x), coeffs, ns_steps, jnp.asarray(eps), preconditioning)


def _newton_schulz(x, coeffs, ns_steps, eps, preconditioning):
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


# ---------------------------------------------------------- which axes form the matrix


@dataclasses.dataclass(frozen=True)
class _Spec:
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


def _leaf_spec(dims: Any, leaf: Any, where: str, default_2d: bool) -> _Spec:
    ndim = jnp.ndim(leaf)
    if dims is None:
        if not default_2d:
            return _Spec(None)
        if ndim != 2:
            raise ValueError(
                f"scale_by_muon: the leaf '{where}' has shape {jnp.shape(leaf)}; give it MuonDimensionNumbers "
                "(weight_dimension_numbers=) or use muon, which sends such leaves to Adam"
            )
        dims = MuonDimensionNumbers()
    if not isinstance(dims, MuonDimensionNumbers):
        raise TypeError(f"weight_dimension_numbers at '{where}' must be MuonDimensionNumbers or None, got {dims!r}")
    reduction, output = _axes(dims.reduction_axis, ndim, where), _axes(dims.output_axis, ndim, where)
    if len(set(reduction + output)) != len(reduction) + len(output):
        raise ValueError(f"weight_dimension_numbers at '{where}': the axes {dims} repeat")
    return _Spec(reduction, output)


def _is_dims(x: Any) -> bool:
    return x is None or isinstance(x, MuonDimensionNumbers)


@dataclasses.dataclass(frozen=True)
class _Given:
    dims: Any  # a leaf's MuonDimensionNumbers or None, boxed: not a pytree, so tree functions keep it whole


def _specs(dims: Any, tree: Any, default_2d: bool = True) -> Any:
    """A tree shaped like ``tree`` of each leaf's :class:`_Spec`, from dimension numbers given as
    one for all, a tree (prefix) of them and None, or a function of the parameters returning one."""
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
    specs = [_leaf_spec(d, leaf, _tree.path_str(path), default_2d) for d, (path, leaf) in zip(per_leaf, paths)]
    return jax.tree.unflatten(jax.tree.structure(tree), specs)


def _matrices(x: jax.Array, spec: _Spec) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """``x`` as a stack ``(batch, fan_in, fan_out)`` of matrices, and the map back."""
    assert spec.reduction is not None
    batch = [a for a in range(x.ndim) if a not in spec.reduction + spec.output]
    order = batch + list(spec.reduction) + list(spec.output)
    moved = jnp.transpose(x, order) if order != list(range(x.ndim)) else x
    fan_in = math.prod(x.shape[a] for a in spec.reduction)
    stack = moved.reshape((-1, fan_in, math.prod(x.shape[a] for a in spec.output)))

    def back(y: jax.Array) -> jax.Array:
        y = y.reshape(moved.shape)
        return jnp.transpose(y, tuple(int(i) for i in np.argsort(order))) if order != list(range(x.ndim)) else y

    return stack, back


def _fans(shape: tuple[int, ...], spec: _Spec) -> tuple[int, int]:
    assert spec.reduction is not None
    return math.prod(shape[a] for a in spec.reduction), math.prod(shape[a] for a in spec.output)


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

    with :math:`\mathrm{NS}` the Newton-Schulz iteration of :func:`newton_schulz`, on the matrices
    that ``weight_dimension_numbers`` define (batch axes: one matrix per slice). ``adaptive``
    multiplies :math:`u_t` by :math:`\mathrm{Re}\langle \hat m_t, u_t \rangle_F` (about the nuclear
    norm, the dual of the spectral norm; Bernstein & Newhouse, :arxiv:`2409.20325`), per matrix.
    ``bias_correction=True`` takes Optax's :math:`\hat m_t` instead, Adam's bias-corrected moment
    (NAdam's look-ahead with ``nesterov``): the same direction without Nesterov (up to
    :math:`\epsilon`), with other weights of :math:`g_t` and :math:`m_t` in the first steps with it.

    Args:
        ns_coeffs: the quintic's :math:`(a, b, c)` (Optax's and torch.optim's default
            (3.4445, -4.7750, 2.0315)), a sequence of one triple per step, or ``"standard"``/``"dion"``.
        ns_steps: Newton-Schulz iterations, an integer >= 0 (5); a sequence of triples sets its own
            number of steps, and ``ns_steps`` must be at least its length (as Optax).
        beta: the momentum :math:`\beta`, a number or 0-d array in [0, 1).
        eps: :math:`\epsilon \ge 0` of the normalization (Optax's 1e-8; torch.optim.Muon uses 1e-7).
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        nesterov: use Nesterov's look-ahead :math:`\hat m_t` (True).
        adaptive: scale by :math:`\mathrm{Re}\langle \hat m_t, u_t \rangle`, per matrix (Optax sums
            over the batch axes of a leaf as well).
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"schatten"`` or ``"aol"`` (see :func:`newton_schulz`).
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
    coeffs = _coefficients(ns_coeffs, ns_steps)
    check_one_of("preconditioning", preconditioning, _PRECONDITIONINGS)
    hp = Hyperparams(beta=check_decay("beta", beta), eps=check_nonnegative("eps", eps), allow_schedules=False)

    def init(params):
        _specs(weight_dimension_numbers, params)  # fail at init on a leaf with no matrix
        return MuonState(zero_count(), moments_like(params, mu_dtype), jnp.asarray(coeffs, float_dtype()), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        specs = _specs(weight_dimension_numbers, updates if params is None else params)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["beta"], 1), updates, state.mu)

        def direction(g, m, spec):
            dtype = compute_dtype(g, m)
            beta_, eps_ = cast_scalars(dtype, h["beta"], h["eps"])
            c1, c1_next = bias_reciprocals(beta_, beta_, count)[:2] if bias_correction else (1, 1)
            m_hat = adam_first_moment(g.astype(dtype), m.astype(dtype), beta_, c1, c1_next, nesterov)
            if m_hat.size == 0:  # no matrix entries: nothing to orthogonalize
                return m_hat.astype(g.dtype)
            m_hat, lay_out = whole(m_hat)  # the iteration's products need the whole matrix
            stack, back = _matrices(m_hat, spec)
            o = _newton_schulz(stack, state.ns_coeffs, ns_steps, eps_, preconditioning)
            if adaptive:
                o = o * jnp.sum(jnp.real(jnp.conj(stack) * o), axis=(-2, -1), keepdims=True)
            return lay_out(back(o)).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, specs)
        return out, MuonState(count, mu, state.ns_coeffs, state.hyperparams)

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
        fan_in, fan_out = _fans(shape, spec)
        if callable(adjust_lr_fn):
            return jnp.asarray(adjust_lr_fn(fan_in, fan_out))
        if consistent_rms is not None:
            return h["consistent_rms"] * math.sqrt(max(fan_in, fan_out))
        return jnp.asarray(math.sqrt(max(1.0, fan_out / fan_in)) if fan_in else 1.0)  # no entries: any factor

    def init(params):
        return ScaleByMatrixShapeState(hp.init())

    def update(updates, state, params=None, **extra_args):
        h = hp.values(state.hyperparams)
        specs = _specs(dims, updates if params is None else params)

        def scale(u, spec):
            f = factor(u.shape, spec, h)
            return (u * f.astype(jnp.promote_types(u.dtype, f.dtype))).astype(u.dtype)

        return jax.tree.map(scale, updates, specs), state

    return GradientTransformation(init, update)


def _matrix_leaves(params: Any) -> Any:
    """Optax's default: the 2-D leaves are Muon's, with axes (0, 1); the others Adam's."""
    return jax.tree.map(lambda p: MuonDimensionNumbers() if jnp.ndim(p) == 2 else None, params)


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
    for name, value in (("adam_b1", adam_b1), ("adam_b2", adam_b2)):
        check_decay(name, value)
    check_nonnegative("adam_eps_root", adam_eps_root)
    check_nonnegative("adam_eps", eps if adam_eps is None else adam_eps)
    dims = _matrix_leaves if muon_weight_dimension_numbers is None else muon_weight_dimension_numbers

    def labels(params):
        specs = _specs(dims, params, default_2d=False)
        return jax.tree.map(lambda s: "adam" if s.reduction is None else "muon", specs)

    def decay_mask(params):
        chosen = jax.tree.map(lambda label: label == "muon", labels(params))
        if weight_decay_mask is None:
            return chosen
        return jax.tree.map(lambda a, b: a and b, chosen, resolve_mask(weight_decay_mask, params))

    def adam_mask(params):
        return jax.tree.map(lambda label: label == "adam", labels(params))

    muon_part = chain(
        scale_by_muon(
            ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov, adaptive=adaptive,
            preconditioning=preconditioning, weight_dimension_numbers=dims, bias_correction=bias_correction,
        ),
        _scale_by_matrix_shape(dims, adjust_lr_fn if callable(adjust_lr_fn) else None, consistent_rms),
    )  # fmt: skip
    adam_part = renamed(
        scale_by_adam(adam_b1, adam_b2, eps if adam_eps is None else adam_eps, adam_eps_root, mu_dtype, nesterov=nesterov),
        b1="adam_b1", b2="adam_b2", eps="adam_eps", eps_root="adam_eps_root",
    )  # fmt: skip
    if adam_learning_rate is None:
        step = scale_by_learning_rate(learning_rate, allow_none=False)
    else:
        check_nonnegative("adam_learning_rate", adam_learning_rate)
        step = partition(
            {
                "muon": scale_by_learning_rate(learning_rate, allow_none=False),
                "adam": scale_by_hyperparameter("adam_learning_rate", adam_learning_rate, -1.0),
            },
            labels,
        )
    return chain(
        partition({"muon": muon_part, "adam": adam_part}, labels),
        masked(add_decayed_weights(weight_decay), decay_mask),
        renamed(masked(add_decayed_weights(adam_weight_decay), adam_mask), weight_decay="adam_weight_decay"),
        step,
    )
