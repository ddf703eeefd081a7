"""Layer-wise scaling: steps sized by each parameter block's own norm (LARS, LAMB, Fromage), and
NovoGrad, whose second moment is one number per block.

A *block* is one leaf of the parameter tree (one layer's kernel, one bias).
These transforms compare the norm of a block's update with the norm of the
block itself, so that every layer moves by a similar *relative* amount
whatever the scale of its gradient. Norms are taken in at least float32 and
scaled by the largest magnitude first, so gradients near 1e-30 or 1e30 in
float32 neither underflow to 0/0 nor overflow.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, moments_like, needs_params, unzip
from gradtx.core.numerics import abs_sq, compute_dtype, magnitude_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.optimizers.adam import scale_by_adam
from gradtx.transforms.block_scaling import scale_by_trust_ratio
from gradtx.transforms.combine import chain
from gradtx.transforms.masking import masked, resolve_mask
from gradtx.transforms.momentum import trace
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import ScaleByScheduleState, scale_by_learning_rate

# ------------------------------------------------------- scaling by the block's size


# --------------------------------------------------------------------- optimizers


def _masked(tx: GradientTransformation, mask: Mask) -> GradientTransformation:
    """``mask`` as Optax takes it: ``True``/``None`` for every leaf, ``False`` for none, else a tree or function."""
    if mask is True or mask is None:
        return tx
    if mask is False:
        return masked(tx, lambda params: jax.tree.map(lambda _: False, params))
    return masked(tx, mask)


def lars(
    learning_rate: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Mask = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017, :arxiv:`1708.03888`, Algorithm 1).

    .. math::
        d = g + \beta \theta, \qquad
        \lambda = \eta \frac{\lVert \theta \rVert}{\lVert d \rVert}, \qquad
        v_t = m\, v_{t-1} + \gamma \lambda d, \qquad \theta \leftarrow \theta - v_t

    per layer. The paper's local rate divides by
    :math:`\lVert g\rVert + \beta\lVert\theta\rVert`; like Optax, gradtx takes the
    trust ratio of the decayed gradient :math:`d`, which equals it when
    :math:`g` and :math:`\theta` are aligned.

    Args:
        learning_rate: the global rate :math:`\gamma`; a number, 0-d array or schedule. The paper tunes it per
            batch size; the default 1.0 moves each layer by about ``trust_coefficient`` of its norm per step
            (Optax has no default).
        weight_decay: :math:`\beta`; a number, 0-d array or schedule.
        weight_decay_mask: the leaves to decay: ``True`` or ``None`` all, ``False`` none, else a tree of bools
            or a function of the parameters.
        trust_coefficient: :math:`\eta`, a number or 0-d array.
        eps: :math:`\epsilon` added to :math:`\lVert d \rVert` in the trust ratio, a number or 0-d array.
        trust_ratio_mask: the leaves that get the trust ratio (e.g. not biases or norm scales), as
            ``weight_decay_mask``.
        momentum: :math:`m` in [0, 1), a number or 0-d array.
        nesterov: whether to step by :math:`\gamma \lambda d + m v_t` instead of :math:`v_t` (Nesterov's momentum,
            as in :func:`gradtx.trace`).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.lars(1.0)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([10.0, 0.0]), tx.init(params), params)
        >>> [round(x, 6) for x in u.tolist()]  # -0.001 * 5 in the gradient's direction
        [-0.005, 0.0]
    """
    return chain(
        _masked(add_decayed_weights(weight_decay), weight_decay_mask),
        _masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
        trace(momentum, nesterov),
    )


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""LAMB: Adam's direction with a layer-wise trust ratio (You et al., 2019, :arxiv:`1904.00962`, Algorithm 2).

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
        \theta_{t+1} = \theta_t - \eta \frac{\lVert \theta_t \rVert}{\lVert r_t + \lambda \theta_t \rVert}
        (r_t + \lambda \theta_t)

    per layer, with Adam's bias-corrected moments (:func:`gradtx.scale_by_adam`)
    and :math:`\phi` the identity.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. The paper fixes none; the default is
            Adam's 1e-3 (Optax has none).
        b1: the first moment's decay :math:`\beta_1` in [0, 1), a number or 0-d array.
        b2: the second moment's decay :math:`\beta_2` in [0, 1), a number or 0-d array.
        eps: :math:`\epsilon`, a number or 0-d array; the default 1e-6 is the paper's.
        eps_root: :math:`\epsilon_{root}`, added to :math:`\hat v_t` inside the square root (as in
            :func:`gradtx.scale_by_adam`); a number or 0-d array.
        weight_decay: :math:`\lambda`; a number, 0-d array or schedule.
        mask: the leaves to decay: a tree of bools or a function of the parameters; ``None``: all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.lamb(0.1)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
        >>> [round(x, 4) for x in u.tolist()]  # Adam's first step (1, 1), rescaled to norm 0.1 * 5
        [-0.3536, -0.3536]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


