r"""MARS (Yuan et al., 2024, :arxiv:`2411.10438`): "make variance reduction shine", a scaled
recursive-momentum correction of the gradient fed to a preconditioned update.

Each step first corrects the gradient by the change since the previous step,

.. math::
    c_t = g_t + \gamma \frac{\beta_1}{1-\beta_1} (g_t - g_{t-1}), \qquad
    \tilde c_t = c_t / \max(1, \lVert c_t \rVert_2)

(the norm taken per leaf, as the authors' code does), then averages :math:`\tilde c_t` into a
momentum and preconditions it as AdamW does (``mars_type="mars-adamw"``) or takes its sign as
Lion does (``"mars-lion"``). In the exact form :math:`g_{t-1} = \nabla f(x_{t-1}, \xi_t)` is a
second gradient, at the previous parameters on the current batch, given to ``update`` as
``previous_grad``; the approximate form (the default, and the one of the paper's experiments)
uses the previous step's gradient, kept in the state.

By default, as in the authors' code, only the 2-D leaves are MARS's: the others take a plain
AdamW step with their own :math:`\beta`'s, learning rate and weight decay (``optimize_1d=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, renamed
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, unzip, update_moment
from gradtx.core.numerics import compute_dtype, safe_increment, stable_norm, zero_count
from gradtx.core.validation import check_decay, check_nonnegative, check_one_of
from gradtx.optimizers.adam import adam_scalars, adam_step
from gradtx.transforms.combine import chain
from gradtx.transforms.masking import partition
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_hyperparameter, scale_by_learning_rate

MARS_TYPES = ("mars-adamw", "mars-lion")


class ScaleByMarsState(NamedTuple):
    """MARS's state: the step count ``t``, the momentum ``mu`` (:math:`m`), the second moment ``nu``
    (:math:`v`; ``None`` for MARS-Lion with ``optimize_1d``, which keeps none) and the previous
    gradient ``last_grad`` (:math:`g_{t-1}`; ``None`` in the exact form, which is given it)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    last_grad: Updates
    hyperparams: dict[str, Any]


def _pair(name: str, value: Any) -> tuple[Any, Any]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (b1, b2), got {value!r}")
    return check_decay(f"{name}[0]", value[0]), check_decay(f"{name}[1]", value[1])


def _is_mars_leaf(leaf: Any, optimize_1d: bool) -> bool:
    """The authors' rule: MARS for the 2-D leaves, or for every leaf with ``optimize_1d``."""
    return optimize_1d or jnp.ndim(leaf) == 2


def _clip_to_unit_norm(c: jax.Array) -> jax.Array:
    r""":math:`c / \max(1, \lVert c \rVert_2)`; a NaN norm leaves ``c`` as it is (as the authors'
    comparison ``norm > 1`` does)."""
    norm = stable_norm(c)
    above = norm > 1
    return jnp.where(above, c / jnp.where(above, norm, 1), c)


