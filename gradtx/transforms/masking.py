"""Masks and labels from patterns on parameter paths.

Every optimizer chain that treats some parameters differently (no weight decay
on biases and norm scales, a frozen embedding, a separate learning rate for a
head) needs a mask or a labelling of the parameter tree. These build one from
glob patterns on the ``/``-joined path of each leaf, so the same rule works for
plain dicts, Flax linen ``params`` and Flax NNX ``State``.

Patterns use :mod:`fnmatch` syntax: ``*`` matches within and across path parts,
so ``"*bias"`` matches ``"params/Dense_0/bias"`` and ``"*norm*/scale"`` matches
``"encoder/layer_norm/scale"``. A trailing NNX ``Variable`` attribute
(``.../bias/value``) is not part of the path that patterns see.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Iterable, Mapping

import jax
from jax.tree_util import GetAttrKey

from gradtx.core import tree as _tree

PyTree = Any
_VARIABLE_ATTRIBUTES = ("value", "raw_value")


def param_path(path: tuple) -> str:
    """The path patterns are matched against: keys joined by ``/``, without a Variable's ``value``."""
    keys = list(path)
    while keys and isinstance(keys[-1], GetAttrKey) and keys[-1].name in _VARIABLE_ATTRIBUTES:
        keys.pop()
    return _tree.path_str(keys)


def _patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    found = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    if not found or not all(isinstance(p, str) and p for p in found):
        raise ValueError(f"patterns must be non-empty strings, got {patterns!r}")
    return found


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def path_mask(patterns: str | Iterable[str], *, invert: bool = False) -> Callable[[PyTree], PyTree]:
    """A mask function: True for the leaves whose path matches one of ``patterns``.

    With ``invert=True``, True for the leaves that match none, which is the
    usual form of "decay everything except biases and norm scales".

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)}}
        >>> decay = gradtx.path_mask(["*bias", "norm/scale"], invert=True)
        >>> decay(params)
        {'dense': {'bias': False, 'kernel': True}, 'norm': {'scale': False}}
        >>> tx = gradtx.adamw(1e-3, weight_decay=0.1, mask=decay)
    """
    found = _patterns(patterns)

    def mask(params: PyTree) -> PyTree:
        return jax.tree_util.tree_map_with_path(lambda p, _: _matches(param_path(p), found) != invert, params)

    return mask


def path_labels(rules: Mapping[str, Any] | Iterable[tuple[str, Any]], default: Any = None) -> Callable[[PyTree], PyTree]:
    """A label function: each leaf gets the label of the first pattern its path matches.

    ``rules`` maps patterns to labels, in order; a leaf that matches no pattern
    gets ``default``, and if that is ``None`` it is an error naming the path.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> params = {"embed": jnp.ones((4, 2)), "head": {"kernel": jnp.ones((2, 2))}}
        >>> labels = gradtx.path_labels({"embed": "frozen"}, default="trained")
        >>> labels(params)
        {'embed': 'frozen', 'head': {'kernel': 'trained'}}
    """
    ordered = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    for pattern, _ in ordered:
        _patterns(pattern)

    def label(path: tuple, _leaf: Any) -> Any:
        text = param_path(path)
        for pattern, value in ordered:
            if fnmatch.fnmatchcase(text, pattern):
                return value
        if default is None:
            raise ValueError(f"no rule matches the parameter '{text}' and no default label was given")
        return default

    return lambda params: jax.tree_util.tree_map_with_path(label, params)
