r"""ACProp (Zhuang et al., 2021, :arxiv:`2110.05454`): a centred second moment used asynchronously.

ACProp divides the momentum of step :math:`t` by the root of a second moment that has seen the
gradients up to step :math:`t-1` only, so that numerator and denominator are independent; the
second moment is centred, as in AdaBelief, on the momentum: it averages how far each gradient
lands from the momentum. ``numerator="gradient"`` gives Optax's variant instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule
from gradtx.core.base import GradientTransformation
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip
from gradtx.core.numerics import abs_sq, bias_correction, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_one_of
from gradtx.optimizers.adam import ScaleByAdamState, adam_hyperparams
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

NUMERATORS = ("momentum", "gradient")


def scale_by_acprop(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    numerator: str = "momentum",
) -> GradientTransformation:
    r"""ACProp's direction (Zhuang et al., 2021, :arxiv:`2110.05454`): the momentum over the root of
    the previous step's centred second moment.

    With :math:`t = 1, 2, \dots` and :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t`, the
    default (``numerator="momentum"``, the paper's Algorithm ACProp and the authors' code):

    .. math::
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_{t-1} / (1-\beta_2^{t-1})} + \epsilon}
        \quad (t > 1), \qquad u_1 = \frac{m_1}{1-\beta_1} = g_1, \\
        s_t = \beta_2 s_{t-1} + (1-\beta_2)\,|g_t - m_t|^2 + \epsilon_{root}

    and Optax's variant (``numerator="gradient"``):

    .. math::
        u_t = \frac{g_t}{\sqrt{s_{t-1} / (1-\beta_2^{t-1})} + \epsilon} \quad (t > 1), \qquad
        u_1 = \frac{g_1}{1 + \epsilon}, \\
        s_t = \beta_2 s_{t-1} + (1-\beta_2)\,|g_t - m_{t-1}|^2 + \epsilon_{root}

    The first step, before any second moment exists, is a plain step: the authors' code takes the
    bias-corrected momentum, :math:`g_1`, as it is; Optax divides :math:`g_1` by
    :math:`1 + \epsilon`. The default departs from Optax, which divides the raw gradient and centres
    on the momentum :math:`m_{t-1}` from before :math:`g_t`, where the paper and the authors' code
    divide the bias-corrected momentum :math:`m_t` and centre on it. The state is a
    :class:`~gradtx.optimizers.adam.ScaleByAdamState` (Optax's ``ScaleByBeliefState``) whose
    ``nu`` holds :math:`s_t`.

    Args:
        b1: the decay rate :math:`\beta_1` of the momentum: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`s_t`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added to :math:`s_t` at every step: a number or 0-d
            array, >= 0.
        numerator: ``"momentum"`` (the paper's form) or ``"gradient"`` (Optax's exact numerics:
            the gradient over the root, :math:`s_t` centred on :math:`m_{t-1}`, Optax's first step);
            keyword only.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.acprop import scale_by_acprop
        >>> tx = scale_by_acprop()
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([0.5, -2.0]), state)
        >>> [round(x, 4) for x in u.tolist()]  # the first step: m_1 / (1 - b1) = g_1
        [0.5, -2.0]
        >>> u, state = tx.update(jnp.array([1.0, 1.0]), state)
        >>> [round(x, 4) for x in u.tolist()]  # m_2 / (1 - b1^2) over |g_1 - m_1| = 0.9 |g_1|
        [1.6959, -0.2339]
    """
    hp = adam_hyperparams(b1, b2, eps, eps_root)
    check_one_of("numerator", numerator, NUMERATORS)
    use_momentum = numerator == "momentum"

    def init(params):
        return ScaleByAdamState(zero_count(), moments_like(params), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)  # t
        first = state.count == 0  # no s_0 to divide by yet

        def step(g, m, s):
            dtype = compute_dtype(g, m, s)
            b1_, b2_, eps_, eps_root_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"], h["eps_root"])
            g_, m_, s_ = g.astype(dtype), m.astype(dtype), s.astype(real_dtype(dtype))
            m_new = b1_ * m_ + (1 - b1_) * g_
            if use_momentum:
                top, centre, first_root = bias_correction(m_new, b1_, count), m_new, jnp.ones_like(eps_)
            else:
                top, centre, first_root = g_, m_, 1 + eps_
            s_hat = bias_correction(s_, b2_, jnp.where(first, 1, state.count))  # s_{t-1} / (1 - b2^(t-1))
            root = jnp.where(first, first_root, jnp.sqrt(s_hat) + eps_)
            u = top / root
            s_new = b2_ * s_ + (1 - b2_) * abs_sq(g_ - centre) + eps_root_
            return u.astype(g.dtype), m_new.astype(m.dtype), s_new.astype(s.dtype)

        out, mu, nu = unzip(jax.tree.map(step, updates, state.mu, state.nu), updates, 3)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def acprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    numerator: str = "momentum",
) -> GradientTransformation:
    r"""ACProp (Zhuang et al., 2021, :arxiv:`2110.05454`), with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left(u_t + \lambda\, \theta_{t-1}\right)

    with :math:`u_t` the asynchronous, centred direction of :func:`scale_by_acprop`: by default the
    paper's, the bias-corrected momentum over the root; ``numerator="gradient"`` gives Optax's
    numerics (the default departs from Optax, see :func:`scale_by_acprop`).

    Args:
        learning_rate: the step size :math:`\eta`, >= 0 (the authors' experiments use 1e-3; Optax
            has no default): a number, 0-d array or schedule of the step.
        b1: the decay rate :math:`\beta_1` of the momentum: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added to the second moment: a number or 0-d array, >= 0.
        weight_decay: the decay rate :math:`\lambda`, >= 0: a number, 0-d array or schedule.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.
        numerator: ``"momentum"`` (the paper's form) or ``"gradient"`` (Optax's); keyword only.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.acprop import acprop
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = acprop(0.1), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 1) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root, numerator=numerator),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
