r"""Cautious updates (Liang, Chen, Liu & Liu, 2024, "Cautious Optimizers: Improving Training with
One Line of Code", :arxiv:`2411.16085`): keep only the components of an update that move against
the current gradient, and scale the kept ones up so that the update keeps its size.

A momentum method can step uphill in a coordinate whose gradient has just changed sign: the
momentum still points the old way. The cautious rule drops those coordinates for this step. It
knows nothing of the optimizer it wraps: it compares what the optimizer returns with the gradient
the optimizer was given.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.base import GradientTransformation, check_state
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars
from gradtx.core.numerics import compute_dtype, real_dtype
from gradtx.core.validation import check_range

# The floor of the kept fraction in the authors' code, which clamps the mask's mean at 1e-3 from below.
MASK_EPS = 1e-3


class CautiousState(NamedTuple):
    """``cautious``: the state of the wrapped transform, and the floor ``mask_eps`` of the kept fraction."""

    inner_state: Any
    hyperparams: dict[str, Any]


def cautious_mask(u: jax.Array, g: jax.Array, mask_eps: Any, descent: bool) -> jax.Array:
    r"""One leaf's cautious update: :math:`u \odot \phi / \max(\bar\phi, \epsilon)`, in ``u``'s dtype.

    :math:`\phi = 1[\mathrm{sign}(d) \mathrm{sign}(g) > 0]` with :math:`d = -u` for a descent
    step and :math:`d = u` for a direction, and :math:`\bar\phi` its mean over the leaf. Signs
    rather than the product :math:`d g` are compared, so that no product overflows or underflows;
    for complex numbers the signs agree when :math:`\mathrm{Re}(\mathrm{sign}(d)\,
    \overline{\mathrm{sign}(g)}) > 0` (the phases differ by less than 90 degrees). A masked
    component is exactly 0, even where :math:`u` is not finite.

    Args:
        u: the update of one leaf, as the wrapped transform returned it.
        g: the gradient of that leaf, as the wrapped transform received it.
        mask_eps: :math:`\epsilon`, the floor of the kept fraction, a 0-d array or number in [0, 1].
        descent: whether ``u`` is a step to add to the parameters (it should oppose ``g``) rather
            than a direction (which should point along ``g``).

    Returns:
        The masked and rescaled update, shaped and typed as ``u``.
    """
    dtype = compute_dtype(u, g)
    (eps,) = cast_scalars(dtype, mask_eps)
    u_ = u.astype(dtype)
    agree = jnp.real(jnp.sign(u_) * jnp.conj(jnp.sign(g.astype(dtype))))
    phi = (-agree if descent else agree) > 0
    fraction = jnp.sum(phi, dtype=real_dtype(dtype)) / max(phi.size, 1)
    return jnp.where(phi, u_ / jnp.maximum(fraction, eps), 0).astype(u.dtype)


def cautious(
    inner: GradientTransformation, mask_eps: float = MASK_EPS, *, descent: bool = True
) -> GradientTransformation:
    r"""The cautious version of ``inner`` (Liang et al., 2024, :arxiv:`2411.16085`): drop the
    components of its update that do not descend along the current gradient.

    With :math:`u_t` the update ``inner`` returns for the gradient :math:`g_t`, leaf by leaf:

    .. math::
        \phi_t = 1[-u_t \odot g_t > 0], \qquad
        \bar\phi_t = \mathrm{mean}(\phi_t), \qquad
        \tilde u_t = \frac{u_t \odot \phi_t}{\max(\bar\phi_t, \epsilon)}

    so the kept components are scaled by the inverse of the fraction kept, and the update keeps
    its size on average. ``descent`` says which sign is a descent: ``True`` (the default) for a
    whole optimizer (``gradtx.adam(1e-3)``), whose update is added to the parameters and is minus
    a step along the gradient; ``False`` for a direction such as :func:`gradtx.scale_by_adam`,
    which points along the gradient and is negated later by the learning rate. The mask and its
    rescaling are the same in both places: a positive learning rate changes neither.

    Wrapping a whole ``adamw`` masks its weight decay too, which the paper's C-AdamW does not:
    ``gradtx.adamw(..., cautious=True)`` masks Adam's direction only, before the decay
    (``gradtx.lion`` has the same option).

    :math:`\phi` and :math:`\bar\phi` are per leaf (per tensor), as in the authors' code; a
    component where the update or the gradient is 0 is dropped (the comparison is strict); a
    leaf in which no component descends gets a zero update. The floor
    :math:`\max(\bar\phi, \epsilon)` with :math:`\epsilon = 10^{-3}` follows the authors' code;
    the paper's one-line listing divides by :math:`\bar\phi + \epsilon` instead, which only
    shrinks every step by the factor :math:`\bar\phi / (\bar\phi + \epsilon)`.

    The hyperparameters of ``inner`` stay readable and settable by name
    (:func:`gradtx.hyperparams`) beside ``mask_eps``.

    Args:
        inner: any gradient transformation whose updates have the gradients' tree.
        mask_eps: :math:`\epsilon`, the floor of the kept fraction: a number or 0-d array in
            [0, 1], so that no kept entry is scaled by more than :math:`1/\epsilon`; 0 is no
            floor. Only a leaf in which fewer than :math:`\epsilon` of the entries are kept
            feels it (of more than :math:`1/\epsilon` entries, for one kept).
        descent: whether ``inner``'s updates are steps to add to the parameters (``True``) or
            directions along the gradient (``False``).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.transforms.cautious import cautious
        >>> tx = cautious(gradtx.sgd(1.0, momentum=0.9))
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.array([1.0, 1.0]), state)
        >>> u, state = tx.update(jnp.array([1.0, -0.5]), state)  # momentum (1.9, 0.4): the second goes uphill
        >>> [round(x, 4) for x in u.tolist()]  # the first is kept and doubled (half the leaf is kept)
        [-3.8, 0.0]
    """
    hp = Hyperparams(mask_eps=check_range("mask_eps", mask_eps, 0.0, 1.0), allow_schedules=False)

    def init(params):
        return CautiousState(inner.init(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_state("cautious", state, CautiousState)
        out, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        _tree.check_same_structure(
            updates, out, "the gradients", "the updates of the transform cautious wraps", shapes=True
        )
        eps = hp.values(state.hyperparams)["mask_eps"]
        out = jax.tree.map(lambda u, g: cautious_mask(u, g, eps, descent), out, updates)
        return out, CautiousState(inner_state, state.hyperparams)

    return GradientTransformation(init, update)
