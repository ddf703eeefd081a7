r"""Adam (Kingma & Ba, 2015, :arxiv:`1412.6980`) and the optimizers that share its direction:
AdamW, NAdam(W), AdaMax(W) (AMSGrad, Adam with a running maximum, is in :mod:`gradtx.optimizers.amsgrad`).

Adam keeps exponential moving averages ("moments") of the gradient ``g`` and of :math:`|g|^2`
and divides the one, bias-corrected, by the root of the other. Arithmetic happens in at least
float32; moments are stored back in their own dtype and updates leave in the dtype they came in.
Complex gradients work throughout: :math:`g^2` is :math:`|g|^2`, first moments are complex and
second moments real (float32 for complex64); second moments of float16 parameters are kept in
float32, whose range holds :math:`(1-\beta_2) g^2`. See "Complex parameters" and "float16 state"
in the design notes.

The pieces below :func:`scale_by_adam` (:func:`adam_hyperparams`, :func:`adam_scalars`,
:func:`adam_step`) are public so that the families built on Adam (AdaBelief, Yogi, RAdam, LAMB,
...) take the same direction, not a copy of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams, renamed
from gradtx.core.kit import cast_scalars, check_updates, magnitudes_like, moments_like, update_moment
from gradtx.core.numerics import bias_correction, compute_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.transforms.cautious import cautious as cautious_transform
from gradtx.transforms.combine import chain
from gradtx.transforms.masking import masked, partition, resolve_mask
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_hyperparameter, scale_by_learning_rate


class ScaleByAdamState(NamedTuple):
    """Adam's state: the step count ``t`` and the moments ``m`` (``mu``) and ``v`` (``nu``)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


def adam_hyperparams(b1: Any, b2: Any, eps: Any, eps_root: Any) -> Hyperparams:
    r"""Adam's four hyperparameters, checked, for a transform to keep in its state.

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root of the second moment: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.

    Returns:
        Their :class:`~gradtx.core.hyperparams.Hyperparams`, which refuses schedules.
    """
    return Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        eps_root=check_nonnegative("eps_root", eps_root),
        allow_schedules=False,
    )


