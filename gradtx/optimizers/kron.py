r"""PSGD Kron: preconditioned SGD with a Kronecker-factored preconditioner fitted on a Lie group
(Li, 2015, :arxiv:`1512.04202`; Li, 2022, :arxiv:`2211.04422`), in the form of the widely used
``kron`` of the psgd_jax and kron_torch libraries.

Each leaf of shape :math:`(d_1, \dots, d_k)` keeps one factor :math:`Q_i` per axis: an upper
triangular :math:`d_i \times d_i` matrix, or a diagonal (a vector) for a large, size-1 or
low-rank axis. The preconditioner is :math:`P = Q^\top Q` with :math:`Q = Q_1 \otimes \dots
\otimes Q_k`, applied axis by axis. Now and then (with a probability that anneals) every factor
takes one step of the whitening fit :math:`P\, \mathbb E[g g^\top] P \to I` from a random probe,
a normalised step on the group of triangular matrices, which keeps :math:`Q_i` triangular and
invertible.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.control import cond
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, moments_like, update_moment, whole
from gradtx.core.numerics import compute_dtype, safe_increment, stable_rms, zero_count
from gradtx.core.tree import check_real
from gradtx.core.validation import check_decay, check_one_of, check_positive, check_range, check_that
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

HIGHEST = jax.lax.Precision.HIGHEST
RMS_LIMIT = 1.1  # the reference's clip: the whitened update has an RMS of about 1 per leaf
BALANCE_PROBABILITY = 0.01  # how often an update of the factors first balances their sizes
DAMPING = float(np.sqrt(np.finfo(np.float32).eps))  # the probe's share in the fitted gradient
_MEMORY_SAVE_MODES = (None, "one_diag", "all_diag")


class ScaleByKronState(NamedTuple):
    """PSGD Kron's state: the step count, the momentum ``mu``, the factors ``Qs`` (a tuple of
    arrays in place of every leaf: matrices and vectors, one per axis; one 0-d array for a 0-d
    leaf), the PRNG ``key`` of the next step (raw ``uint32`` data) and the hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    Qs: Any
    key: jax.Array
    hyperparams: dict[str, Any]


def precond_update_prob_schedule(
    max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: int = 500
) -> Callable[[jax.Array], jax.Array]:
    r"""The reference's probability of updating the preconditioner at step :math:`t`: flat, then
    annealed exponentially.

    .. math::
        p(t) = \min\!\big(\max(p_{max}\, e^{-\delta (t - t_0)},\ p_{min}),\ p_{max}\big)

    Args:
        max_prob: :math:`p_{max}`, in [0, 1].
        min_prob: :math:`p_{min}`, in [0, ``max_prob``].
        decay: :math:`\delta \ge 0`.
        flat_start: :math:`t_0`, the steps kept at :math:`p_{max}`, >= 0.

    Example:
        >>> from gradtx.optimizers.kron import precond_update_prob_schedule
        >>> p = precond_update_prob_schedule()
        >>> [round(float(p(t)), 3) for t in (1, 500, 1500, 10_000)]
        [1.0, 1.0, 0.368, 0.03]
    """
    check_range("max_prob", max_prob, 0.0, 1.0)
    check_range("min_prob", min_prob, 0.0, 1.0)
    check_that("min_prob", min_prob, lambda p: p <= max_prob, f"at most max_prob={max_prob!r}")
    check_range("decay", decay, 0.0)
    check_range("flat_start", flat_start, 0.0)

    def schedule(step: jax.Array) -> jax.Array:
        t = jnp.asarray(step, jnp.float32)
        return jnp.minimum(jnp.maximum(max_prob * jnp.exp(-decay * (t - flat_start)), min_prob), max_prob)

    return schedule


_DEFAULT_SCHEDULE = precond_update_prob_schedule()


# ------------------------------------------------------------------------- the factors


def _diagonal(shape: tuple[int, ...], max_size: int, min_ndim: int, mode: str | None) -> tuple[bool, ...]:
    """Which axes get a diagonal factor: size 1, above ``max_size``, a leaf of fewer than
    ``min_ndim`` axes, and the axes ``memory_save_mode`` chooses (the largest, last of equals)."""
    ndim = len(shape)
    largest = max(range(ndim), key=lambda i: (shape[i], i)) if ndim else -1
    forced = [mode == "all_diag" or (mode == "one_diag" and i == largest) for i in range(ndim)]
    return tuple(d == 1 or d > max_size or ndim < min_ndim or forced[i] for i, d in enumerate(shape))


