"""Layer-wise scaling: steps sized by each parameter block's own norm (LARS, LAMB, Fromage).

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
from gradtx.core.base import GradientTransformation, Params, ScalarOrSchedule
from gradtx.transforms.combine import chain, masked
from gradtx.core.hyperparams import Hyperparams, check_nonnegative, check_range
from gradtx.optimizers.adam import scale_by_adam, trace
from gradtx.core.numerics import norm_dtype, safe_increment, safe_norm, zero_count
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import ScaleByScheduleState, _times, scale_by_learning_rate

Mask = Any


def _needs_params(who: str, params: Params | None, updates: Any) -> None:
    if params is None:
        raise ValueError(f"{who} needs the parameters: call update(updates, state, params)")
    _tree.check_same_structure(params, updates, "the parameters", "the updates")


def _dtype(u: jax.Array, p: jax.Array):
    return jnp.promote_types(norm_dtype(u), norm_dtype(p))


# ------------------------------------------------------------------ trust ratio


class ScaleByTrustRatioState(NamedTuple):
    """``scale_by_trust_ratio``: only its hyperparameters (``min_norm``, ``trust_coefficient``, ``eps``)."""

    hyperparams: dict[str, Any]


def _block_norms(tree: Any, axis_name: Any) -> Any:
    """The l2 norm of each leaf: :func:`gradtx.core.tree.block_norms`, or with ``axis_name``,
    of whole leaves whose parts are split across that mapped axis."""
    if axis_name is None:
        return _tree.block_norms(tree)
    return jax.tree.map(lambda x: _block_norm(x, axis_name), tree)


def _block_norm(x: jax.Array, axis_name: Any) -> jax.Array:
    """:func:`safe_norm` of a whole leaf whose parts are split across the mapped axis ``axis_name``."""
    x = jnp.abs(jnp.asarray(x)).astype(norm_dtype(x))
    top = jax.lax.pmax(jnp.max(x, initial=0), axis_name)
    unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
    return unit * jnp.sqrt(jax.lax.psum(jnp.sum(jnp.square(x / unit)), axis_name))


def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0, *, axis_name: Any = None,
) -> GradientTransformation:
    r"""Scale each block's update by the trust ratio :math:`\lVert\theta\rVert / \lVert u\rVert`.

    .. math::
        u \leftarrow u \cdot \frac{c\, \max(\lVert \theta \rVert, m)}{\max(\lVert u \rVert, m) + \epsilon}

    per leaf, with :math:`c` = ``trust_coefficient`` and :math:`m` = ``min_norm``;
    the ratio is 1 where either norm is 0 (zero-initialized parameters still
    move, zero updates stay 0). This is the layer-wise factor of LARS
    (You, Gitman & Ginsburg, 2017) and LAMB (You et al., 2019). Needs the
    parameters.

    Under ``shard_map`` or ``pmap`` with every leaf split across a mapped axis,
    pass it as ``axis_name``: each block's norms are then those of the whole
    leaf (``pmax`` and ``psum`` over the axis). Leave it ``None`` under ``jit``
    with sharded arrays and when each device holds whole leaves.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_trust_ratio()
        >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(2)}
        >>> u, _ = tx.update({"w": jnp.array([0.0, 0.1]), "b": jnp.ones(2)}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()], u["b"].tolist()  # |u_w| becomes |w| = 5
        ([0.0, 5.0], [1.0, 1.0])
    """
    hp = Hyperparams(
        min_norm=check_nonnegative("min_norm", min_norm),
        trust_coefficient=check_nonnegative("trust_coefficient", trust_coefficient),
        eps=check_nonnegative("eps", eps), allow_schedules=False,
    )

    def init(params):
        return ScaleByTrustRatioState(hp.init())

    def update(updates, state, params=None, **extra_args):
        _needs_params("scale_by_trust_ratio", params, updates)
        h = hp.values(state.hyperparams)

        def scale_leaf(u, p, p_norm, u_norm):
            dtype = _dtype(u, p)
            m, c, e = (h[k].astype(dtype) for k in ("min_norm", "trust_coefficient", "eps"))
            p_norm, u_norm = jnp.maximum(p_norm, m), jnp.maximum(u_norm, m)
            denominator = u_norm + e
            ratio = c * p_norm / jnp.where(denominator > 0, denominator, 1)
            ratio = jnp.where((p_norm > 0) & (u_norm > 0), ratio, 1)
            return (u * ratio).astype(u.dtype)

        norms = [_block_norms(tree, axis_name) for tree in (params, updates)]
        return jax.tree.map(scale_leaf, updates, params, *norms), state

    return GradientTransformation(init, update)


# ------------------------------------------------------- scaling by the block's size


class ScaleByParamBlockState(NamedTuple):
    """``scale_by_param_block_norm`` / ``_rms``: only ``min_scale``."""

    hyperparams: dict[str, Any]


def _scale_by_param_block(who: str, rms: bool, min_scale: float) -> GradientTransformation:
    hp = Hyperparams(min_scale=check_nonnegative("min_scale", min_scale), allow_schedules=False)

    def init(params):
        return ScaleByParamBlockState(hp.init())

    def update(updates, state, params=None, **extra_args):
        _needs_params(who, params, updates)
        floor = hp.values(state.hyperparams)["min_scale"]

        def scale_leaf(u, p, p_size):
            dtype = _dtype(u, p)
            return (u * jnp.maximum(p_size.astype(dtype), floor.astype(dtype))).astype(u.dtype)

        return jax.tree.map(scale_leaf, updates, params, _tree.block_norms(params, rms=rms)), state

    return GradientTransformation(init, update)


def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradientTransformation:
    r"""Scale each block's update by its parameters' l2 norm, at least ``min_scale``.

    .. math::
        u \leftarrow u \cdot \max(\lVert \theta \rVert_2, \epsilon_2)

    A step relative to the block's size, as Adafactor's relative step size
    (Shazeer & Stern, 2018, section 8) with the norm in place of the RMS.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_param_block_norm()
        >>> params = jnp.array([3.0, 4.0])
        >>> tx.update(jnp.array([0.1, -0.2]), tx.init(params), params)[0].tolist()
        [0.5, -1.0]
    """
    return _scale_by_param_block("scale_by_param_block_norm", False, min_scale)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    r"""Scale each block's update by its parameters' root mean square, at least ``min_scale``.

    .. math::
        u \leftarrow u \cdot \max(\mathrm{RMS}(\theta), \epsilon_2), \qquad
        \mathrm{RMS}(\theta) = \lVert \theta \rVert_2 / \sqrt{\mathrm{size}(\theta)}

    Adafactor's relative step size (Shazeer & Stern, 2018, section 8).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_param_block_rms()
        >>> params = jnp.array([1.0, -1.0, 1.0, -1.0])
        >>> tx.update(jnp.full(4, 0.5), tx.init(params), params)[0].tolist()
        [0.5, 0.5, 0.5, 0.5]
    """
    return _scale_by_param_block("scale_by_param_block_rms", True, min_scale)


class NormalizeByUpdateNormState(NamedTuple):
    """``normalize_by_update_norm``: only ``scale_factor`` and ``eps``."""

    hyperparams: dict[str, Any]


def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6) -> GradientTransformation:
    r"""Normalized gradient descent's direction: divide by the global norm of the updates.

    .. math::
        u \leftarrow s \, \frac{u}{\lVert u \rVert_2 + \epsilon}

    with the norm over all leaves together (Nesterov, 1984; Hazan, Levy &
    Shalev-Shwartz, 2015); a zero update stays zero.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.normalize_by_update_norm(eps=0.0)
        >>> u, _ = tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))
        >>> [round(u["a"].item(), 4), round(u["b"].item(), 4)]
        [0.6, 0.8]
    """
    hp = Hyperparams(
        scale_factor=check_range("scale_factor", scale_factor), eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return NormalizeByUpdateNormState(hp.init())

    def update(updates, state, params=None, **extra_args):
        h = hp.values(state.hyperparams)
        norm = _tree.norm(updates)
        s, e = h["scale_factor"].astype(norm.dtype), h["eps"].astype(norm.dtype)
        denominator = norm + e
        factor = jnp.where(denominator > 0, s / jnp.where(denominator > 0, denominator, 1), 0)
        return _times(updates, factor), state

    return GradientTransformation(init, update)


# --------------------------------------------------------------------- optimizers


def _masked(tx: GradientTransformation, mask: Mask) -> GradientTransformation:
    """``mask`` as Optax takes it: ``True``/``None`` for every leaf, ``False`` for none, else a tree or function."""
    if mask is True or mask is None:
        return tx
    if mask is False:
        return masked(tx, lambda params: jax.tree.map(lambda _: False, params))
    return masked(tx, mask)


def lars(
    learning_rate: ScalarOrSchedule = 1.0, weight_decay: ScalarOrSchedule = 0.0, weight_decay_mask: Mask = True,
    trust_coefficient: float = 0.001, eps: float = 0.0, trust_ratio_mask: Mask = True,
    momentum: float = 0.9, nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017, Algorithm 1).

    .. math::
        d = g + \beta \theta, \qquad
        \lambda = \eta \frac{\lVert \theta \rVert}{\lVert d \rVert}, \qquad
        v_t = m\, v_{t-1} + \gamma \lambda d, \qquad \theta \leftarrow \theta - v_t

    per layer, with :math:`\eta` = ``trust_coefficient``, :math:`\beta` =
    ``weight_decay`` (a number or schedule; ``weight_decay_mask`` selects the
    leaves), :math:`m` = ``momentum`` and :math:`\gamma` = ``learning_rate``.
    ``trust_ratio_mask`` selects the leaves that get the trust ratio (e.g. not
    biases or norm scales). The paper's local rate divides by
    :math:`\lVert g\rVert + \beta\lVert\theta\rVert`; like Optax, gradtx takes the
    trust ratio of the decayed gradient :math:`d`, which equals it when
    :math:`g` and :math:`\theta` are aligned. The paper tunes :math:`\gamma`
    per batch size; the default 1.0 moves each layer by about
    ``trust_coefficient`` of its norm per step (Optax has no default).

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
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
    eps_root: float = 0.0, weight_decay: ScalarOrSchedule = 0.0, mask: Mask = None,
) -> GradientTransformation:
    r"""LAMB: Adam's direction with a layer-wise trust ratio (You et al., 2019, Algorithm 2).

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
        \theta_{t+1} = \theta_t - \eta \frac{\lVert \theta_t \rVert}{\lVert r_t + \lambda \theta_t \rVert}
        (r_t + \lambda \theta_t)

    per layer, with Adam's bias-corrected moments (:func:`gradtx.scale_by_adam`)
    and :math:`\phi` the identity. ``eps=1e-6`` is the paper's;
    ``weight_decay`` (number or schedule) and ``mask`` as in :func:`gradtx.adamw`.
    The paper fixes no learning rate; the default is Adam's 1e-3 (Optax has none).

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
        scale_by_learning_rate(learning_rate),
    )


