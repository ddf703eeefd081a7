"""Saving and restoring optimizer states: plain arrays by path, no code, clear mismatches.

``state_to_bytes(state)`` writes every leaf of a state as a NumPy array keyed by
its path (``"0/mu/layer/w"``) in an ``.npz`` archive, together with a manifest of
the paths, shapes and dtypes. ``state_from_bytes(target, data)`` reads it back
into the structure of ``target`` (a freshly initialised state of the same
optimizer and parameters). It never unpickles anything, so loading a
checkpoint cannot run code, and a checkpoint written for another optimizer or
another parameter tree is refused with the first path that differs.

gradtx states are NamedTuples, dicts, tuples and arrays, so they also round-trip
through ``flax.serialization`` and Orbax unchanged; these helpers add the
check and need neither.
"""

from __future__ import annotations

import io
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree

_MANIFEST = "__gradtx_manifest__"
_FORMAT = "gradtx-state-v1"


def _manifest(state: Any) -> list[dict]:
    return [
        {
            "path": _tree.path_str(path),
            "shape": list(np.shape(leaf)),
            "dtype": str(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype),
        }
        for path, leaf in _tree.leaves_with_path(state)
    ]


def state_to_bytes(state: Any) -> bytes:
    """Serialise a state (or any pytree of arrays) to bytes.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.checkpoint import state_from_bytes, state_to_bytes
        >>> tx = gradtx.adam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
        >>> restored = state_from_bytes(tx.init({"w": jnp.zeros(3)}), state_to_bytes(state))
        >>> gradtx.hyperparams(restored)["learning_rate"]
        0.001
    """
    arrays = {}
    for index, (_, leaf) in enumerate(_tree.leaves_with_path(state)):
        array = np.asarray(jax.device_get(leaf))
        if array.dtype == jnp.bfloat16:  # npz cannot store bfloat16: keep the bits
            array = array.view(np.uint16)
        arrays[f"leaf_{index}"] = array
    header = {"format": _FORMAT, "leaves": _manifest(state)}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _mismatch(expected: list[dict], found: list[dict]) -> str | None:
    for want, got in zip(expected, found):
        if want["path"] != got["path"]:
            return (
                f"at leaf '{want['path']}' of the target the checkpoint has '{got['path']}' "
                "(a different optimizer or parameter tree)"
            )
        if want["shape"] != got["shape"]:
            return f"'{want['path']}' has shape {tuple(got['shape'])} in the checkpoint but {tuple(want['shape'])} in the target"
        if want["dtype"] != got["dtype"]:
            return f"'{want['path']}' has dtype {got['dtype']} in the checkpoint but {want['dtype']} in the target"
    if len(found) < len(expected):
        return f"the checkpoint ends before the target's leaf '{expected[len(found)]['path']}'"
    if len(found) > len(expected):
        return f"the checkpoint has a leaf '{found[len(expected)]['path']}' that the target lacks"
    return None


def state_from_bytes(target: Any, data: bytes) -> Any:
    """Restore a state written by :func:`state_to_bytes` into the structure of ``target``.

    Raises ``ValueError`` naming the first path whose presence, shape or dtype
    differs between the checkpoint and ``target``. Restored leaves take the
    sharding of ``target``'s leaves when those are arrays.
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if _MANIFEST not in archive.files:
            raise ValueError("these bytes are not a gradtx state checkpoint (no manifest)")
        header = json.loads(archive[_MANIFEST].tobytes().decode())
        if header.get("format") != _FORMAT:
            raise ValueError(f"unknown checkpoint format {header.get('format')!r}; expected {_FORMAT!r}")
        problem = _mismatch(_manifest(target), header["leaves"])
        if problem is not None:
            raise ValueError(f"cannot restore this checkpoint into the target: {problem}")
        leaves, treedef = jax.tree.flatten(target)
        restored = []
        for index, (old, entry) in enumerate(zip(leaves, header["leaves"])):
            array = archive[f"leaf_{index}"]
            if entry["dtype"] == "bfloat16":
                array = array.view(jnp.bfloat16)
            sharding = getattr(old, "sharding", None)
            restored.append(jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array))
    return jax.tree.unflatten(treedef, restored)
