"""Sign-based methods: signSGD and Signum, Lion, and Rprop.

Each of these uses only the sign of a gradient (or of a momentum), so the step
of every coordinate has a size fixed by the method, not by the gradient's scale:
they are unaffected by gradients of any magnitude, 1e-30 or 1e30 alike.
For complex gradients the sign is ``jnp.sign(z) = z / |z|``: each coordinate moves
by the step size along its gradient's phase.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation, negate, stateless
from gradtx.core.hyperparams import Hyperparams, renamed
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of, check_positive, check_range
from gradtx.transforms.cautious import cautious as cautious_transform
from gradtx.transforms.combine import chain
from gradtx.transforms.momentum import ema
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

# ------------------------------------------------------------ signSGD, Signum


def scale_by_sign() -> GradientTransformation:
    r"""Replace each update by its sign: :math:`u_t = \mathrm{sign}(g_t)` (0 where :math:`g_t = 0`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_sign()
        >>> tx.update(jnp.array([-3.0, 0.0, 1e-30]), tx.init(jnp.zeros(3)))[0].tolist()
        [-1.0, 0.0, 1.0]
    """

    def sign(updates, params):
        if params is not None:  # no state to check the tree against: check it against the parameters
            _tree.check_same_structure(params, updates, "the parameters", "the updates")
        return jax.tree.map(jnp.sign, updates)

    return stateless(sign)


def sign_sgd(learning_rate: ScalarOrSchedule = 1e-3) -> GradientTransformation:
    r"""signSGD (Bernstein et al., 2018, :arxiv:`1802.04434`): :math:`\theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(g_t)`.

    Args:
        learning_rate: :math:`\eta`, the step of every coordinate; a number, 0-d array or schedule. The
            default 1e-3 is Adam's, whose first step is the same (neither Optax nor the paper has one).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.sign_sgd(0.1)
        >>> updates, _ = tx.update(jnp.array([-3.0, 2e-5]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in updates.tolist()]
        [0.1, -0.1]
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate, allow_none=False))