def _fromage_step(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""From a trust-ratio-scaled ``u``: :math:`(\theta - \eta u)/\sqrt{1+\eta^2} - \theta`."""
    check_nonnegative("learning_rate", learning_rate)
    hp = Hyperparams(learning_rate=learning_rate)

    def init(params):
        return ScaleByScheduleState(zero_count(), hp.init())

    def update(updates, state, params=None, **extra_args):
        _needs_params("fromage", params, updates)
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
    r"""Fromage: frobenius matched gradient descent (Bernstein, Vahdat, Yue & Liu, 2020, Algorithm 1).

    .. math::
        \theta_l \leftarrow \frac{1}{\sqrt{1+\eta^2}}
        \left(\theta_l - \eta \frac{\lVert \theta_l \rVert_F}{\lVert g_l \rVert_F} g_l\right)

    per layer :math:`l`, with both norms floored at ``min_norm``. The default
    learning rate 0.01 is the paper's recommendation (Optax has none).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.fromage(0.75)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, _ = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> [round(x, 4) for x in gradtx.apply_updates(params, u).tolist()]  # (w - 0.75 * 5 * e_2) / 1.25
        [2.4, 0.2]
    """
    return chain(scale_by_trust_ratio(min_norm=min_norm), _fromage_step(learning_rate))
