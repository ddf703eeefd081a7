"""Saving and restoring optimizer states: plain arrays by path, no code, clear mismatches.

``state_to_bytes(state)`` writes every leaf of a state as a NumPy array keyed by
its path (``"0/mu/layer/w"``) in an ``.npz`` archive, together with a manifest of
the paths, shapes and dtypes. ``state_from_bytes(target, data)`` reads it back
into the structure of ``target`` (a freshly initialised state of the same
optimizer and parameters). ``save(path, state)`` and ``restore(path, target)``
do the same with a file, and ``save`` replaces the file atomically: a writer
killed at any moment leaves the previous checkpoint or the new one, never a part.

Restoring never unpickles anything, so loading a checkpoint cannot run code,
and it checks before it reads: the manifest against the target (the first path
that differs is named), then every member's zip entry and ``.npy`` header
against the manifest and the target (shape, dtype with its byte order, size),
and only then reads each array's bytes, exactly as many as the target's leaf
needs. gradtx writes uncompressed (stored) members and reads no others, so a
small file cannot inflate into a large allocation. Anything else (a file that
is not a zip archive, a manifest that is not UTF-8 JSON of the expected form, a
missing or extra member, an array that differs from its entry) raises
:class:`CheckpointError`, a ``ValueError`` whose message names the leaf's path
and what differs. Leaves of the dtypes NumPy's format cannot name (``bfloat16``,
the ``float8`` types) are stored as their bits, a little-endian unsigned integer
of the same width.

gradtx states are NamedTuples, dicts, tuples and arrays, so they also round-trip
through ``flax.serialization`` and Orbax unchanged; these helpers add the
checks and need neither.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core import tree as _tree

_MANIFEST = "__gradtx_manifest__"
_FORMAT = "gradtx-state-v1"
_ENTRY_KEYS = ("path", "shape", "dtype")
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_COMPRESSION_NAMES = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into the target, and why.

    Raised by :func:`state_from_bytes` and :func:`restore` for every bad
    checkpoint: bytes that are not a zip archive, a manifest that is missing,
    not UTF-8, not JSON or not of the expected form, an unknown format, a
    missing or extra member, a compressed member, and a leaf whose path, shape
    or dtype differs between the target, the manifest and the stored array. The
    message names the leaf's path (``'0/mu/w'``) and what differs. It is a
    ``ValueError``, so code that caught those before keeps working.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.checkpoint import CheckpointError, state_from_bytes, state_to_bytes
        >>> try:
        ...     state_from_bytes({"w": jnp.zeros(4)}, state_to_bytes({"w": jnp.ones(3)}))
        ... except CheckpointError as error:
        ...     print(error)
        cannot restore this checkpoint into the target: 'w' has shape (3,) in the checkpoint but (4,) in the target
    """


def _dtype_of(leaf: Any) -> np.dtype:
    return np.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a leaf of ``dtype`` is written as: itself, or its bits where NumPy's format cannot name it."""
    if dtype.kind == "V" and dtype.fields is None and dtype.itemsize in (1, 2, 4, 8):  # bfloat16, float8_*, int4
        return np.dtype(f"<u{dtype.itemsize}")
    return dtype


def _manifest(state: Any) -> list[dict]:
    return [
        {"path": _tree.path_str(path), "shape": list(np.shape(leaf)), "dtype": str(_dtype_of(leaf))}
        for path, leaf in _tree.leaves_with_path(state)
    ]


def _write(file: IO[bytes], state: Any) -> None:
    arrays = {}
    for index, (path, leaf) in enumerate(_tree.leaves_with_path(state)):
        array = np.asarray(jax.device_get(leaf))
        if array.dtype.hasobject:
            raise TypeError(f"cannot save '{_tree.path_str(path)}': it holds Python objects, not an array of numbers")
        stored = _stored_dtype(array.dtype)
        if stored != array.dtype:  # keep the bits, little-endian
            array = array.view(f"u{stored.itemsize}").astype(stored, copy=False)
        arrays[f"leaf_{index}"] = array if array.flags.c_contiguous else array.copy(order="C")
    header = {"format": _FORMAT, "leaves": _manifest(state)}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(file, **arrays)  # type: ignore[arg-type]  # stored (uncompressed) members