def scale_by_mars(
    b1: float = 0.95,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.025,
    mars_type: str = "mars-adamw",
    mu_dtype: Any = None,
    *,
    optimize_1d: bool = False,
    betas_1d: tuple[float, float] = (0.9, 0.95),
    is_approx: bool = True,
) -> GradientTransformation:
    r"""MARS's direction (Yuan et al., 2024, :arxiv:`2411.10438`, Algorithm 1 and its AdamW and Lion forms).

    For a MARS leaf, with :math:`g_{-1} = 0` (as the authors' code starts it):

    .. math::
        c_t = g_t + \gamma \frac{\beta_1}{1-\beta_1} (g_t - g_{t-1}), \quad
        \tilde c_t = \frac{c_t}{\max(1, \lVert c_t \rVert_2)}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \tilde c_t, \\
        \text{mars-adamw:}\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) \tilde c_t^2, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}; \qquad
        \text{mars-lion:}\quad u_t = \mathrm{sign}(m_t)

    (:math:`m_t` is Lion's interpolation of the momentum and the corrected gradient; MARS-Lion
    has no :math:`\beta_2`). The norm is each leaf's own, as in the authors' code. The other
    leaves (those that are not 2-D, unless ``optimize_1d``) get Adam's direction of :math:`g_t`
    with ``betas_1d`` and the same :math:`\epsilon`. For complex gradients :math:`c^2` is
    :math:`|c|^2` and the sign :math:`c/|c|`.

    Args:
        b1: :math:`\beta_1`, the momentum's decay and the correction's weight: a number or 0-d
            array in [0, 1) (0.95, the authors').
        b2: :math:`\beta_2`, the decay of :math:`v` (mars-adamw only): a number or 0-d array in
            [0, 1) (0.99, the authors').
        eps: :math:`\epsilon`, added to the root (mars-adamw and the Adam leaves): a number or 0-d
            array, >= 0.
        gamma: :math:`\gamma`, the strength of the correction: a number or 0-d array, >= 0
            (0.025, the authors'; 0 leaves the clipped gradient).
        mars_type: ``"mars-adamw"`` or ``"mars-lion"`` (the authors' names; their third,
            ``"mars-shampoo"``, is not offered).
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        optimize_1d: MARS on every leaf; ``False`` (the authors' default) sends the leaves that
            are not 2-D (biases, norms' scales, scalars, and also 3-D and 4-D kernels) to Adam.
        betas_1d: :math:`(\beta_1, \beta_2)` of those Adam leaves, each in [0, 1) ((0.9, 0.95),
            the authors').
        is_approx: the approximate form, :math:`g_{t-1}` the previous step's gradient;
            ``False`` is the exact form: each ``update`` is given ``previous_grad=``, the
            gradient at the previous parameters on the current batch (at the first step, the
            gradient itself: the paper starts with :math:`x_0 = x_1`).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.mars import scale_by_mars
        >>> tx = scale_by_mars(b1=0.5, gamma=1.0, optimize_1d=True)
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([0.3, -0.4]), state)  # c_1 = 2 g_1, of norm 1: kept
        >>> [round(x, 4) for x in u.tolist()]  # Adam's first step: the sign, up to eps
        [1.0, -1.0]
        >>> u, state = tx.update(jnp.array([3.0, 0.0]), state)  # c_2 = (5.7, 0.4), clipped to norm 1
        >>> [round(x, 3) for x in state.mu.tolist()]  # m_2 = (m_1 + (5.7, 0.4) / 5.714) / 2
        [0.649, -0.165]
    """
    check_one_of("mars_type", mars_type, MARS_TYPES)
    adamw = mars_type == "mars-adamw"
    names: dict[str, Any] = dict(b1=check_decay("b1", b1), gamma=check_nonnegative("gamma", gamma))
    if adamw:
        names.update(b2=check_decay("b2", b2))
    if adamw or not optimize_1d:
        names.update(eps=check_nonnegative("eps", eps))
    if not optimize_1d:
        names.update(zip(("b1_1d", "b2_1d"), _pair("betas_1d", betas_1d)))
    hp = Hyperparams(allow_schedules=False, **names)
    keeps_nu = adamw or not optimize_1d

    def init(params):
        nu = magnitudes_like(params) if keeps_nu else None
        last_grad = moments_like(params) if is_approx else None
        return ScaleByMarsState(zero_count(), moments_like(params, mu_dtype), nu, last_grad, hp.init())

    def update(updates, state, params=None, previous_grad=None, **extra_args):
        check_updates(state.mu, updates)
        if is_approx and previous_grad is not None:
            raise ValueError("scale_by_mars reads previous_grad only in the exact form: build it with is_approx=False")
        if not is_approx:
            if previous_grad is None:
                raise ValueError(
                    "scale_by_mars(is_approx=False) needs the gradient at the previous parameters on this batch: "
                    "call update(updates, state, params, previous_grad=...)"
                )
            _tree.check_same_structure(
                state.mu, previous_grad, "the tree this state was built for", "previous_grad", shapes=True
            )
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        no_root = jnp.zeros(())
        if adamw:
            mars_scalars = adam_scalars(dict(b1=h["b1"], b2=h["b2"], eps=h["eps"], eps_root=no_root), count)
        if not optimize_1d:
            adam_1d = adam_scalars(dict(b1=h["b1_1d"], b2=h["b2_1d"], eps=h["eps"], eps_root=no_root), count)
        last = state.last_grad if is_approx else previous_grad
        nus = state.nu if keeps_nu else jax.tree.map(lambda g: None, updates)

        def step(g, m, v, g_prev):
            if not _is_mars_leaf(g, optimize_1d):  # the authors' AdamW for the other leaves
                m, v = update_moment(g, m, h["b1_1d"], 1), update_moment(g, v, h["b2_1d"], 2)
                return adam_step(g, m, v, adam_1d)[1].astype(g.dtype), m, v
            dtype = compute_dtype(g, m, g_prev)
            b1_, gamma_ = cast_scalars(dtype, h["b1"], h["gamma"])
            g_ = g.astype(dtype)
            c = _clip_to_unit_norm(g_ + gamma_ * (b1_ / (1 - b1_)) * (g_ - g_prev.astype(dtype)))
            m = update_moment(c, m, h["b1"], 1)
            if not adamw:
                return jnp.sign(m.astype(dtype)).astype(g.dtype), m, v
            v = update_moment(c, v, h["b2"], 2)
            return adam_step(c, m, v, mars_scalars)[1].astype(g.dtype), m, v

        out, mu, nu = unzip(jax.tree.map(step, updates, state.mu, nus, last), updates, 3)
        nu = nu if keeps_nu else None
        if is_approx:
            last_grad = jax.tree.map(lambda g, s: g.astype(s.dtype), updates, state.last_grad)
        else:
            last_grad = None
        return out, ScaleByMarsState(count, mu, nu, last_grad, state.hyperparams)

    return GradientTransformation(init, update)