def bias_reciprocals(b1: jax.Array, b2: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``1 / (1 - b1^t)``, ``1 / (1 - b1^(t+1))`` and ``1 / (1 - b2^t)``: Adam's bias corrections
    as factors. Multiplying by them (as XLA does under ``jit`` anyway) keeps eager and jitted
    updates equal to the bit.

    Args:
        b1: :math:`\beta_1`, a 0-d array in the dtype of the computation.
        b2: :math:`\beta_2`, a 0-d array in the same dtype.
        count: the step :math:`t` (1 at the first update), a 0-d integer array.

    Returns:
        The three factors ``(c1, c1_next, c2)``, in ``b1``'s dtype.
    """
    t, t_next = count.astype(b1.dtype), safe_increment(count).astype(b1.dtype)
    return 1 / (1 - b1**t), 1 / (1 - b1**t_next), 1 / (1 - b2**t)


def adam_first_moment(
    g: jax.Array, m: jax.Array, b1: jax.Array, c1: jax.Array, c1_next: jax.Array, nesterov: bool
) -> jax.Array:
    r"""The bias-corrected first moment, given :func:`bias_reciprocals`; Nesterov's look-ahead
    form when asked (Dozat, 2016).

    Args:
        g: the gradient :math:`g_t` of one leaf.
        m: its updated first moment :math:`m_t`.
        b1: :math:`\beta_1`, a 0-d array.
        c1: :math:`1/(1-\beta_1^t)`, from :func:`bias_reciprocals`.
        c1_next: :math:`1/(1-\beta_1^{t+1})`, from :func:`bias_reciprocals`.
        nesterov: return the look-ahead :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`
            instead of :math:`m_t/(1-\beta_1^t)`.

    Returns:
        :math:`\hat m_t`, computed in the dtypes of the arguments (the caller casts them).
    """
    return b1 * m * c1_next + (1 - b1) * g * c1 if nesterov else m * c1


class AdamScalars(NamedTuple):
    """Adam's scalars in one dtype: ``b1``, ``eps``, ``eps_root`` and the bias-correction factors."""

    b1: jax.Array
    eps: jax.Array
    eps_root: jax.Array
    c1: jax.Array
    c1_next: jax.Array
    c2: jax.Array


def adam_scalars(h: dict[str, jax.Array], count: jax.Array) -> Callable[[Any], AdamScalars]:
    r"""The :class:`AdamScalars` of hyperparameters ``h`` at step ``count``, as a function of the
    dtype, computed once per dtype rather than once per leaf (the program stays small).

    Args:
        h: the hyperparameter values read from the state (``Hyperparams.values``), with ``b1``,
            ``b2``, ``eps`` and ``eps_root`` among them.
        count: the step :math:`t` of the update being computed (1 at the first), a 0-d integer array.

    Returns:
        A function from a dtype to the :class:`AdamScalars` in its real dtype, cached per dtype.
    """

    @functools.cache
    def at(dtype: Any) -> AdamScalars:
        b1, b2, eps, eps_root = cast_scalars(dtype, h["b1"], h["b2"], h["eps"], h["eps_root"])
        return AdamScalars(b1, eps, eps_root, *bias_reciprocals(b1, b2, count))

    return at


def adam_step(
    g: jax.Array,
    m: jax.Array,
    v: jax.Array,
    scalars: Callable[[Any], AdamScalars],
    nesterov: bool = False,
    eps_root_in_sqrt: bool = True,
) -> tuple[jax.Array, jax.Array]:
    r"""Adam's direction for one leaf, given its updated moments: :math:`(\hat m_t,\;
    \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon))`, in the computation dtype.

    Args:
        g: the gradient :math:`g_t` of one leaf.
        m: its updated first moment :math:`m_t`.
        v: its updated second moment :math:`v_t`, or any other (AdaBelief's :math:`s_t`, Yogi's,
            a running maximum).
        scalars: the function of the dtype that :func:`adam_scalars` returns.
        nesterov: use NAdam's look-ahead :math:`\hat m_t` (see :func:`adam_first_moment`).
        eps_root_in_sqrt: add :math:`\epsilon_{root}` under the root; with ``False`` the root is
            :math:`\sqrt{\hat v_t}`.

    Returns:
        The pair :math:`(\hat m_t, u_t)`, in the computation dtype (at least float32).
    """
    dtype = compute_dtype(g, m, v)
    s = scalars(dtype)
    m_hat = adam_first_moment(g.astype(dtype), m.astype(dtype), s.b1, s.c1, s.c1_next, nesterov)
    v_hat = v.astype(real_dtype(dtype)) * s.c2  # real, for complex g too
    if eps_root_in_sqrt:
        v_hat = v_hat + s.eps_root
    return m_hat, m_hat / (jnp.sqrt(v_hat) + s.eps)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam's direction (Kingma & Ba, 2015, :arxiv:`1412.6980`, Algorithm 1).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = m_t / (1-\beta_1^t), \quad \hat v_t = v_t / (1-\beta_2^t), \quad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0; a
            positive one keeps the square root differentiable at zero gradients.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's (complex stays complex).
        nu_dtype: the dtype of :math:`v`; ``None`` is each parameter's real dtype (float32 for float16).
        nesterov: NAdam's look-ahead (Dozat, 2016):
            :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adam()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()]  # the first step is sign(g), up to eps
        [1.0, -1.0]
    """
    hp = adam_hyperparams(b1, b2, eps, eps_root)

    def init(params):
        return ScaleByAdamState(
            zero_count(), moments_like(params, mu_dtype), magnitudes_like(params, dtype=nu_dtype), hp.init()
        )

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, h["b2"], 2), updates, state.nu)

        scalars = adam_scalars(h, count)

        def direction(g, m, v):
            return adam_step(g, m, v, scalars, nesterov)[1].astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    r"""AdaMax (Kingma & Ba, 2015, :arxiv:`1412.6980`, Algorithm 2): Adam with the infinity norm.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u^{\infty}_t = \max(\beta_2 u^{\infty}_{t-1}, |g_t| + \epsilon), \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{u^{\infty}_t}

    The state is a :class:`ScaleByAdamState` whose ``nu`` holds :math:`u^\infty`.

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of :math:`u^\infty`: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to :math:`|g_t|` inside the maximum: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_adamax()
        >>> u, _ = tx.update(jnp.array([-4.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in u.tolist()]
        [-1.0]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1),
        b2=check_decay("b2", b2),
        eps=check_nonnegative("eps", eps),
        allow_schedules=False,
    )

    def init(params):
        return ScaleByAdamState(zero_count(), moments_like(params, None), magnitudes_like(params), hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)

        def infinity_norm(g, u):
            dtype = compute_dtype(jnp.abs(g), u)  # real, for complex gradients too
            b2_, eps_ = cast_scalars(dtype, h["b2"], h["eps"])
            return jnp.maximum(b2_ * u, jnp.abs(g).astype(dtype) + eps_).astype(u.dtype)

        nu = jax.tree.map(infinity_norm, updates, state.nu)

        def direction(g, m, u):
            dtype = compute_dtype(g, m, u)
            (b1_,) = cast_scalars(dtype, h["b1"])
            return (bias_correction(m.astype(dtype), b1_, count) / u).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


# ------------------------------------------------------------- RMS and AdaGrad


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015, :arxiv:`1412.6980`): :math:`\theta_t = \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)`.

    See :func:`gradtx.scale_by_adam` for the moments. The defaults are the paper's.

    Args:
        learning_rate: the step size :math:`\eta` (the paper's :math:`\alpha`, 1e-3): a number,
            0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment (0.9): a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment (0.999): a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root (1e-8): a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        nesterov: use NAdam's look-ahead first moment (see :func:`nadam`).

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx, w = gradtx.adam(0.1), jnp.zeros(2)
        >>> state = tx.init(w)
        >>> for _ in range(200):
        ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
        ...     w = gradtx.apply_updates(w, updates)
        >>> [round(x, 2) for x in w.tolist()]
        [3.0, 3.0]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    nesterov: bool = False,
    cautious: bool = False,
) -> GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019, :arxiv:`1711.05101`): Adam with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( \hat m_t / (\sqrt{\hat v_t} + \epsilon) + \lambda \theta_{t-1} \right)

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        weight_decay: the decay rate :math:`\lambda`, Optax's default 1e-4 (torch.optim uses 1e-2):
            a number, 0-d array or schedule of the step, >= 0.
        mask: the leaves to decay (e.g. not biases): a tree of booleans like the parameters, or a
            function of the parameters returning one; ``None`` decays all.
        nesterov: use NAdam's look-ahead first moment (see :func:`nadam`).
        cautious: C-AdamW (Liang et al., 2024, :arxiv:`2411.16085`): keep only the components of
            Adam's direction :math:`u_t` whose sign agrees with the gradient's,
            :math:`\phi_t = 1[u_t \odot g_t > 0]`, scaled by the inverse of the fraction kept in
            each leaf (at most :math:`10^3`), :math:`u_t \odot \phi_t / \max(\mathrm{mean}(\phi_t),
            10^{-3})`, before the weight decay, which is not masked (see
            :func:`gradtx.transforms.cautious.cautious`). The state's first member is then a
            ``CautiousState`` around Adam's, and ``mask_eps`` is among the hyperparameters.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> tx = gradtx.adamw(1e-3, weight_decay=0.1, mask={"w": True, "b": False})
        >>> updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        >>> [round(x, 6) for x in updates["w"].tolist()], bool((updates["b"] == 0).all())
        ([-0.0001, -0.0001], True)
    """
    direction = scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
    return chain(
        cautious_transform(direction, descent=False) if cautious else direction,
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


def nadam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdam (Dozat, 2016): Adam with a Nesterov look-ahead first moment.

    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`;
    otherwise as :func:`adam`.

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        nesterov: the look-ahead (True, the default); False gives :func:`adam` (Optax's keyword).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.nadam(1e-3)
        >>> updates, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
        >>> updates.shape
        (1,)
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def nadamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdam with AdamW's decoupled weight decay: :func:`adamw` with ``nesterov=True``.

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the second moment: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        eps_root: :math:`\epsilon_{root}`, added under the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        weight_decay: the decay rate :math:`\lambda` (1e-4, as :func:`adamw`): a number, 0-d array or
            schedule of the step, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.
        nesterov: the look-ahead (True, the default); False gives :func:`adamw` (Optax's keyword).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.ones(1)
        >>> updates, _ = gradtx.nadamw(1e-3).update(jnp.ones(1), gradtx.nadamw(1e-3).init(params), params)
        >>> updates.dtype
        dtype('float32')
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov)


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> GradientTransformation:
    r"""AdaMax (Kingma & Ba, 2015, :arxiv:`1412.6980`, Algorithm 2): Adam with the infinity norm.

    See :func:`gradtx.scale_by_adamax`.

    Args:
        learning_rate: the step size :math:`\eta`, by default the paper's 2e-3 for AdaMax (and
            torch.optim's): a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the infinity norm: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to :math:`|g_t|` inside the maximum: a number or 0-d array, >= 0.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.adamax()
        >>> updates, _ = tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))
        >>> [round(x, 4) for x in updates.tolist()]
        [-0.002]
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate, allow_none=False))


def adamaxw(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
) -> GradientTransformation:
    r"""AdaMax with decoupled weight decay, as AdamW adds it to Adam.

    Args:
        learning_rate: the step size :math:`\eta` (2e-3, as :func:`adamax`): a number, 0-d array or
            schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the infinity norm: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to :math:`|g_t|` inside the maximum: a number or 0-d array, >= 0.
        weight_decay: the decay rate :math:`\lambda` (1e-4, as :func:`adamw`): a number, 0-d array or
            schedule of the step, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None`` decays all.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = jnp.array([1.0])
        >>> tx = gradtx.adamaxw(weight_decay=0.5)
        >>> updates, _ = tx.update(jnp.zeros(1), tx.init(params), params)
        >>> [round(x, 6) for x in updates.tolist()]
        [-0.001]
    """
    return chain(
        scale_by_adamax(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )


def with_adam_for_the_rest(
    name: str,
    part: GradientTransformation,
    labels: Callable[[Any], Any],
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule,
    weight_decay_mask: Mask,
    *,
    adam_b1: float,
    adam_b2: float,
    adam_eps: float,
    adam_eps_root: float,
    mu_dtype: Any,
    nesterov: bool,
    adam_learning_rate: ScalarOrSchedule | None,
    adam_weight_decay: ScalarOrSchedule,
) -> GradientTransformation:
    r"""A matrix method (Muon, NorMuon) on the leaves ``labels(params)`` names ``name``, Adam on those
    it names ``"adam"``; each with its decoupled weight decay, then the step size.

    Adam's hyperparameters are read and set as ``adam_b1``, ``adam_b2``, ``adam_eps``,
    ``adam_eps_root`` and ``adam_weight_decay`` (and ``adam_learning_rate`` when given; otherwise
    both parts take ``learning_rate``). ``weight_decay_mask`` narrows the matrix leaves' decay.

    Args:
        name: the label of the leaves ``part`` updates.
        part: the matrix method's direction (e.g. ``scale_by_muon``), for the leaves labelled ``name``.
        labels: a function of the parameters returning a tree of labels, ``name`` or ``"adam"``.
        learning_rate: the step size of both parts (of the matrix part alone when
            ``adam_learning_rate`` is given): a number, 0-d array or schedule, >= 0.
        weight_decay: the decoupled decay of the matrix leaves, >= 0.
        weight_decay_mask: which matrix leaves to decay (a tree of booleans or a function of the
            parameters); ``None`` decays them all.
        adam_b1: Adam's :math:`\beta_1`, in [0, 1).
        adam_b2: Adam's :math:`\beta_2`, in [0, 1).
        adam_eps: Adam's :math:`\epsilon`, >= 0.
        adam_eps_root: Adam's :math:`\epsilon_{root}`, >= 0.
        mu_dtype: the dtype of Adam's first moment; ``None`` keeps each parameter's.
        nesterov: Adam with NAdam's look-ahead.
        adam_learning_rate: Adam's own step size, or ``None`` for ``learning_rate``.
        adam_weight_decay: the decoupled decay of Adam's leaves, >= 0.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.adam import with_adam_for_the_rest
        >>> labels = lambda p: jax.tree.map(lambda x: "sign" if x.ndim == 2 else "adam", p)
        >>> tx = with_adam_for_the_rest("sign", gradtx.scale_by_sign(), labels, 0.1, 0.0, None,
        ...     adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8, adam_eps_root=0.0, mu_dtype=None,
        ...     nesterov=False, adam_learning_rate=None, adam_weight_decay=0.0)
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> updates, _ = tx.update(jax.tree.map(lambda x: -3 * x, params), tx.init(params), params)
        >>> [round(x, 6) for x in updates["w"].ravel().tolist()], [round(x, 6) for x in updates["b"].tolist()]
        ([0.1, 0.1, 0.1, 0.1], [0.1, 0.1])
    """
    for hyperparameter, value in (("adam_b1", adam_b1), ("adam_b2", adam_b2)):
        check_decay(hyperparameter, value)
    check_nonnegative("adam_eps_root", adam_eps_root)
    check_nonnegative("adam_eps", adam_eps)

    def decay_mask(params):
        chosen = jax.tree.map(lambda label: label == name, labels(params))
        if weight_decay_mask is None:
            return chosen
        return jax.tree.map(lambda a, b: a and b, chosen, resolve_mask(weight_decay_mask, params))

    def adam_mask(params):
        return jax.tree.map(lambda label: label == "adam", labels(params))

    adam_part = renamed(
        scale_by_adam(adam_b1, adam_b2, adam_eps, adam_eps_root, mu_dtype, nesterov=nesterov),
        b1="adam_b1", b2="adam_b2", eps="adam_eps", eps_root="adam_eps_root",
    )  # fmt: skip
    if adam_learning_rate is None:
        step = scale_by_learning_rate(learning_rate, allow_none=False)
    else:
        check_nonnegative("adam_learning_rate", adam_learning_rate)
        step = partition(
            {
                name: scale_by_learning_rate(learning_rate, allow_none=False),
                "adam": scale_by_hyperparameter("adam_learning_rate", adam_learning_rate, -1.0),
            },
            labels,
        )
    return chain(
        partition({name: part, "adam": adam_part}, labels),
        masked(add_decayed_weights(weight_decay), decay_mask),
        renamed(masked(add_decayed_weights(adam_weight_decay), adam_mask), weight_decay="adam_weight_decay"),
        step,
    )