def state_to_bytes(state: Any) -> bytes:
    """Serialise a state (or any pytree of arrays) to bytes.

    Args:
        state: a pytree of arrays (an optimizer state, parameters).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.checkpoint import state_from_bytes, state_to_bytes
        >>> tx = gradtx.adam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
        >>> restored = state_from_bytes(tx.init({"w": jnp.zeros(3)}), state_to_bytes(state))
        >>> gradtx.hyperparams(restored)["learning_rate"]
        0.001
    """
    buffer = io.BytesIO()
    _write(buffer, state)
    return buffer.getvalue()


def save(path: str | os.PathLike, state: Any) -> None:
    """Write a state to the file ``path`` atomically, in the format of :func:`state_to_bytes`.

    The checkpoint is written to a temporary file in the same directory,
    flushed and ``fsync``-ed, then renamed over ``path`` (``os.replace``) and the
    directory ``fsync``-ed where the system allows it. A writer killed at any
    point leaves at ``path`` the previous checkpoint or the new one, never a
    partial file; it may leave its temporary file (``.NAME.*.tmp``) behind.

    Args:
        path: the file to write (by convention ``*.npz``); its directory must exist.
        state: a pytree of arrays (an optimizer state, parameters).

    Example:
        >>> import os, tempfile
        >>> import jax.numpy as jnp, gradtx
        >>> from gradtx.checkpoint import restore, save
        >>> tx = gradtx.adam(1e-3)
        >>> params = {"w": jnp.ones(3)}
        >>> _, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     save(os.path.join(directory, "state.npz"), state)
        ...     restored = restore(os.path.join(directory, "state.npz"), tx.init(params))
        >>> restored[0].count, bool(jnp.all(restored[0].mu["w"] == state[0].mu["w"]))
        (Array(1, dtype=int32), True)
    """
    final = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(final)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            _write(file, state)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (not possible on every system)
        directory_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(directory_fd)
    except OSError:
        pass
    finally:
        os.close(directory_fd)


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


def _entry_problem(index: int, entry: Any) -> str | None:
    """What is wrong with the manifest's entry ``index``, or None."""
    if not isinstance(entry, dict):
        return f"the manifest's leaf {index} is a {type(entry).__name__}, not an object with {list(_ENTRY_KEYS)}"
    where = f"the manifest's leaf {index}" + (f" ('{entry['path']}')" if isinstance(entry.get("path"), str) else "")
    if sorted(entry) != sorted(_ENTRY_KEYS):
        return f"{where} has the keys {sorted(entry)}, not {list(_ENTRY_KEYS)}"
    shape = entry["shape"]
    if not isinstance(entry["path"], str):
        return f"{where} has the path {entry['path']!r}, not a string"
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        return f"{where} has the shape {shape!r}, not a list of non-negative integers"
    if not isinstance(entry["dtype"], str):
        return f"{where} has the dtype {entry['dtype']!r}, not a string"
    return None