def _labels(params: Any) -> Any:
    return jax.tree.map(lambda p: "mars" if _is_mars_leaf(p, False) else "adamw", params)


def mars(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float = 0.95,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    gamma: float = 0.025,
    mars_type: str = "mars-adamw",
    mu_dtype: Any = None,
    *,
    optimize_1d: bool = False,
    lr_1d: ScalarOrSchedule = 3e-3,
    betas_1d: tuple[float, float] = (0.9, 0.95),
    weight_decay_1d: ScalarOrSchedule = 0.1,
    is_approx: bool = True,
) -> GradientTransformation:
    r"""MARS (Yuan et al., 2024, :arxiv:`2411.10438`) with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( u_t + \lambda \theta_{t-1} \right)

    for the MARS leaves, :math:`u_t` as in :func:`scale_by_mars`; the other leaves (not 2-D,
    unless ``optimize_1d``) take :math:`\theta_t = \theta_{t-1} - \eta_{1d} (\mathrm{Adam}_t +
    \lambda_{1d} \theta_{t-1})`. The defaults are those of the authors' code (the paper tunes
    :math:`\eta` and :math:`\lambda` per model).

    Args:
        learning_rate: :math:`\eta`, a number, 0-d array or schedule of the step, >= 0 (3e-3).
        b1: :math:`\beta_1` in [0, 1) (0.95).
        b2: :math:`\beta_2` in [0, 1) (0.99), mars-adamw only.
        eps: :math:`\epsilon \ge 0` (1e-8).
        weight_decay: :math:`\lambda \ge 0` of the MARS leaves, a number, 0-d array or schedule (0).
        gamma: :math:`\gamma \ge 0`, the strength of the correction (0.025).
        mars_type: ``"mars-adamw"`` or ``"mars-lion"``.
        mu_dtype: the dtype of the momenta; ``None`` keeps each parameter's.
        optimize_1d: MARS on every leaf, with ``learning_rate`` and ``weight_decay``; ``False``
            sends the leaves that are not 2-D to AdamW.
        lr_1d: :math:`\eta_{1d}` of those leaves, a number, 0-d array or schedule, >= 0 (3e-3).
            The authors' code scales it with ``learning_rate``'s schedule (by
            ``lr_1d / lr``); here it is its own, and a schedule for it is given as such.
        betas_1d: their :math:`(\beta_1, \beta_2)`, each in [0, 1) ((0.9, 0.95)).
        weight_decay_1d: their :math:`\lambda_{1d} \ge 0`, a number, 0-d array or schedule (0.1).
        is_approx: the approximate form (see :func:`scale_by_mars`); with ``False`` each update
            takes ``previous_grad=``.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.mars import mars
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)
        >>> tx = mars(0.05, lr_1d=0.05, weight_decay_1d=0.0)
        >>> state = tx.init(params)
        >>> for _ in range(200):
        ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> bool(loss(params) < 1e-2)
        True
    """
    direction = scale_by_mars(
        b1, b2, eps, gamma, mars_type, mu_dtype, optimize_1d=optimize_1d, betas_1d=betas_1d, is_approx=is_approx
    )
    if optimize_1d:
        return chain(
            direction, add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate, allow_none=False)
        )
    check_nonnegative("lr_1d", lr_1d)
    check_nonnegative("weight_decay_1d", weight_decay_1d)
    return chain(
        direction,
        partition(
            {
                "mars": add_decayed_weights(weight_decay),
                "adamw": renamed(add_decayed_weights(weight_decay_1d), weight_decay="weight_decay_1d"),
            },
            _labels,
        ),
        partition(
            {
                "mars": scale_by_learning_rate(learning_rate, allow_none=False),
                "adamw": scale_by_hyperparameter("lr_1d", lr_1d, -1.0),
            },
            _labels,
        ),
    )
