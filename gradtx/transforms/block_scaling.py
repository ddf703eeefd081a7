r"""Scalings by whole blocks (leaves): the trust ratio of LARS and LAMB, the parameter block
norm and RMS of Adafactor, and normalisation by the update's own norm.

Each leaf is one block; its norm is :func:`gradtx.tree.block_norms`, overflow-safe for any finite
values, or with ``axis_name`` summed over the devices a leaf is sharded across.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import needs_params, scaled
from gradtx.core.numerics import norm_dtype
from gradtx.core.validation import check_nonnegative, check_range


def _dtype(u: jax.Array, p: jax.Array):
    return jnp.promote_types(norm_dtype(u), norm_dtype(p))


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
    """:func:`stable_norm` of a whole leaf whose parts are split across the mapped axis ``axis_name``."""
    x = jnp.abs(jnp.asarray(x)).astype(norm_dtype(x))
    top = jax.lax.pmax(jnp.max(x, initial=0), axis_name)
    unit = jnp.where((top > 0) & jnp.isfinite(top), top, 1)
    return unit * jnp.sqrt(jax.lax.psum(jnp.sum(jnp.square(x / unit)), axis_name))


def scale_by_trust_ratio(
    min_norm: float = 0.0,
    trust_coefficient: float = 1.0,
    eps: float = 0.0,
    *,
    axis_name: Any = None,
) -> GradientTransformation:
    r"""Scale each block's update by the trust ratio :math:`\lVert\theta\rVert / \lVert u\rVert`.

    .. math::
        u \leftarrow u \cdot \frac{c\, \max(\lVert \theta \rVert, m)}{\max(\lVert u \rVert, m) + \epsilon}

    per leaf; the ratio is 1 where either norm is 0 (zero-initialized parameters
    still move, zero updates stay 0). This is the layer-wise factor of LARS
    (You, Gitman & Ginsburg, 2017, :arxiv:`1708.03888`) and LAMB (You et al.,
    2019, :arxiv:`1904.00962`). Needs the parameters.

    Args:
        min_norm: :math:`m`, a floor on both norms before the ratio is taken; 0 means none.
            A number or a 0-d array, at least 0 (not a schedule).
        trust_coefficient: :math:`c`, LARS's trust coefficient, which multiplies the ratio.
            A number or a 0-d array, at least 0 (not a schedule).
        eps: :math:`\epsilon`, added to the update's norm in the denominator. A number or a
            0-d array, at least 0 (not a schedule).
        axis_name: under ``shard_map`` or ``pmap`` with every leaf split across a mapped axis,
            that axis: each block's norms are then those of the whole leaf (``pmax`` and
            ``psum`` over it). ``None`` under ``jit`` with sharded arrays and when each device
            holds whole leaves.

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
        eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByTrustRatioState(hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params("scale_by_trust_ratio", params, updates)
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


class ScaleByParamBlockState(NamedTuple):
    """``scale_by_param_block_norm`` / ``_rms``: only ``min_scale``."""

    hyperparams: dict[str, Any]


def _scale_by_param_block(who: str, rms: bool, min_scale: float) -> GradientTransformation:
    hp = Hyperparams(min_scale=check_nonnegative("min_scale", min_scale), allow_schedules=False)

    def init(params):
        return ScaleByParamBlockState(hp.init())

    def update(updates, state, params=None, **extra_args):
        needs_params(who, params, updates)
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
    (Shazeer & Stern, 2018, :arxiv:`1804.04235`, section 8) with the norm in place of the RMS.

    Args:
        min_scale: :math:`\epsilon_2`, the smallest factor, so that parameters at 0 still
            move. A number or a 0-d array, at least 0 (not a schedule).

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

    Adafactor's relative step size (Shazeer & Stern, 2018, :arxiv:`1804.04235`, section 8).

    Args:
        min_scale: :math:`\epsilon_2`, the smallest factor, so that parameters at 0 still
            move. A number or a 0-d array, at least 0 (not a schedule).

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
    Shalev-Shwartz, 2015, :arxiv:`1507.02030`); a zero update stays zero.

    Args:
        scale_factor: :math:`s`, the length of the result (up to :math:`\epsilon`); a negative
            one flips the direction. Any finite number or 0-d array (not a schedule).
        eps: :math:`\epsilon`, added to the norm in the denominator. A number or a 0-d
            array, at least 0 (not a schedule).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.normalize_by_update_norm(eps=0.0)
        >>> u, _ = tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))
        >>> [round(u["a"].item(), 4), round(u["b"].item(), 4)]
        [0.6, 0.8]
    """
    hp = Hyperparams(
        scale_factor=check_range("scale_factor", scale_factor),
        eps=check_nonnegative("eps", eps),
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
        return scaled(updates, factor), state

    return GradientTransformation(init, update)