def _parse_manifest(raw: bytes) -> tuple[list[dict] | None, str | None]:
    """The manifest's leaves, or what is wrong with it."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return None, f"its manifest is not UTF-8 text ({error.reason} at byte {error.start})"
    except (ValueError, RecursionError) as error:
        return None, f"its manifest is not JSON ({error})"
    if not isinstance(header, dict):
        return None, f"its manifest is a {type(header).__name__}, not an object with 'format' and 'leaves'"
    if "format" not in header or header["format"] != _FORMAT:
        return None, f"unknown checkpoint format {header.get('format')!r}; expected {_FORMAT!r}"
    if sorted(header) != ["format", "leaves"]:
        return None, f"its manifest has the keys {sorted(header)}, not ['format', 'leaves']"
    leaves = header["leaves"]
    if not isinstance(leaves, list):
        return None, f"its manifest's 'leaves' is a {type(leaves).__name__}, not a list"
    for index, entry in enumerate(leaves):
        problem = _entry_problem(index, entry)
        if problem is not None:
            return None, problem
    return leaves, None


_UNREADABLE = (
    ValueError,
    TypeError,
    SyntaxError,
    RecursionError,
    EOFError,
    OSError,
    NotImplementedError,
    zipfile.BadZipFile,
)


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, what: str, dtype: np.dtype, shape):
    """Check a member's zip entry and ``.npy`` header, reading no data: its ``(header length, shape, fortran order)``
    or what is wrong. ``shape=None`` takes any 1-d shape (the manifest's)."""
    if info.flag_bits & 0x1:
        return None, f"{what} is encrypted"
    if info.compress_type != zipfile.ZIP_STORED:
        method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return None, (
            f"{what} is compressed ({method}); gradtx writes uncompressed (stored) members and reads no others, "
            "so that a small file cannot inflate into a large allocation"
        )
    if info.compress_size != info.file_size:
        return (
            None,
            f"{what} claims {info.file_size} bytes but stores {info.compress_size}, as no uncompressed member can",
        )
    if info.header_offset + info.file_size > size:
        return None, f"{what} claims {info.file_size} bytes, more than the {size} bytes of the whole file"
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in _HEADER_READERS:
                return None, f"{what} is a .npy file of version {version}; gradtx reads versions 1.0 and 2.0"
            stored_shape, fortran_order, stored_dtype = _HEADER_READERS[version](member)
            header_length = member.tell()
    except _UNREADABLE as error:
        return None, f"{what} is not a readable .npy array ({error})"
    if stored_dtype.hasobject:
        return None, (
            f"{what} holds Python objects (dtype {stored_dtype}), which only np.load(allow_pickle=True) could read; "
            "a checkpoint is never unpickled"
        )
    if stored_dtype != dtype:
        order = " (another byte order)" if stored_dtype.newbyteorder("=") == dtype.newbyteorder("=") else ""
        return None, (
            f"{what} holds {stored_dtype} ({stored_dtype.str!r}){order} where the manifest and the target "
            f"need {dtype} ({dtype.str!r})"
        )
    if (shape is None and len(stored_shape) != 1) or (shape is not None and tuple(stored_shape) != tuple(shape)):
        wanted = "a 1-d array" if shape is None else f"shape {tuple(shape)}"
        return (
            None,
            f"{what} holds an array of shape {tuple(stored_shape)} where the manifest and the target have {wanted}",
        )
    nbytes = int(np.prod(stored_shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != header_length + nbytes:
        return None, (
            f"{what} has {info.file_size - header_length} bytes of data where shape {tuple(stored_shape)} "
            f"of {dtype} needs {nbytes}"
        )
    return (header_length, tuple(stored_shape), fortran_order), None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, dtype: np.dtype, plan) -> np.ndarray:
    header_length, shape, fortran_order = plan
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:
        with archive.open(info) as member:
            member.read(header_length)
            data = member.read(nbytes)  # the last bytes of the member: zipfile checks its CRC-32 here
    except _UNREADABLE as error:
        raise CheckpointError(f"{what} cannot be read ({error})") from error
    if len(data) != nbytes:
        raise CheckpointError(f"{what} ends after {len(data)} of its {nbytes} bytes of data")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


def _read(target: Any, file: IO[bytes], size: int, source: str) -> Any:
    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot restore {source} into the target: {problem}")

    try:
        archive = zipfile.ZipFile(file)
    except (*_UNREADABLE, zipfile.LargeZipFile) as error:
        raise refuse(f"it is not a gradtx state checkpoint (not a zip archive: {error})") from error
    with archive:
        infos = archive.infolist()
        members = {info.filename: info for info in infos}
        if len(members) != len(infos):
            raise refuse("it has two members of the same name")
        manifest_name = _MANIFEST + ".npy"
        if manifest_name not in members:
            raise refuse(f"it is not a gradtx state checkpoint (no manifest member '{manifest_name}')")
        what = f"the manifest member '{manifest_name}'"
        plan, problem = _check_member(archive, members[manifest_name], size, what, np.dtype(np.uint8), None)
        if problem is not None:
            raise refuse(problem)
        try:
            raw = _read_member(archive, members[manifest_name], what, np.dtype(np.uint8), plan).tobytes()
        except CheckpointError as error:
            raise refuse(str(error)) from error
        found, problem = _parse_manifest(raw)
        if found is None:
            raise refuse(str(problem))
        problem = _mismatch(_manifest(target), found)
        if problem is not None:
            raise refuse(problem)
        leaves, treedef = jax.tree.flatten(target)
        names = [f"leaf_{index}.npy" for index in range(len(leaves))]
        extra = sorted(set(members) - set(names) - {manifest_name})
        if extra:
            raise refuse(f"it has the member '{extra[0]}', which is no leaf of its manifest")
        dtypes = [_dtype_of(leaf) for leaf in leaves]
        labels = [f"'{entry['path']}' (member {name})" for entry, name in zip(found, names)]
        plans = []
        for name, label, dtype, entry in zip(names, labels, dtypes, found):  # every check before any data
            if name not in members:
                raise refuse(f"{label} is missing")
            plan, problem = _check_member(archive, members[name], size, label, _stored_dtype(dtype), entry["shape"])
            if problem is not None:
                raise refuse(problem)
            plans.append(plan)
        restored = []
        for old, name, label, dtype, plan in zip(leaves, names, labels, dtypes, plans):
            try:
                array = _read_member(archive, members[name], label, _stored_dtype(dtype), plan)
            except CheckpointError as error:
                raise refuse(str(error)) from error
            if array.dtype != dtype:  # the bits of a bfloat16 (float8, ...) leaf
                array = array.astype(f"u{dtype.itemsize}").view(dtype)
            sharding = getattr(old, "sharding", None)
            restored.append(jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array))
    return jax.tree.unflatten(treedef, restored)


def state_from_bytes(target: Any, data: bytes) -> Any:
    """Restore a state written by :func:`state_to_bytes` into the structure of ``target``.

    Every check is made before any array is read (see the module's
    description); restored leaves take the sharding of ``target``'s leaves when
    those are arrays.

    Args:
        target: a state of the same structure, shapes and dtypes (a fresh ``init``).
        data: the bytes :func:`state_to_bytes` wrote.

    Raises:
        CheckpointError: naming the first path whose presence, shape or dtype
            differs between the checkpoint and ``target``, or what else is wrong
            with ``data``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.checkpoint import state_from_bytes, state_to_bytes
        >>> state_from_bytes({"w": jnp.zeros(2, jnp.bfloat16)}, state_to_bytes({"w": jnp.full(2, 0.5, jnp.bfloat16)}))
        {'w': Array([0.5, 0.5], dtype=bfloat16)}
    """
    return _read(target, io.BytesIO(data), len(data), "this checkpoint")


def restore(path: str | os.PathLike, target: Any) -> Any:
    """Restore the state :func:`save` wrote to ``path`` into the structure of ``target``.

    The same checks as :func:`state_from_bytes`; the error names the file as well.
    A file that does not exist raises ``FileNotFoundError``, as ``open`` does.

    Args:
        path: the checkpoint file.
        target: a state of the same structure, shapes and dtypes (a fresh ``init``).

    Raises:
        CheckpointError: naming the file and the first path that differs, or
            what else is wrong with the file.

    Example:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> from gradtx.checkpoint import restore, save
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     save(os.path.join(directory, "params.npz"), {"w": jnp.arange(3.0)})
        ...     restore(os.path.join(directory, "params.npz"), {"w": jnp.zeros(3)})
        {'w': Array([0., 1., 2.], dtype=float32)}
    """
    name = os.fspath(path)
    with open(name, "rb") as file:
        return _read(target, file, os.fstat(file.fileno()).st_size, f"the checkpoint {os.fsdecode(name)!r}")