def _along(x: jax.Array, axis: int, f: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``f`` applied to the matrix whose rows are ``x``'s ``axis`` (the mode-``axis`` unfolding)."""
    moved = jnp.moveaxis(x, axis, 0)
    out = f(moved.reshape(moved.shape[0], -1))
    return jnp.moveaxis(out.reshape(moved.shape), 0, axis)


def _times(x: jax.Array, q: jax.Array, axis: int, diag: bool, how: str = "Q") -> jax.Array:
    """``x`` times ``Q``, ``Q^T`` or ``Q^{-T}`` (``how``) along ``axis``."""
    if diag:
        q = q.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        return x / q if how == "Q^-T" else x * q
    if how == "Q^-T":
        return _along(x, axis, lambda m: jax.scipy.linalg.solve_triangular(q, m, trans="T", lower=False))
    q = q.T if how == "Q^T" else q
    return _along(x, axis, lambda m: jnp.matmul(q, m, precision=HIGHEST))


def _gram(x: jax.Array, axis: int, diag: bool) -> jax.Array:
    """The mode-``axis`` unfolding times its transpose (its diagonal for a diagonal factor)."""
    m = jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return jnp.sum(m * m, axis=1) if diag else jnp.matmul(m, m.T, precision=HIGHEST)


def _norm_lower_bound(s: jax.Array) -> jax.Array:
    r"""A lower bound of the spectral norm of a symmetric :math:`S`: :math:`\|S y\| / \|y\|` with
    :math:`y = S r` for :math:`r` its row of largest norm (one power step; the reference's bound,
    within a factor of about :math:`\sqrt 2`)."""
    top = jnp.max(jnp.abs(s))
    s = s / jnp.where(top > 0, top, 1)
    r = s[jnp.argmax(jnp.sum(s * s, axis=1))]
    y = jnp.matmul(s, r, precision=HIGHEST)
    ny = jnp.linalg.norm(y)
    return top * jnp.linalg.norm(jnp.matmul(s, y, precision=HIGHEST)) / jnp.where(ny > 0, ny, 1)


def _fit(qs: list[jax.Array], g: jax.Array, v: jax.Array, diag: tuple[bool, ...], lr: jax.Array) -> list[jax.Array]:
    """One whitening step of every factor, from the gradient ``g`` and the probe ``v``."""
    tiny = jnp.finfo(g.dtype).tiny
    g = g + DAMPING * jnp.mean(jnp.abs(g)) * v
    a, b = g, v
    for i, (q, d) in enumerate(zip(qs, diag)):
        a, b = _times(a, q, i, d), _times(b, q, i, d, "Q^-T")  # A = Q g, B = Q^{-T} v
    # the step below is homogeneous of degree 0 in (A, B): scale both to keep A A^T finite
    top = jnp.maximum(jnp.max(jnp.abs(a)), jnp.max(jnp.abs(b)))
    unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
    a, b = a / unit, b / unit
    out = []
    for i, (q, d) in enumerate(zip(qs, diag)):
        t1, t2 = _gram(a, i, d), _gram(b, i, d)
        if d:
            out.append(q - lr / (jnp.max(jnp.abs(t1 + t2)) + tiny) * (t1 - t2) * q)
        else:
            step = jnp.matmul(jnp.triu(t1 - t2), q, precision=HIGHEST)
            out.append(q - lr / (_norm_lower_bound(t1 + t2) + tiny) * step)
    return out


def _balance(qs: list[jax.Array]) -> list[jax.Array]:
    """The factors rescaled to the same largest entry (their geometric mean); ``P`` is unchanged."""
    if len(qs) < 2 or any(q.size == 0 for q in qs):
        return qs
    sizes = jnp.stack([jnp.max(jnp.abs(q)) for q in qs])
    sizes = jnp.where(sizes > 0, sizes, 1)
    mean = jnp.exp(jnp.mean(jnp.log(sizes)))
    return [(q * (mean / s)).astype(q.dtype) for q, s in zip(qs, sizes)]


def _precondition(qs: list[jax.Array], g: jax.Array, diag: tuple[bool, ...]) -> jax.Array:
    """:math:`P g = Q^\\top Q g`, axis by axis."""
    for i, (q, d) in enumerate(zip(qs, diag)):
        g = _times(_times(g, q, i, d), q, i, d, "Q^T")
    return g


def _as_vector(x: jax.Array) -> jax.Array:
    return x.reshape(1) if x.ndim == 0 else x


# -------------------------------------------------------------------------- the keys


def _key_data(
    key: Any,
) -> tuple[Callable[[], jax.Array], Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """A function making the key's raw data for a new state (a buffer of its own, so that a step
    may donate the state), and the maps from that data to a key and back."""
    if key is None or (isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool)):
        seed = 0 if key is None else int(key)
        return lambda: jax.random.PRNGKey(seed), lambda d: d, lambda k: k
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise TypeError(f"key must be a PRNG key, an int seed or None, got {key!r}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl, data = jax.random.key_impl(key), np.asarray(jax.random.key_data(key))
        return lambda: jnp.array(data), lambda d: jax.random.wrap_key_data(d, impl=impl), jax.random.key_data
    data = np.asarray(key)
    return lambda: jnp.array(data), lambda d: d, lambda k: k


# ---------------------------------------------------------------------------- PSGD Kron


def scale_by_kron(
    b1: float = 0.9,
    preconditioner_update_probability: ScalarOrSchedule = _DEFAULT_SCHEDULE,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    preconditioner_lr: float = 0.1,
    preconditioner_init_scale: float = 1.0,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
    *,
    key: Any = None,
) -> GradientTransformation:
    r"""PSGD Kron's direction (:arxiv:`1512.04202`, :arxiv:`2211.04422`): bias-corrected momentum,
    preconditioned by Kronecker factors fitted to whiten it, clipped to an RMS of 1.1 per leaf.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad
        u_t = \frac{P \hat m_t}{\max(1,\ \mathrm{RMS}(P \hat m_t) / 1.1)}, \quad
        P h = h \times_1 Q_1^\top Q_1 \cdots \times_k Q_k^\top Q_k

    With probability :math:`p_t` (one draw per step, for all leaves), first every factor takes
    a step of the fit, from a probe :math:`V \sim \mathcal N(0, I)` and
    :math:`h = \hat m_t` (``momentum_into_precond_update``) or :math:`g_t`, damped as the
    reference does, :math:`h \leftarrow h + \sqrt{\epsilon_{32}}\,\mathrm{mean}|h|\, V`:

    .. math::
        A = h \times_1 Q_1 \cdots \times_k Q_k, \quad B = V \times_1 Q_1^{-\top} \cdots
        \times_k Q_k^{-\top}, \qquad
        Q_i \leftarrow Q_i - \frac{\eta_p}{\lVert A_{(i)} A_{(i)}^\top + B_{(i)} B_{(i)}^\top \rVert}
        \mathrm{triu}\big(A_{(i)} A_{(i)}^\top - B_{(i)} B_{(i)}^\top\big) Q_i

    with :math:`X_{(i)}` the mode-:math:`i` unfolding and :math:`\lVert\cdot\rVert` a lower bound
    of the spectral norm (for a diagonal factor: the diagonal terms only, the largest entry as
    the norm). Before the fit, with probability 0.01, the factors of a leaf are rescaled to the
    same largest entry (``P`` unchanged), as the reference does. Factors start at
    :math:`s^{1/k} I` (:math:`s` = ``preconditioner_init_scale``). Each step splits the state's
    key into four: the next key, then the keys of the update draw ``uniform < p_t``, of the
    balance draw ``uniform < 0.01`` (float32 uniforms) and of the probes (leaf ``i``'s from
    ``fold_in(key, i)``, standard normal in the factors' compute dtype).

    Every default is that of psgd_jax's ``kron`` (the papers fix none). Where this differs from
    it: the key is kept in the state (``key``), the grams are formed from :math:`A, B` divided
    by their largest entry (the normalised step is unchanged; :math:`AA^\top` then neither
    overflows nor vanishes), products run at the highest matmul precision, and complex parameters
    are refused.

    Args:
        b1: :math:`\beta_1`, the momentum, in [0, 1).
        preconditioner_update_probability: :math:`p_t`, in [0, 1]: a number, 0-d array or
            schedule of the step :math:`t = 1, 2, \dots` (the reference's count); by default
            :func:`precond_update_prob_schedule`.
        max_size_triangular: the largest axis with a triangular factor, an integer >= 0.
        min_ndim_triangular: leaves with fewer axes get diagonal factors only, an integer >= 0.
        memory_save_mode: ``None`` (triangular factors where allowed), ``"one_diag"`` (the
            largest axis of each leaf, the last of equal ones, diagonal) or ``"all_diag"``.
        momentum_into_precond_update: fit the preconditioner to :math:`\hat m_t` (True) or to
            :math:`g_t`.
        preconditioner_lr: :math:`\eta_p`, the fit's normalised step, in (0, 1].
        preconditioner_init_scale: :math:`s > 0`, the initial :math:`Q`'s scale (read at init).
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        precond_dtype: the dtype of the factors; ``None``: each parameter's, at least float32.
        key: the PRNG key of the probes and draws: a ``jax.random.key``, a raw ``PRNGKey``, an
            int seed or ``None`` (seed 0).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.kron import scale_by_kron
        >>> tx = scale_by_kron(preconditioner_update_probability=0.0)  # Q stays I: P = I
        >>> u, state = tx.update(jnp.array([[3.0, 4.0]]), tx.init(jnp.zeros((1, 2))))
        >>> [round(x, 4) for x in u[0].tolist()], [q.shape for q in state.Qs]  # RMS 3.54 clipped to 1.1
        ([0.9334, 1.2445], [(1,), (2, 2)])
    """
    check_one_of("memory_save_mode", memory_save_mode, _MEMORY_SAVE_MODES)
    for name, value in (("max_size_triangular", max_size_triangular), ("min_ndim_triangular", min_ndim_triangular)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    check_positive("preconditioner_init_scale", preconditioner_init_scale)
    probability = preconditioner_update_probability
    if callable(probability):
        schedule = probability
        probability = lambda count: schedule(safe_increment(count))  # noqa: E731  (the reference's t)
    else:
        check_range("preconditioner_update_probability", probability, 0.0, 1.0)
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        preconditioner_update_probability=probability,
        preconditioner_lr=check_range("preconditioner_lr", preconditioner_lr, 0.0, 1.0, low_open=True),
    )
    first_key, as_key, as_data = _key_data(key)

    def layout(x):
        return _diagonal(jnp.shape(x), max_size_triangular, min_ndim_triangular, memory_save_mode)

    def init(params):
        check_real("scale_by_kron", params, "its factors are real triangular matrices")

        def factors(p):
            dtype = compute_dtype(p) if precond_dtype is None else jnp.dtype(precond_dtype)
            if jnp.ndim(p) == 0:
                return (jnp.asarray(preconditioner_init_scale, dtype),)
            s = preconditioner_init_scale ** (1 / jnp.ndim(p))
            return tuple(
                jnp.full(n, s, dtype) if d else s * jnp.eye(n, dtype=dtype) for n, d in zip(jnp.shape(p), layout(p))
            )

        qs = jax.tree.map(factors, params)
        return ScaleByKronState(zero_count(), moments_like(params, mu_dtype), qs, first_key(), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        treedef = jax.tree.structure(updates)
        grads = treedef.flatten_up_to(updates)
        mu = treedef.flatten_up_to(jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu))
        qs = [list(q) for q in treedef.flatten_up_to(state.Qs)]
        dtypes = [jnp.promote_types(compute_dtype(g), q[0].dtype) for g, q in zip(grads, qs)]

        def m_hat(m, dtype):
            (b1_,) = cast_scalars(dtype, h["b1"])
            return m.astype(dtype) / (1 - b1_ ** count.astype(dtype))

        mhat = [m_hat(m, d) for m, d in zip(mu, dtypes)]
        fit_to = mhat if momentum_into_precond_update else [g.astype(d) for g, d in zip(grads, dtypes)]
        next_key, k_update, k_balance, k_probe = jax.random.split(as_key(state.key), 4)
        p = jnp.asarray(h["preconditioner_update_probability"], jnp.float32)
        fit_now = jax.random.uniform(k_update, dtype=jnp.float32) < p
        balance_now = jax.random.uniform(k_balance, dtype=jnp.float32) < BALANCE_PROBABILITY

        def fit(qs):
            qs = cond(balance_now, lambda qs: [_balance(q) for q in qs], lambda qs: qs, qs)
            out = []
            for i, (q, g, d) in enumerate(zip(qs, fit_to, dtypes)):
                if g.size == 0:
                    out.append(q)
                    continue
                g, _ = whole(g)  # the grams need the whole leaf; the factors are not sharded
                v = jax.random.normal(jax.random.fold_in(k_probe, i), g.shape, d)
                (lr,) = cast_scalars(d, h["preconditioner_lr"])
                new = _fit([_as_vector(f.astype(d)) for f in q], _as_vector(g), _as_vector(v), layout(g) or (True,), lr)
                out.append([n.reshape(f.shape).astype(f.dtype) for n, f in zip(new, q)])
            return out

        qs = cond(fit_now, fit, lambda qs: qs, qs)

        def direction(g, m, q, dtype):
            if g.size == 0:
                return jnp.zeros_like(g)
            m, lay_out = whole(m)
            u = _precondition([_as_vector(f.astype(dtype)) for f in q], _as_vector(m), layout(g) or (True,))
            u = u / jnp.maximum(1, stable_rms(u) / RMS_LIMIT)
            return lay_out(u.reshape(g.shape).astype(g.dtype))

        out = [direction(g, m, q, d) for g, m, q, d in zip(grads, mhat, qs, dtypes)]
        new_qs = jax.tree.unflatten(treedef, [tuple(q) for q in qs])
        new_state = ScaleByKronState(
            count,
            jax.tree.unflatten(treedef, mu),
            new_qs,
            as_data(next_key),
            hp.advance(state.hyperparams, count),
        )
        return jax.tree.unflatten(treedef, out), new_state

    return GradientTransformation(init, update)


def kron(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
    preconditioner_update_probability: ScalarOrSchedule = _DEFAULT_SCHEDULE,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    preconditioner_lr: float = 0.1,
    preconditioner_init_scale: float = 1.0,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
    *,
    key: Any = None,
) -> GradientTransformation:
    r"""PSGD Kron (Li, :arxiv:`1512.04202`, :arxiv:`2211.04422`): steps along the whitened,
    clipped momentum of :func:`scale_by_kron`, with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\, (u_t + \lambda \theta_{t-1})

    Args:
        learning_rate: :math:`\eta` (the reference's 1e-3): a number, 0-d array or schedule, >= 0.
        b1: :math:`\beta_1`, the momentum, in [0, 1).
        weight_decay: :math:`\lambda \ge 0`: a number, 0-d array or schedule.
        weight_decay_mask: the leaves to decay: a tree of bools or a function of the parameters;
            ``None``: all.
        preconditioner_update_probability: :math:`p_t` in [0, 1], a number or a schedule of
            :math:`t = 1, 2, \dots`; by default :func:`precond_update_prob_schedule`.
        max_size_triangular: the largest axis with a triangular factor (8192).
        min_ndim_triangular: leaves with fewer axes get diagonal factors only (2).
        memory_save_mode: ``None``, ``"one_diag"`` or ``"all_diag"`` (see :func:`scale_by_kron`).
        momentum_into_precond_update: fit the preconditioner to the momentum (True) or the gradient.
        preconditioner_lr: the fit's normalised step, in (0, 1] (0.1).
        preconditioner_init_scale: the initial scale of :math:`Q`, > 0 (1.0).
        mu_dtype: the dtype of the momentum; ``None`` keeps each parameter's.
        precond_dtype: the dtype of the factors; ``None``: each parameter's, at least float32.
        key: the PRNG key (a key, a raw ``PRNGKey``, an int seed or ``None`` for seed 0).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.kron import kron
        >>> loss = lambda w: jnp.sum(jnp.array([[1.0, 10.0], [100.0, 1000.0]]) * (w - 1.0) ** 2)
        >>> tx, w = kron(lambda t: 0.1 * 0.99**t), jnp.zeros((2, 2))
        >>> state = tx.init(w)
        >>> step = jax.jit(lambda w, state: tx.update(jax.grad(loss)(w), state, w))
        >>> for _ in range(500):
        ...     updates, state = step(w, state)
        ...     w = gradtx.apply_updates(w, updates)
        >>> bool(loss(w) < 1e-3 * loss(jnp.zeros((2, 2))))
        True
    """
    return chain(
        scale_by_kron(
            b1,
            preconditioner_update_probability,
            max_size_triangular,
            min_ndim_triangular,
            memory_save_mode,
            momentum_into_precond_update,
            preconditioner_lr,
            preconditioner_init_scale,
            mu_dtype,
            precond_dtype,
            key=key,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