def _fromage_step(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""From a trust-ratio-scaled ``u``: :math:`(\theta - \eta u)/\sqrt{1+\eta^2} - \theta`."""
    check_nonnegative("learning_rate", learning_rate)
    hp = Hyperparams(learning_rate=learning_rate)

    def init(params):
        return ScaleByScheduleState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params("fromage", params, updates)
        eta = hp.values(state.hyperparams)["learning_rate"]
        root = jnp.sqrt(1 + eta**2)
        shrink = eta**2 / (root + 1)  # sqrt(1 + eta^2) - 1 without cancellation

        def step(u, p):
            dtype = jnp.promote_types(u.dtype, p.dtype)
            e, r, s = (x.astype(dtype) for x in (eta, root, shrink))
            return ((-e * u.astype(dtype) - s * p.astype(dtype)) / r).astype(u.dtype)

        count = safe_increment(state.count)
        out = jax.tree.map(step, updates, params)
        return out, ScaleByScheduleState(count, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def fromage(learning_rate: ScalarOrSchedule = 1e-2, min_norm: float = 1e-6) -> GradientTransformation:
    r"""Fromage: frobenius matched gradient descent (Bernstein, Vahdat, Yue & Liu, 2020, :arxiv:`2002.03432`, Algorithm 1).

    .. math::
        \theta_l \leftarrow \frac{1}{\sqrt{1+\eta^2}}
        \left(\theta_l - \eta \frac{\lVert \theta_l \rVert_F}{\lVert g_l \rVert_F} g_l\right)

    per layer :math:`l`.

    Args:
        learning_rate: :math:`\eta`; a number, 0-d array or schedule. The default 0.01 is the paper's
            recommendation (Optax has none).
        min_norm: the floor of both norms, a number or 0-d array.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.fromage(0.75)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> [round(x, 4) for x in gradtx.apply_updates(params, u).tolist()]  # (w - 0.75 * 5 * e_2) / 1.25
        [2.4, 0.2]
    """
    return chain(scale_by_trust_ratio(min_norm=min_norm), _fromage_step(learning_rate))


class ScaleByNovogradState(NamedTuple):
    """NovoGrad's state: the momentum ``mu`` and, per leaf (layer), the scalar second moment ``nu``."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    mask: Mask = None,
) -> GradientTransformation:
    r"""NovoGrad's direction (Ginsburg et al., 2019, :arxiv:`1905.11286`, Algorithm 1): layer-wise normalized momentum.

    Each leaf :math:`l` is a layer with one second moment, of its gradient's norm:

    .. math::
        v^l_t = \beta_2 v^l_{t-1} + (1-\beta_2) \lVert g^l_t \rVert^2 \;\;(v^l_1 = \lVert g^l_1 \rVert^2), \\
        m^l_t = \beta_1 m^l_{t-1} + \frac{g^l_t}{\sqrt{v^l_t + \epsilon_{root}} + \epsilon} + \lambda\, \theta^l_{t-1},
        \qquad u_t = m_t

    The momentum has no :math:`1-\beta_1` factor, as in the paper.

    Args:
        b1: the momentum :math:`\beta_1`: a number, 0-d array or schedule, in [0, 1).
        b2: the decay rate :math:`\beta_2` of each :math:`v^l`: a number, 0-d array or schedule, in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number, 0-d array or schedule, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number, 0-d array or schedule, >= 0.
        weight_decay: :math:`\lambda`, which enters the momentum, so it is not a separate
            :func:`gradtx.add_decayed_weights`: a number, 0-d array or schedule, >= 0. Unless it is
            the number 0, ``update`` needs the parameters.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        mask: (keyword only, beyond Optax's signature) the leaves to decay: a tree of booleans
            like the parameters, or a function of them returning one; ``None`` decays all. Given,
            ``update`` needs the parameters.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_novograd()
        >>> u, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # g / ||g||
        [0.6, 0.8]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        eps_root=check_nonnegative("eps_root", eps_root),
        weight_decay=check_nonnegative("weight_decay", weight_decay),
    )
    decays = callable(weight_decay) or not (isinstance(weight_decay, (int, float)) and weight_decay == 0)

    def init(params):
        nu = jax.tree.map(lambda p: jnp.zeros((), magnitude_dtype(p)), params)
        return ScaleByNovogradState(zero_count(), moments_like(params, mu_dtype), nu, hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        if params is None and (decays or mask is not None):
            raise ValueError(
                "scale_by_novograd with weight decay needs the parameters: call update(updates, state, params)"
            )
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        first = state.count == 0
        if params is not None:
            _tree.check_same_structure(params, updates, "the parameters", "the updates")
        selected = jax.tree.map(lambda _: params is not None, updates) if mask is None else resolve_mask(mask, params)

        def step(g, m, v, p, decay):
            dtype = compute_dtype(g, m, v)
            b1_, b2_, eps_, eps_root_, wd = cast_scalars(
                dtype, h["b1"], h["b2"], h["eps"], h["eps_root"], h["weight_decay"]
            )
            g_ = g.astype(dtype)
            norm_sq = jnp.sum(abs_sq(g_)).astype(real_dtype(dtype))
            new_v = jnp.where(first, norm_sq, b2_ * v + (1 - b2_) * norm_sq)
            normalized = g_ / (jnp.sqrt(new_v + eps_root_) + eps_)
            if decay:
                normalized = normalized + wd * p.astype(dtype)
            new_m = b1_ * m + normalized
            return new_m.astype(g.dtype), new_m.astype(m.dtype), new_v.astype(v.dtype)

        params = updates if params is None else params  # then nothing is decayed
        out, mu, nu = unzip(jax.tree.map(step, updates, state.mu, state.nu, params, selected), updates, 3)
        return out, ScaleByNovogradState(count, mu, nu, hp.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def novograd(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
) -> GradientTransformation:
    r"""NovoGrad (Ginsburg et al., 2019, :arxiv:`1905.11286`): :math:`\theta_t = \theta_{t-1} - \eta\, m_t` (see :func:`scale_by_novograd`).

    Args:
        learning_rate: the step size :math:`\eta`, by default NVIDIA's reference code's 1e-3 (Optax
            has none): a number, 0-d array or schedule of the step, >= 0.
        b1: the momentum :math:`\beta_1`: a number, 0-d array or schedule, in [0, 1).
        b2: the decay rate :math:`\beta_2` of each :math:`v^l`: a number, 0-d array or schedule, in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number, 0-d array or schedule, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number, 0-d array or schedule, >= 0.
        weight_decay: :math:`\lambda`, inside the momentum: a number, 0-d array or schedule, >= 0.
            Unless it is the number 0, ``update`` needs the parameters.
        mask: (keyword only) the leaves to decay: a tree of booleans like the parameters, or a
            function of them returning one; ``None`` decays all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
        >>> tx = gradtx.novograd(0.1, weight_decay=0.5, mask={"w": True, "b": False})
        >>> updates, _ = tx.update({"w": jnp.array([3.0, 4.0]), "b": jnp.array([-2.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in updates["w"].tolist()], [round(x, 4) for x in updates["b"].tolist()]
        ([-0.21, -0.28], [0.1])
    """
    return chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay, mask=mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )
