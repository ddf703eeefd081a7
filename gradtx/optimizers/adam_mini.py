r"""Adam-mini (Zhang et al., 2024, :arxiv:`2406.16793`): Adam with one second moment per block
of parameters instead of one per parameter.

The parameters are cut into blocks along the structure of the network's Hessian (its near
block-diagonal part): one block per token of the embedding and of the output layer, one per
head of the query and key projections, one per output neuron of the value, attention output
and MLP projections, one per remaining leaf (norm scales, biases). Each block keeps the mean
of :math:`g^2` over its entries, a single number, so the state is the first moment and a few
numbers per block: about half of Adam's.

Which rule a leaf follows is read from its path, by name patterns given as arguments (their
defaults follow common Flax and NNX names); ``block_axes`` gives the blocks of each leaf
directly, for networks that are not transformers.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import tree as _tree
from gradtx.core.aliases import Mask, ScalarOrSchedule, Updates
from gradtx.core.base import GradientTransformation
from gradtx.core.hyperparams import Hyperparams
from gradtx.core.kit import cast_scalars, check_updates, moments_like, update_moment
from gradtx.core.numerics import abs_sq, compute_dtype, magnitude_dtype, real_dtype, safe_increment, zero_count
from gradtx.core.validation import check_decay, check_nonnegative
from gradtx.optimizers.adam import adam_first_moment, bias_reciprocals
from gradtx.transforms.combine import chain
from gradtx.transforms.regularizers import add_decayed_weights
from gradtx.transforms.scaling import scale_by_learning_rate

# Name patterns of the reference implementation, widened to the names Flax and NNX give.
EMBD_NAMES = ("embed", "embedding", "embeddings", "embd", "wte")
OUTPUT_NAMES = ("lm_head", "unembed", "output")
WQK_NAMES = ("query", "key", "q_proj", "k_proj", "wq", "wk")
WV_NAMES = ("value", "v_proj", "wv")
ATTN_PROJ_NAMES = ("out", "out_proj", "o_proj", "wo", "c_proj")
MLP_NAMES = ("mlp", "ffn", "feed_forward", "dense", "linear", "fc", "gate_proj", "up_proj", "down_proj")
NORM_NAMES = ("norm", "layernorm", "rmsnorm", "groupnorm", "batchnorm", "ln")


class ScaleByAdamMiniState(NamedTuple):
    """Adam-mini's state: the step count, the first moment ``mu`` (shaped like the parameters) and
    the second moment ``nu``, one entry per block: each leaf's shape with the axes a block spans
    kept as size 1 (for a query or key leaf whose heads share one axis, that axis split into
    ``(heads, head_dim)`` first)."""

    count: jax.Array  # type: ignore[assignment]  # Optax's field name; it shadows tuple.count
    mu: Updates
    nu: Updates
    hyperparams: dict[str, Any]


class _Blocks(NamedTuple):
    """A leaf's blocks: split its last axis into ``heads`` groups first (None: no split), then one
    block per index of the axes not in ``axes``."""

    heads: int | None
    axes: tuple[int, ...]


# ------------------------------------------------------------------ the partition


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(p, str) for p in value):
        raise TypeError(f"{name} must be a sequence of strings, got {value!r}")
    return tuple(p.lower() for p in value)


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a pattern occurs in ``path`` (lowercased) with no letter right before or after it."""
    return any(re.search(rf"(?<![a-z]){re.escape(p)}(?![a-z])", path) for p in patterns)


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def _as_axes(given: Any) -> bool:
    return isinstance(given, (tuple, list)) and all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in given
    )


def _given_blocks(axes: Any, shape: tuple[int, ...], path: str) -> _Blocks:
    if not _as_axes(axes):
        raise TypeError(f"block_axes of '{path}' must be a tuple of axes (integers) or None, got {axes!r}")
    ndim = len(shape)
    if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"block_axes of '{path}' are {tuple(axes)}, out of range for its shape {shape}")
    normal = tuple(sorted(int(a) % ndim for a in axes)) if ndim else ()
    if len(set(normal)) != len(normal):
        raise ValueError(f"block_axes of '{path}' repeat an axis: {tuple(axes)}")
    return _Blocks(None, normal)


def _rule_blocks(path: Any, shape: tuple[int, ...], rules: dict[str, Any]) -> _Blocks:
    """The paper's partition of one leaf (Zhang et al., Section 2), chosen by its path."""
    name, ndim = _tree.path_str(path).lower(), len(shape)
    every = tuple(range(ndim))
    keys = {_tree.key_name(k).lower() for k in path}
    if ndim < 2 or "bias" in keys:
        return _Blocks(None, every)  # norm scales, biases, scalars: one block
    if _matches(name, rules["output_names"]):  # (dim, vocab): one block per token
        return _Blocks(None, every[:-1])
    if _matches(name, rules["embd_names"]):  # (vocab, dim): one block per token
        return _Blocks(None, every[1:])
    if _matches(name, rules["wqk_names"]):  # one block per head
        if ndim >= 3:  # (in, heads, head_dim): the heads have their own axis
            return _Blocks(None, tuple(a for a in every if a != ndim - 2))
        features, head_dim, heads = shape[-1], rules["head_dim"], rules["num_heads"]
        if head_dim is None and heads is None:
            raise ValueError(
                f"adam_mini: the query/key leaf '{_tree.path_str(path)}' of shape {shape} has its heads along "
                "one axis: give num_heads (or head_dim), or name its blocks with block_axes"
            )
        size = head_dim if head_dim is not None else (features // heads if features % heads == 0 else 0)
        if not size or features % size:
            what = f"head_dim={head_dim}" if head_dim is not None else f"num_heads={heads} heads"
            raise ValueError(
                f"adam_mini: the query/key leaf '{_tree.path_str(path)}' has shape {shape}: its last axis "
                f"({features}) does not divide into {what}"
            )
        return _Blocks(features // size, (0, 2))  # viewed as (in, heads, head_dim)
    if _matches(name, rules["wv_names"]):  # (in, out) or (in, heads, head_dim): one per output neuron
        return _Blocks(None, (0,))
    if _matches(name, rules["attn_proj_names"]) or _matches(name, rules["mlp_names"]):
        return _Blocks(None, every[:-1])  # (in, out) or (heads, head_dim, out): one per output neuron
    return _Blocks(None, every)  # anything else: one block for the leaf


def _partition(tree: Any, block_axes: Any, rules: dict[str, Any]) -> list[_Blocks]:
    """The blocks of every leaf of ``tree``, in flattening order."""
    paths = _tree.leaves_with_path(tree)
    given = block_axes(tree) if callable(block_axes) else block_axes
    if given is None or _as_axes(given):
        per_leaf = [given] * len(paths)
    else:
        try:
            per_leaf = jax.tree.structure(tree).flatten_up_to(given)  # type: ignore[attr-defined]
        except (ValueError, TypeError):
            _tree.check_same_structure(tree, given, "the parameters", "block_axes")
            raise
    return [
        _rule_blocks(path, jnp.shape(x), rules)
        if axes is None
        else _given_blocks(axes, jnp.shape(x), _tree.path_str(path))
        for axes, (path, x) in zip(per_leaf, paths)
    ]


def _view(x: jax.Array, blocks: _Blocks) -> jax.Array:
    """``x`` with its last axis split into the heads, if the blocks say so."""
    if blocks.heads is None:
        return x
    return x.reshape((*x.shape[:-1], blocks.heads, x.shape[-1] // blocks.heads))


def _block_mean_square(g: jax.Array, blocks: _Blocks) -> jax.Array:
    """The mean of :math:`|g|^2` over each block, its reduced axes kept as size 1 (0 for an empty block)."""
    squares = abs_sq(_view(g, blocks))
    n = math.prod(squares.shape[a] for a in blocks.axes)
    return jnp.sum(squares, axis=blocks.axes, keepdims=True) / max(n, 1)


# ------------------------------------------------------------------ Adam-mini


def scale_by_adam_mini(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    num_heads: int | None = None,
    head_dim: int | None = None,
    embd_names: Sequence[str] = EMBD_NAMES,
    output_names: Sequence[str] = OUTPUT_NAMES,
    wqk_names: Sequence[str] = WQK_NAMES,
    wv_names: Sequence[str] = WV_NAMES,
    attn_proj_names: Sequence[str] = ATTN_PROJ_NAMES,
    mlp_names: Sequence[str] = MLP_NAMES,
    block_axes: Any = None,
) -> GradientTransformation:
    r"""Adam-mini's direction (Zhang et al., 2024, :arxiv:`2406.16793`, Algorithm 1, with the
    partition of its Section 2).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_{b,t} = \beta_2 v_{b,t-1} + (1-\beta_2)\, \mathrm{mean}_{i \in b}(g_{t,i}^2), \\
        u_{t,i} = \frac{m_{t,i} / (1-\beta_1^t)}{\sqrt{v_{b(i),t} / (1-\beta_2^t)} + \epsilon}

    with one :math:`v_b` per block :math:`b`. The blocks of a leaf are chosen by the first rule
    whose name patterns its path matches (a pattern matches where it occurs in the path, its keys
    joined by ``/`` and lowercased, with no letter right before or after it):

    - leaves with fewer than 2 axes, and those with a key ``bias`` in their path: one block (norm scales, biases);
    - ``output_names``, a kernel ``(dim, vocab)``: one block per token, an index of the last axis;
    - ``embd_names``, a table ``(vocab, dim)``: one block per token, an index of the first axis;
    - ``wqk_names``, queries and keys: one block per head; a kernel ``(in, heads, head_dim)`` (Flax's
      ``DenseGeneral``, NNX's ``LinearGeneral``) has one per index of its axis -2, a kernel
      ``(in, heads * head_dim)`` (``Dense``) has its last axis cut into ``num_heads`` equal runs (or runs
      of ``head_dim``, for grouped-query keys);
    - ``wv_names``, values: one block per output neuron, an index of the axes after the first;
    - ``attn_proj_names`` and ``mlp_names``: one block per output neuron, an index of the last axis;
    - any other leaf: one block.

    ``block_axes`` replaces these rules: the axes that a block spans, for every leaf (a tuple), per
    leaf (a tree like the parameters of tuples, None leaves following the rules), or a function
    of the parameters returning either. ``()`` makes every entry its own block: Adam.

    The rules are the paper's. The reference implementation (version 1.1) differs in two places:
    it leaves ``wv_names`` empty, so that a value kernel is one block (``wv_names=()`` does the
    same here), and it sends biases by their layer's name; here a bias is always one block.

    Args:
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the block second moments: a number or 0-d array in
            [0, 1) (0.999, the reference implementation's; the paper's language models use 0.95).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        mu_dtype: the dtype of :math:`m`; ``None`` keeps each parameter's.
        num_heads: the number of attention heads, an integer >= 1, needed only for query and key
            kernels whose heads share one axis; ``None``: there are none.
        head_dim: the size of a head, an integer >= 1; given, it cuts such kernels instead of
            ``num_heads`` (keys of grouped-query attention have fewer heads than queries).
        embd_names: the patterns of the embedding tables (the reference's ``embd_names``).
        output_names: the patterns of the output layer (``output_names``).
        wqk_names: the patterns of the query and key projections (``wqk_names``).
        wv_names: the patterns of the value projections (``wv_names``).
        attn_proj_names: the patterns of the attention output projections (``attn_proj_names``).
        mlp_names: the patterns of the MLP layers (``mlp_names``).
        block_axes: the axes each block spans, as above; ``None``: the rules.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_mini import scale_by_adam_mini
        >>> params = {"mlp": {"kernel": jnp.zeros((2, 3))}, "norm": {"scale": jnp.zeros(3)}}
        >>> tx = scale_by_adam_mini()
        >>> state = tx.init(params)
        >>> state.nu["mlp"]["kernel"].shape, state.nu["norm"]["scale"].shape  # one v per output neuron; one in all
        ((1, 3), (1,))
        >>> g = {"mlp": {"kernel": jnp.array([[3.0, 1, 0], [4, 1, 0]])}, "norm": {"scale": jnp.array([1.0, 0, 0])}}
        >>> u, _ = tx.update(g, state)
        >>> [round(x, 3) for x in u["mlp"]["kernel"][0].tolist()]  # 3 / sqrt((9 + 16) / 2)
        [0.849, 1.0, 0.0]
    """
    hp = Hyperparams(
        b1=check_decay("b1", b1), b2=check_decay("b2", b2), eps=check_nonnegative("eps", eps), allow_schedules=False
    )
    rules = dict(
        num_heads=_count("num_heads", num_heads),
        head_dim=_count("head_dim", head_dim),
        embd_names=_patterns("embd_names", embd_names),
        output_names=_patterns("output_names", output_names),
        wqk_names=_patterns("wqk_names", wqk_names),
        wv_names=_patterns("wv_names", wv_names),
        attn_proj_names=_patterns("attn_proj_names", attn_proj_names),
        mlp_names=_patterns("mlp_names", mlp_names),
    )

    def init(params):
        blocks = _partition(params, block_axes, rules)

        def second_moment(p, b):
            zeros = _view(_tree.zeros_like(jnp.asarray(p), magnitude_dtype(p)), b)
            return jnp.sum(zeros, axis=b.axes, keepdims=True)  # reduced from zeros: the kept axes' layout

        treedef = jax.tree.structure(params)
        nu = jax.tree.unflatten(treedef, [second_moment(p, b) for p, b in zip(jax.tree.leaves(params), blocks)])
        return ScaleByAdamMiniState(zero_count(), moments_like(params, mu_dtype), nu, hp.init())

    def update(updates, state, params=None, **extra_args):
        check_updates(state.mu, updates)
        h = hp.values(state.hyperparams)
        count = safe_increment(state.count)
        treedef = jax.tree.structure(updates)
        blocks = jax.tree.unflatten(treedef, _partition(updates, block_axes, rules))
        mu = jax.tree.map(lambda g, m: update_moment(g, m, h["b1"], 1), updates, state.mu)

        def second_moment(g, v, b):
            dtype = compute_dtype(g, v)
            (b2_,) = cast_scalars(dtype, h["b2"])
            return (b2_ * v + (1 - b2_) * _block_mean_square(g.astype(dtype), b)).astype(v.dtype)

        nu = jax.tree.map(second_moment, updates, state.nu, blocks, is_leaf=lambda x: isinstance(x, _Blocks))

        def direction(g, m, v, b):
            dtype = compute_dtype(g, m, v)
            b1_, b2_, eps_ = cast_scalars(dtype, h["b1"], h["b2"], h["eps"])
            c1, c1_next, c2 = bias_reciprocals(b1_, b2_, count)
            m_hat = _view(adam_first_moment(g.astype(dtype), m.astype(dtype), b1_, c1, c1_next, False), b)
            u = m_hat / (jnp.sqrt(v.astype(real_dtype(dtype)) * c2) + eps_)
            return u.reshape(g.shape).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu, blocks, is_leaf=lambda x: isinstance(x, _Blocks))
        return out, ScaleByAdamMiniState(count, mu, nu, state.hyperparams)

    return GradientTransformation(init, update)


def _not_norms(patterns: tuple[str, ...]) -> Callable[[Any], Any]:
    """The reference's weight-decay mask: every leaf but those whose path names a norm."""

    def mask(params):
        paths = _tree.leaves_with_path(params)
        flags = [not _matches(_tree.path_str(path).lower(), patterns) for path, _ in paths]
        return jax.tree.unflatten(jax.tree.structure(params), flags)

    return mask


def adam_mini(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    mu_dtype: Any = None,
    *,
    num_heads: int | None = None,
    head_dim: int | None = None,
    embd_names: Sequence[str] = EMBD_NAMES,
    output_names: Sequence[str] = OUTPUT_NAMES,
    wqk_names: Sequence[str] = WQK_NAMES,
    wv_names: Sequence[str] = WV_NAMES,
    attn_proj_names: Sequence[str] = ATTN_PROJ_NAMES,
    mlp_names: Sequence[str] = MLP_NAMES,
    norm_names: Sequence[str] = NORM_NAMES,
    block_axes: Any = None,
) -> GradientTransformation:
    r"""Adam-mini (Zhang et al., 2024, :arxiv:`2406.16793`) with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \left( u_t + \lambda \theta_{t-1} \right)

    with :math:`u_t` the direction of :func:`scale_by_adam_mini`, one second moment per block.
    The defaults are the reference implementation's (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no
    weight decay); like it, the weight decay spares the norm layers' parameters by default.

    Args:
        learning_rate: the step size :math:`\eta`: a number, 0-d array or schedule of the step, >= 0.
        b1: the decay rate :math:`\beta_1` of the first moment: a number or 0-d array in [0, 1).
        b2: the decay rate :math:`\beta_2` of the block second moments: a number or 0-d array in [0, 1).
        eps: :math:`\epsilon`, added to the root: a number or 0-d array, >= 0.
        weight_decay: the decay rate :math:`\lambda` (0, the reference's): a number, 0-d array or
            schedule of the step, >= 0.
        mask: the leaves to decay: a tree of booleans like the parameters, or a function of the
            parameters returning one; ``None``: every leaf whose path matches no ``norm_names`` pattern.
        mu_dtype: the dtype of the first moment; ``None`` keeps each parameter's.
        num_heads: the number of attention heads (see :func:`scale_by_adam_mini`).
        head_dim: the size of a head (see :func:`scale_by_adam_mini`).
        embd_names: the patterns of the embedding tables.
        output_names: the patterns of the output layer.
        wqk_names: the patterns of the query and key projections.
        wv_names: the patterns of the value projections.
        attn_proj_names: the patterns of the attention output projections.
        mlp_names: the patterns of the MLP layers.
        norm_names: the patterns of the leaves the default ``mask`` does not decay (norm layers).
        block_axes: the axes each block spans (see :func:`scale_by_adam_mini`); ``None``: the rules.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.optimizers.adam_mini import adam_mini
        >>> params = {"embed": {"embedding": jnp.ones((4, 2))}, "mlp": {"kernel": jnp.ones((2, 3))}}
        >>> loss = lambda p: sum(jnp.sum((x - 3.0) ** 2) for x in jax.tree.leaves(p))
        >>> tx = adam_mini(0.1)
        >>> state = tx.init(params)
        >>> for _ in range(300):
        ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> bool(loss(params) < 1e-3)
        True
    """
    decay_mask = _not_norms(_patterns("norm_names", norm_names)) if mask is None else mask
    return chain(
        scale_by_adam_mini(
            b1, b2, eps, mu_dtype, num_heads=num_heads, head_dim=head_dim, embd_names=embd_names,
            output_names=output_names, wqk_names=wqk_names, wv_names=wv_names,
            attn_proj_names=attn_proj_names, mlp_names=mlp_names, block_axes=block_axes,
        ),
        add_decayed_weights(weight_decay, decay_mask),
        scale_by_learning_rate(learning_rate, allow_none=False),
    )  # fmt: skip
