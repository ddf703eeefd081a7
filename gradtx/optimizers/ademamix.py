r"""AdEMAMix (Pagliardini, Ablin & Grangier, 2024, :arxiv:`2409.03137`): Adam whose numerator
mixes a fast, bias-corrected EMA of the gradients with a slow one that remembers tens of
thousands of steps; and Simplified AdEMAMix (Morwani, Vyas, Zhang & Kakade, 2025,
:arxiv:`2502.02431`), which keeps one momentum and adds the current gradient.

A slow EMA with :math:`\beta_3` close to 1 destabilises the start of training; the paper warms
up :math:`\alpha` and :math:`\beta_3` (its Section 3). :func:`ademamix_alpha_warmup` and
:func:`ademamix_b3_warmup` are those schedulers, to pass as ``alpha`` and ``b3``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Schedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, float_dtype
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_positive, check_range
from gradtx.optimizers.adam import adam_hyperparams, adam_scalars
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

# ------------------------------------------------------------------ the warm-ups


def ademamix_alpha_warmup(alpha: float, warmup_steps: int) -> Schedule:
    r"""The paper's linear warm-up of :math:`\alpha`: :math:`\alpha(t) = \min(t\alpha / T_\alpha, \alpha)`.

    A schedule of the step count (0 at the first update): update :math:`t` (from 1) gets
    :math:`\alpha(t)`, so the first update already mixes in :math:`\alpha / T_\alpha`, as in
    the paper's Algorithm 1.

    Args:
        alpha: the final :math:`\alpha`: a number, >= 0.
        warmup_steps: :math:`T_\alpha`, the update at which :math:`\alpha` is reached: > 0
            (the paper sets it to the length of the run).

    Example:
        >>> from gradtx.optimizers.ademamix import ademamix_alpha_warmup
        >>> schedule = ademamix_alpha_warmup(8.0, 4)
        >>> [float(schedule(count)) for count in range(5)]
        [2.0, 4.0, 6.0, 8.0, 8.0]
    """
    check_nonnegative("alpha", alpha)
    check_positive("warmup_steps", warmup_steps)

    def schedule(count):
        t = jnp.asarray(count, float_dtype()) + 1
        return jnp.minimum(t * alpha / warmup_steps, alpha)

    return schedule


def ademamix_b3_warmup(b3: float, warmup_steps: int, b_start: float = 0.9) -> Schedule:
    r"""The paper's warm-up of :math:`\beta_3`, linear in the half-life of the slow EMA.

    .. math::
        \beta_3(t) = \min\left(\exp\left(\frac{\ln\beta_{start} \ln\beta_3}
            {(1 - t/T_{\beta_3}) \ln\beta_3 + (t/T_{\beta_3}) \ln\beta_{start}}\right), \beta_3\right)

    A schedule of the step count (0 at the first update): update :math:`t` (from 1) gets
    :math:`\beta_3(t)`, as in the paper's Algorithm 1.

    Args:
        b3: the final :math:`\beta_3`: a number in [0, 1).
        warmup_steps: :math:`T_{\beta_3}`, the update at which :math:`\beta_3` is reached: > 0.
        b_start: :math:`\beta_{start}`, the value the warm-up starts from (the paper uses
            :math:`\beta_1`, 0.9): a number in (0, 1).

    Example:
        >>> from gradtx.optimizers.ademamix import ademamix_b3_warmup
        >>> schedule = ademamix_b3_warmup(0.999, 4, b_start=0.9)
        >>> [round(float(schedule(count)), 4) for count in range(5)]
        [0.9961, 0.998, 0.9987, 0.999, 0.999]
    """
    check_decay("b3", b3)
    check_range("b_start", b_start, 0.0, 1.0, low_open=True, high_open=True)
    check_positive("warmup_steps", warmup_steps)

    def schedule(count):
        r = (jnp.asarray(count, float_dtype()) + 1) / warmup_steps
        log_start, log_end = jnp.log(b_start), jnp.log(b3)
        return jnp.minimum(jnp.exp(log_start * log_end / ((1 - r) * log_end + r * log_start)), b3)

    return schedule


# ---------------------------------------------------------------------- AdEMAMix


class ScaleByAdemamixState(NamedTuple):
    r"""AdEMAMix's state: the step count, the fast EMA :math:`m_1`, the slow EMA :math:`m_2` and
    the second moment :math:`\nu`; ``count_m2`` (Optax's field) counts the updates of :math:`m_2`,
    which equal ``count``."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    count_m2: jax.Array
    m1: Updates
    m2: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def scale_by_ademamix(
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdEMAMix's direction (Pagliardini et al., 2024, :arxiv:`2409.03137`, Algorithm 1).

    .. math::
        m_{1,t} = \beta_1 m_{1,t-1} + (1-\beta_1) g_t, \quad
        m_{2,t} = \beta_3 m_{2,t-1} + (1-\beta_3) g_t, \quad
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) g_t^2, \\
        u_t = \frac{m_{1,t} / (1-\beta_1^t) + \alpha\, m_{2,t}}{\sqrt{\nu_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The slow EMA :math:`m_2` is not bias-corrected. ``b3`` and ``alpha`` may be schedules of the
    step count (update :math:`t` uses their value at :math:`t-1`, as every gradtx schedule);
    :func:`ademamix_b3_warmup` and :func:`ademamix_alpha_warmup` are the paper's.

    Args:
        b1: the decay rate :math:`\beta_1` of the fast EMA: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        b3: the decay rate :math:`\beta_3` of the slow EMA: a number, 0-d array or schedule, in [0, 1).
        alpha: the weight :math:`\alpha` of the slow EMA (Optax's default for this block, 6.0):
            a number, 0-d array or schedule, >= 0.
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of :math:`m_1` and :math:`m_2`; ``None`` keeps each parameter's.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.ademamix import scale_by_ademamix
        >>> tx = scale_by_ademamix(b3=0.5, alpha=2.0, eps=0.0)
        >>> u, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]  # (1 + 2 * 0.5) * sign(g)
        [2.0]
    """
    adam = adam_hyperparams(b1, b2, eps, eps_root).given  # checked; refuses schedules for these four
    hp = Hyperparams(
        b1=adam["b1"],
        b2=adam["b2"],
        b3=check_decay("b3", b3),
        alpha=check_nonnegative("alpha", alpha),
        eps=adam["eps"],
        eps_root=adam["eps_root"],
    )

    def init(params):
        m1, m2 = moments_like(params, mu_dtype), moments_like(params, mu_dtype)
        return ScaleByAdemamixState(zero_count(), zero_count(), m1, m2, magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.m1, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        m1 = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.m1)
        m2 = jax.tree.map(lambda g, m: update_moment(g, m, h["b3"], 1), updates, state.m2)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.nu)
        scalars = adam_scalars(h, count)

        def direction(g, m1, m2, v):
            dtype = compute_dtype(g, m1, m2, v)
            s = scalars(dtype)
            (alpha,) = cast_scalars(dtype, h["alpha"])
            m1_hat = m1.astype(dtype) * s.c1
            v_hat = v.astype(real_dtype(dtype)) * s.c2
            u = (m1_hat + alpha * m2.astype(dtype)) / (jnp.sqrt(v_hat + s.eps_root) + s.eps)
            return u.astype(g.dtype)

        out = jax.tree.map(direction, updates, m1, m2, nu)
        new = ScaleByAdemamixState(
            count, safe_increment(state.count_m2), m1, m2, nu, hp.advance(state.hyperparams, count)
        )
        return out, new

    return GradientTransformation(init, update)


def ademamix(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""AdEMAMix (Pagliardini et al., 2024, :arxiv:`2409.03137`): Adam with a slow EMA mixed in.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \frac{\hat m_{1,t} + \alpha\, m_{2,t}}{\sqrt{\hat\nu_t} + \epsilon}
            + \lambda \theta_{t-1} \right)

    See :func:`scale_by_ademamix`. For the paper's warm-ups pass
    ``b3=ademamix_b3_warmup(0.9999, T)`` and ``alpha=ademamix_alpha_warmup(5.0, T)``.

    Args:
        learning_rate: the step size :math:`\eta` (1e-3, as Adam; Optax has no default): a number,
            0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the fast EMA: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        b3: the decay rate :math:`\beta_3` of the slow EMA: a number, 0-d array or schedule, in [0, 1).
        alpha: the weight :math:`\alpha` of the slow EMA: a number, 0-d array or schedule, >= 0.
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the two EMAs; ``None`` keeps each parameter's.
        weight_decay: the decoupled decay rate :math:`\lambda`: a number, 0-d array or schedule, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.ademamix import ademamix, ademamix_alpha_warmup, ademamix_b3_warmup
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx = ademamix(0.1, b3=ademamix_b3_warmup(0.99, 50), alpha=ademamix_alpha_warmup(5.0, 50))
        >>> w = jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 1) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


# ----------------------------------------------------------- Simplified AdEMAMix


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    r"""Simplified AdEMAMix's state (Optax's field names): the step count ``t``, the momentum
    ``m`` (a sum, not an average) and the second moment ``n``."""

    t: jax.Array
    m: Updates
    n: Updates
    hyperparams: dict[str, Any]


def scale_by_simplified_ademamix(
    b1: ScalarOrSchedule = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation:
    r"""Simplified AdEMAMix's direction (Morwani et al., 2025, :arxiv:`2502.02431`).

    .. math::
        m_t = \beta_1 m_{t-1} + g_t, \quad
        n_t = \beta_2 n_{t-1} + (1-\beta_2) g_t^2, \quad
        u_t = \frac{m_t + \alpha\, g_t}{\sqrt{n_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The momentum is a discounted sum, not bias-corrected, so the update is about
    :math:`1/(1-\beta_1)` times Adam's: scale the learning rate down accordingly.

    Args:
        b1: the momentum decay :math:`\beta_1`: a number, 0-d array or schedule in [0, 1) (a
            schedule such as :func:`ademamix_b3_warmup` gives the authors' warm-up of
            :math:`\beta_1`; Optax takes a number only).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        alpha: the weight :math:`\alpha` of the current gradient: a number, 0-d array or schedule, >= 0.
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.ademamix import scale_by_simplified_ademamix
        >>> tx = scale_by_simplified_ademamix(alpha=1.0, eps=0.0)
        >>> u, _ = tx.update(jnp.array([-2.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]  # (g + g) / |g|
        [-2.0]
    """
    fixed = Hyperparams(  # checked; these three refuse schedules
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        eps_root=check_nonnegative("eps_root", eps_root),
        allow_schedules=False,
    ).given
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=fixed["b2"],
        alpha=check_nonnegative("alpha", alpha),
        eps=fixed["eps"],
        eps_root=fixed["eps_root"],
    )

    def init(params):
        return ScaleBySimplifiedAdEMAMixState(zero_count(), moments_like(params), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.m, updates)
        h = hp.values(state.hyperparams)
        t = safe_increment(state.t)
        n = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.n)

        def step(g, m, v):
            dtype = compute_dtype(g, m, v)
            b1, b2, alpha, eps, eps_root = cast_scalars(dtype, h["b1"], h["b2"], h["alpha"], h["eps"], h["eps_root"])
            g_ = g.astype(dtype)
            m_new = b1 * m.astype(dtype) + g_
            n_hat = v.astype(real_dtype(dtype)) / (1 - b2 ** t.astype(b2.dtype))
            u = (m_new + alpha * g_) / (jnp.sqrt(n_hat + eps_root) + eps)
            return u.astype(g.dtype), m_new.astype(m.dtype)

        out, m = unzip(jax.tree.map(step, updates, state.m, n), updates)
        return out, ScaleBySimplifiedAdEMAMixState(t, m, n, hp.advance(state.hyperparams, t))

    return GradientTransformation(init, update)


def simplified_ademamix(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: ScalarOrSchedule = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix (Morwani et al., 2025, :arxiv:`2502.02431`): one momentum, plus the gradient.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \frac{m_t + \alpha\, g_t}{\sqrt{\hat n_t} + \epsilon}
            + \lambda \theta_{t-1} \right)

    See :func:`scale_by_simplified_ademamix`. With :math:`\alpha = 0` it is Adam with an
    uncorrected momentum of weight 1.

    Args:
        learning_rate: the step size :math:`\eta` (1e-4, the authors' example; Optax has no
            default): a number, 0-d array or schedule of the step, >= 0.
        b1: the momentum decay :math:`\beta_1`: a number, 0-d array or schedule in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        alpha: the weight :math:`\alpha` of the current gradient: a number, 0-d array or schedule, >= 0.
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        weight_decay: the decoupled decay rate :math:`\lambda`: a number, 0-d array or schedule, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.ademamix import simplified_ademamix
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = simplified_ademamix(0.01, b1=0.9, alpha=1.0), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 1) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