def signum(
    learning_rate: ScalarOrSchedule = 1e-3,
    beta: float = 0.9,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Signum (Bernstein et al., 2018, :arxiv:`1802.04434`): signSGD on a moving average of the gradients.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad \theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(m_t)

    A chain of :func:`gradtx.ema` (without bias correction, which cannot change
    a sign), :func:`scale_by_sign` and the learning rate.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule (default as :func:`sign_sgd`).
        beta: the momentum's decay :math:`\beta` in [0, 1), a number or 0-d array (kept in the state as ``beta``).
        accumulator_dtype: the dtype of :math:`m`; ``None``: that of each parameter.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.signum(0.1, beta=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.array([1.0]), state)
        >>> updates, state = tx.update(jnp.array([-0.5]), state)  # m = 0.5 * 0.5 - 0.5 * 0.5 = 0
        >>> updates.tolist(), gradtx.hyperparams(state)
        ([-0.0], {'beta': 0.5, 'learning_rate': 0.1})
    """
    return chain(
        renamed(ema(beta, debias=False, accumulator_dtype=accumulator_dtype), decay="beta"),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


# ---------------------------------------------------------------------- Lion


class ScaleByLionState(NamedTuple):
    """Lion's state: the step count and the momentum ``mu`` (:math:`m`)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    hyperparams: dict[str, Any]


def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformation:
    r"""Lion's direction (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms", :arxiv:`2302.06675`, Algorithm 2).

    .. math::
        c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad u_t = \mathrm{sign}(c_t), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    The sign interpolates between the momentum and the gradient with
    :math:`\beta_1`, while the momentum itself decays more slowly with
    :math:`\beta_2`.

    Args:
        b1: the interpolation :math:`\beta_1` in [0, 1) inside the sign, a number or 0-d array.
        b2: the momentum's decay :math:`\beta_2` in [0, 1), a number or 0-d array.
        mu_dtype: the dtype of :math:`m`; ``None``: that of each parameter.
        mode: only the paper's ``"hard"`` is implemented; Optax's other modes raise ``ValueError``.
        smooth_beta: belongs to Optax's other modes; unused, but it must be positive.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_lion(b1=0.5, b2=0.6)
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.array([1.0, -2.0]), state)
        >>> u, state = tx.update(jnp.array([0.5, 1.0]), state)  # c = 0.5 * (0.4, -0.8) + 0.5 * g
        >>> u.tolist()
        [1.0, 1.0]
    """
    if mode != "hard":
        raise ValueError(f"scale_by_lion: mode={mode!r} is not implemented; gradtx has the paper's mode='hard'")
    check_positive("smooth_beta", smooth_beta)
    hp = Hyperparams(b1=check_decay("b1", b1), b2=check_decay("b2", b2), allow_schedules=False)

    def init(params):
        return ScaleByLionState(zero_count(), moments_like(params, mu_dtype), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)

        def direction(g, m):
            dtype = compute_dtype(g, m)
            (b1_,) = cast_scalars(dtype, h["b1"])
            return jnp.sign(b1_ * m + (1 - b1_) * g.astype(dtype)).astype(g.dtype)

        out = jax.tree.map(direction, updates, state.mu)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b2"], 1), updates, state.mu)
        return out, ScaleByLionState(safe_increment(state.count), mu, state.hyperparams)

    return GradientTransformation(init, update)


def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Mask = None,
    *,
    cautious: bool = False,
) -> GradientTransformation:
    r"""Lion (Chen et al., 2023, :arxiv:`2302.06675`): the sign step of :func:`scale_by_lion` with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta\, (\mathrm{sign}(c_t) + \lambda \theta_{t-1})

    The paper advises a learning rate 3-10x smaller than AdamW's (its sign steps
    are larger) and a weight decay as much larger.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. The default 1e-4 is AdamW's 1e-3
            divided so (Optax has none).
        b1: :math:`\beta_1`, as in :func:`scale_by_lion`.
        b2: :math:`\beta_2`, as in :func:`scale_by_lion`.
        mu_dtype: the dtype of the momentum; ``None``: that of each parameter.
        weight_decay: :math:`\lambda`; a number, 0-d array or schedule (default Optax's 1e-3).
        mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.
        cautious: C-Lion (Liang et al., 2024, :arxiv:`2411.16085`): keep only the components of
            :math:`u_t = \mathrm{sign}(c_t)` whose sign agrees with the gradient's,
            :math:`\phi_t = 1[u_t \odot g_t > 0]`, scaled by the inverse of the fraction kept in
            each leaf (at most :math:`10^3`), :math:`u_t \odot \phi_t / \max(\mathrm{mean}(\phi_t),
            10^{-3})`, before the weight decay, which is not masked (see
            :func:`gradtx.transforms.cautious.cautious`). The state's first member is then a
            ``CautiousState`` around Lion's, and ``mask_eps`` is among the hyperparameters.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.array([2.0, 2.0])
        >>> tx = gradtx.lion(0.1, weight_decay=0.25)
        >>> updates, _ = tx.update(jnp.array([3.0, -1e-20]), tx.init(params), params)
        >>> [round(x, 4) for x in updates.tolist()]  # -0.1 * (sign(g) + 0.25 * 2)
        [-0.15, 0.05]
    """
    direction = scale_by_lion(b1, b2, mu_dtype)
    return chain(
        cautious_transform(direction, descent=False) if cautious else direction,
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


# --------------------------------------------------------------------- Rprop


class ScaleByRpropState(NamedTuple):
    """Rprop's state: the step count, each coordinate's step size :math:`\\Delta` and its previous
    gradient (zeroed where its sign flipped, in iRprop-); ``prev_updates`` is Optax's name for it."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    step_sizes: Updates
    prev_grad: Updates
    hyperparams: dict[str, Any]

    @property
    def prev_updates(self) -> Updates:
        return self.prev_grad


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    variant: str = "irprop-",
) -> GradientTransformation:
    r"""Rprop's direction (Riedmiller & Braun, 1993, :doi:`10.1109/ICNN.1993.298623`), without backtracking: iRprop- or Rprop-.

    Each coordinate has its own step size :math:`\Delta`, grown while its
    gradient keeps its sign and shrunk when the sign flips:

    .. math::
        \Delta_t = \begin{cases}
            \min(\eta^+ \Delta_{t-1}, \Delta_{max}) & g_t g_{t-1} > 0 \\
            \max(\eta^- \Delta_{t-1}, \Delta_{min}) & g_t g_{t-1} < 0 \\
            \Delta_{t-1} & \text{otherwise}
        \end{cases}, \qquad u_t = \mathrm{sign}(g_t)\, \Delta_t

    The paper undoes the previous step when the sign flips. Igel & Hüsken (2000) drop the
    backtracking: iRprop- (the default, as in torch.optim) takes no step where the sign flipped
    and forgets that gradient (:math:`g_t \leftarrow 0`, so the next step neither grows nor
    shrinks :math:`\Delta`); Rprop- (``variant="rprop-"``) steps with the shrunk :math:`\Delta`.
    The first update is :math:`\mathrm{sign}(g_1)\Delta_0`; Optax's scale_by_rprop returns each
    step one update late, so its first update is zero.
    Signs are compared as :math:`\mathrm{sign}(g_t)\mathrm{sign}(g_{t-1})`, which cannot overflow.
    For complex gradients :math:`\mathrm{sign}(z) = z/|z|` and the signs agree when
    :math:`\mathrm{Re}(\mathrm{sign}(g_t)\overline{\mathrm{sign}(g_{t-1})}) > 0`, i.e. the phase
    turned by less than 90 degrees; the step sizes are real.

    Args:
        learning_rate: the initial step size :math:`\Delta_0`, a positive number or 0-d array; the step
            sizes are state, so this is only their starting value.
        eta_minus: the shrink factor :math:`\eta^-` in (0, 1], a number or 0-d array.
        eta_plus: the growth factor :math:`\eta^+ \ge 1`, a number or 0-d array.
        min_step_size: the floor :math:`\Delta_{min} \ge 0`, a number or 0-d array.
        max_step_size: the cap :math:`\Delta_{max} > 0`, a number or 0-d array.
        variant: ``"irprop-"`` (no step after a sign flip) or ``"rprop-"`` (the shrunk step).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_rprop(0.1)
        >>> state, steps = tx.init(jnp.zeros(1)), []
        >>> for g in [2.0, 3.0, 1.0, -1.0]:
        ...     u, state = tx.update(jnp.array([g]), state)
        ...     steps.append(round(u.item(), 4))
        >>> steps  # iRprop-: no step where the sign flipped
        [0.1, 0.12, 0.144, 0.0]
    """
    check_one_of("variant", variant, ("irprop-", "rprop-"))
    check_positive("learning_rate", learning_rate)
    hp = Hyperparams(
        learning_rate=learning_rate,
        eta_minus=check_range("eta_minus", eta_minus, 0.0, 1.0, low_open=True),
        eta_plus=check_range("eta_plus", eta_plus, 1.0),
        min_step_size=check_nonnegative("min_step_size", min_step_size),
        max_step_size=check_positive("max_step_size", max_step_size),
        allow_schedules=False,
    )

    def init(params):
        step_sizes = magnitudes_like(params, fill_value=learning_rate)  # real, float32 for float16
        return ScaleByRpropState(zero_count(), step_sizes, moments_like(params, None), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.step_sizes, updates)
        h = hp.values(state.hyperparams)

        def step(g, delta, g_prev):
            dtype = compute_dtype(g, delta)
            eta_minus_, eta_plus_, lo, hi = cast_scalars(
                dtype, h["eta_minus"], h["eta_plus"], h["min_step_size"], h["max_step_size"]
            )
            sign = jnp.sign(g.astype(dtype))  # z / |z| for a complex z
            agree = jnp.real(sign * jnp.conj(jnp.sign(g_prev.astype(dtype))))
            d = delta.astype(real_dtype(dtype))
            new_d = jnp.where(
                agree > 0, jnp.minimum(d * eta_plus_, hi), jnp.where(agree < 0, jnp.maximum(d * eta_minus_, lo), d)
            )
            u = sign * new_d
            if variant == "irprop-":  # after a flip: no step, and the flipped gradient is forgotten
                u, g = jnp.where(agree < 0, 0, u), jnp.where(agree < 0, 0, g)
            return u.astype(g.dtype), new_d.astype(delta.dtype), g.astype(g_prev.dtype)

        out, step_sizes, prev_grad = unzip(jax.tree.map(step, updates, state.step_sizes, state.prev_grad), updates, 3)
        return out, ScaleByRpropState(safe_increment(state.count), step_sizes, prev_grad, state.hyperparams)

    return GradientTransformation(init, update)


def rprop(
    learning_rate: float = 0.1,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    variant: str = "irprop-",
) -> GradientTransformation:
    r"""iRprop- or Rprop- (Riedmiller & Braun, 1993, :doi:`10.1109/ICNN.1993.298623`; Igel & Hüsken, 2000): :math:`\theta_t = \theta_{t-1} - \mathrm{sign}(g_t)\Delta_t`.

    See :func:`scale_by_rprop`. Rprop is meant for full-batch gradients:
    minibatch noise flips signs and shrinks the steps.

    Args:
        learning_rate: the initial step size :math:`\Delta_0`, a positive number or 0-d array; the default
            0.1 is the paper's (torch.optim uses 1e-2; Optax has none).
        eta_minus: the shrink factor :math:`\eta^-` in (0, 1], as in :func:`scale_by_rprop`.
        eta_plus: the growth factor :math:`\eta^+ \ge 1`.
        min_step_size: the floor :math:`\Delta_{min}` of the step sizes.
        max_step_size: the cap :math:`\Delta_{max}` of the step sizes.
        variant: ``"irprop-"`` (the default, torch.optim's: no step after a sign flip) or ``"rprop-"``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = gradtx.rprop(), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(100):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 3) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, variant=variant), negate()
    )
