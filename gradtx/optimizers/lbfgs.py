r"""L-BFGS: a quasi-Newton direction from the last few steps and gradient changes.

:func:`scale_by_lbfgs` turns the gradient :math:`g_k` into :math:`H_k g_k`, where
:math:`H_k` approximates the inverse Hessian from the pairs
:math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i` of the last
``memory_size`` steps, by the two-loop recursion; :func:`lbfgs` chains it with a
line search. Reference: J. Nocedal & S. J. Wright, *Numerical Optimization*,
2nd ed., 2006, :doi:`10.1007/978-0-387-40065-5`, section 7.2, Algorithms 7.4 and 7.5.

Complex parameters are taken as pairs of real numbers: every inner product is
:math:`\mathrm{Re}\langle x, y\rangle`, so the steps are those on the real and
imaginary parts stacked. The gradient must then be ``jnp.conj(jax.grad(f)(z))``
(see "Complex parameters" in the design notes).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Params, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation, negate
from gradtx.core.hyperparams import float_dtype
from gradtx.core.kit import real_vdot
from gradtx.core.numerics import compute_dtype, safe_increment, zero_count
from gradtx.core.validation import check_range
from gradtx.transforms.combine import chain
from gradtx.transforms.linesearch import scale_by_zoom_linesearch
from gradtx.transforms.scaling import scale_by_learning_rate


class ScaleByLBFGSState(NamedTuple):
    r"""L-BFGS's state: the previous iterate and gradient, and the memory of pairs.

    ``diff_params_memory`` holds :math:`s_i` and ``diff_updates_memory`` :math:`y_i`,
    each leaf with a leading axis of length ``memory_size`` (a ring buffer: the pair
    made at update ``k`` sits in slot ``(k - 1) % memory_size``);
    ``weights_memory`` holds :math:`\rho_i = 1 / s_i^\top y_i`, 0 for an empty slot
    or a pair without positive curvature, which the recursion then ignores.
    """

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    params: Params
    updates: Updates
    diff_params_memory: Updates
    diff_updates_memory: Updates
    weights_memory: jax.Array
    hyperparams: dict[str, Any]


def _slot(memory: Updates, i: jax.Array) -> Updates:
    return jax.tree.map(lambda m: jax.lax.dynamic_index_in_dim(m, i, keepdims=False), memory)


def _axpy(a: jax.Array, x: Updates, y: Updates) -> Updates:
    """:math:`y + a x`, in the dtype of ``y``."""
    return jax.tree.map(lambda xi, yi: (yi + a.astype(yi.dtype) * xi.astype(yi.dtype)).astype(yi.dtype), x, y)


def two_loop_recursion(
    grad: Updates,
    s: Updates,
    y: Updates,
    rho: jax.Array,
    newest: jax.Array,
    gamma: jax.Array,
) -> Updates:
    r"""Nocedal & Wright's Algorithm 7.4 (:doi:`10.1007/978-0-387-40065-5`): :math:`H g` with :math:`H_0 = \gamma I` and the pairs in memory.

    .. math::
        q \leftarrow g;\ \ \alpha_i = \rho_i s_i^\top q,\ q \leftarrow q - \alpha_i y_i \ \ (\text{newest to oldest});\ \
        r \leftarrow \gamma q;\ \ \beta = \rho_i y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta) s_i \ \ (\text{oldest to newest})

    Args:
        grad: the vector :math:`g` to multiply, a tree.
        s: the steps :math:`s_i`, a tree like ``grad`` whose leaves have a leading memory axis.
        y: the gradient changes :math:`y_i`, laid out as ``s``.
        rho: the weights :math:`\rho_i = 1 / s_i^\top y_i`, a 1-d array over the memory axis; 0 skips a slot.
        newest: the slot of the latest pair, an integer (0-d array).
        gamma: the scale :math:`\gamma` of :math:`H_0 = \gamma I`, a 0-d array.

    Returns:
        :math:`H g`, a tree like ``grad``.
    """
    m = rho.shape[0]
    work = jax.tree.map(lambda g, sm: g.astype(compute_dtype(g, sm)), grad, s)

    def backward(j, carry):
        q, alphas = carry
        i = (newest - j) % m
        alpha = rho[i] * real_vdot(_slot(s, i), q, float_dtype())
        return _axpy(-alpha, _slot(y, i), q), alphas.at[i].set(alpha)

    q, alphas = jax.lax.fori_loop(0, m, backward, (work, jnp.zeros_like(rho)))
    r = jax.tree.map(lambda x: (gamma.astype(x.dtype) * x).astype(x.dtype), q)

    def forward(j, r):
        i = (newest + 1 + j) % m
        beta = rho[i] * real_vdot(_slot(y, i), r, float_dtype())
        return _axpy(alphas[i] - beta, _slot(s, i), r)

    return jax.lax.fori_loop(0, m, forward, r)


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
    r"""The L-BFGS direction :math:`H_k g_k` (Nocedal & Wright, :doi:`10.1007/978-0-387-40065-5`, Alg. 7.4), to be negated and scaled.

    At update :math:`k` the pair :math:`s = x_k - x_{k-1}`, :math:`y = g_k - g_{k-1}`
    enters the memory with :math:`\rho = 1 / s^\top y` when :math:`s^\top y > 0`
    (else it is skipped: :math:`\rho = 0`, so zero steps never divide by zero), and

    .. math::
        H_k^0 = \gamma_k I, \qquad \gamma_k = \frac{s^\top y}{y^\top y}
        \ \ \text{(newest usable pair; eq. 7.20)}, \qquad u_k = H_k g_k \ \ \text{(two-loop recursion)}

    Before any usable pair, :math:`\gamma = 1 / \|g_k\|`, so the first direction has
    unit length. If rounding ever makes :math:`u_k^\top g_k \le 0`, :math:`g_k / \|g_k\|` is
    returned instead, so the negated direction always descends. Needs ``params``.

    Args:
        memory_size: the number :math:`m` of pairs kept, an integer at least 1.
        scale_init_precond: whether :math:`H_k^0 = \gamma_k I` as above; ``False`` keeps :math:`H^0 = I` throughout.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> tx = gradtx.scale_by_lbfgs()
        >>> x0, x1 = jnp.array([1.0, 1.0]), jnp.array([0.5, 0.0])
        >>> grad = lambda x: jnp.array([1.0, 4.0]) * x  # the gradient of a quadratic
        >>> u, state = tx.update(grad(x0), tx.init(x0), x0)
        >>> u, state = tx.update(grad(x1), state, x1)
        >>> [round(v, 4) for v in u.tolist()]  # H g from one pair: s^T y = 4.25, y^T y = 16.25
        [0.1742, 0.0407]
    """
    check_range("memory_size", memory_size, 1)
    memory_size = int(memory_size)

    def init(params):
        # histories built from the parameters, so that each keeps its parameter's layout under jit
        def memory():
            return jax.tree.map(
                lambda z: jnp.broadcast_to(z[None], (memory_size, *jnp.shape(z))), _tree.zeros_like(params)
            )

        return ScaleByLBFGSState(
            zero_count(),
            _tree.zeros_like(params),
            _tree.zeros_like(params),
            memory(),
            memory(),
            jnp.zeros((memory_size,), float_dtype()),
            {},
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("scale_by_lbfgs needs the parameters: call update(grads, state, params)")
        _tree.check_same_structure(state.params, updates, "the tree this state was built for", "the updates")
        _tree.check_same_structure(state.params, params, "the tree this state was built for", "the parameters")
        return _lbfgs_step(memory_size, scale_init_precond, updates, state, params)

    return GradientTransformation(init, update)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _lbfgs_step(memory_size, scale_init_precond, updates, state, params):
    """One update of :func:`scale_by_lbfgs`, compiled once per configuration (so eager calls are fast too)."""
    k = state.count
    s = jax.tree.map(lambda p, q: p.astype(compute_dtype(p, q)) - q, params, state.params)
    y = jax.tree.map(lambda g, q: g.astype(compute_dtype(g, q)) - q, updates, state.updates)
    sy = real_vdot(s, y, float_dtype())
    usable = (k > 0) & (sy > 0) & jnp.isfinite(sy)
    rho_new = jnp.where(usable, 1 / jnp.where(usable, sy, 1.0), 0.0)
    usable = usable & jnp.isfinite(rho_new)
    slot = (k - 1) % memory_size

    def remember(memory, new):
        return memory.at[slot].set(jnp.where(usable, new, 0).astype(memory.dtype))

    s_mem = jax.tree.map(remember, state.diff_params_memory, s)
    y_mem = jax.tree.map(remember, state.diff_updates_memory, y)
    rho = state.weights_memory.at[slot].set(jnp.where(usable, rho_new, 0.0))

    g_norm = _tree.norm(updates)
    unit = jnp.where(g_norm > 0, 1 / jnp.where(g_norm > 0, g_norm, 1.0), 1.0)
    if scale_init_precond:
        age = (slot - jnp.arange(memory_size)) % memory_size
        newest_usable = jnp.argmin(jnp.where(rho > 0, age, memory_size))
        have_pair = rho[newest_usable] > 0
        y_norm = _tree.norm(_slot(y_mem, newest_usable))
        ry = rho[newest_usable] * y_norm
        safe = have_pair & (ry > 0)
        gamma = jnp.where(safe, 1 / jnp.where(safe, ry, 1.0) / jnp.where(safe, y_norm, 1.0), unit)
    else:
        gamma = jnp.ones((), float_dtype())

    direction = two_loop_recursion(updates, s_mem, y_mem, rho, slot, gamma)
    descends = real_vdot(direction, updates, float_dtype()) > 0
    fallback = (g_norm > 0) & ~descends
    out = jax.tree.map(
        lambda d, g: jnp.where(fallback, g * unit.astype(d.dtype), d).astype(g.dtype), direction, updates
    )
    new_state = ScaleByLBFGSState(
        safe_increment(k),
        jax.tree.map(lambda p, q: p.astype(q.dtype), params, state.params),
        jax.tree.map(lambda g, q: g.astype(q.dtype), updates, state.updates),
        s_mem,
        y_mem,
        rho,
        state.hyperparams,
    )
    return out, new_state


def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = scale_by_zoom_linesearch(  # noqa: B008 (Optax's signature; the search is stateless until init)
        max_linesearch_steps=15, initial_guess_strategy="one"
    ),
) -> GradientTransformation:
    r"""L-BFGS (Nocedal & Wright, :doi:`10.1007/978-0-387-40065-5`, Alg. 7.5): :math:`x_{k+1} = x_k - \eta_k H_k g_k`, :math:`\eta_k` from a line search.

    A chain of :func:`scale_by_lbfgs`, the sign flip (times ``learning_rate`` when
    given) and ``linesearch``. The line search needs the
    extra arguments ``value``, ``grad`` and ``value_fn``; without them ``update``
    raises a ``ValueError`` naming the missing one. Use
    :func:`gradtx.value_and_grad_from_state` to reuse the line search's last
    evaluation.

    Args:
        learning_rate: a factor on the direction before the line search, or the fixed step with
            ``linesearch=None``; a number, 0-d array or schedule. ``None``: no factor, or steps of 1.
        memory_size: the number :math:`m` of pairs kept (see :func:`scale_by_lbfgs`).
        scale_init_precond: whether :math:`H_k^0 = \gamma_k I` (see :func:`scale_by_lbfgs`).
        linesearch: the transform that picks :math:`\eta_k`; by default :func:`gradtx.scale_by_zoom_linesearch`
            with 15 evaluations, starting at :math:`\eta = 1`. ``None``: fixed steps of ``learning_rate``.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> f = lambda p: (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2  # Rosenbrock
        >>> params, tx = {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)}, gradtx.lbfgs()
        >>> state, value_and_grad = tx.init(params), gradtx.value_and_grad_from_state(f)
        >>> for _ in range(60):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        ...     params = gradtx.apply_updates(params, updates)
        >>> round(float(params["x"]), 5), round(float(params["y"]), 5)
        (1.0, 1.0)
    """
    if linesearch is None:
        return chain(
            scale_by_lbfgs(memory_size, scale_init_precond),
            scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
        )
    sign = negate() if learning_rate is None else scale_by_learning_rate(learning_rate, allow_none=False)
    return chain(scale_by_lbfgs(memory_size, scale_init_precond), sign, linesearch)
