"""Checkpoint files: every bad checkpoint is a CheckpointError naming the leaf, checked before any data is
read; ``save`` is atomic under SIGKILL.

The malicious files are built here by hand (zipfile, NumPy's .npy format, and for the zip bomb the zip
records themselves), one per measured bug of the reader that took each stored array as it was.
"""

import functools
import io
import json
import operator
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import gradtx
from gradtx.checkpoint import CheckpointError, restore, save, state_from_bytes, state_to_bytes

MANIFEST = "__gradtx_manifest__.npy"
FORMAT = "gradtx-state-v1"
ENTRY = {"path": "x", "shape": [4], "dtype": "float32"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def target():
    return {"x": jnp.zeros(4)}


def npy_header(shape, dtype, fortran_order=False):
    """The magic string and header of a version 1.0 .npy file."""
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return buffer.getvalue()


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def manifest(header):
    """A manifest member: ``header`` as JSON (or raw bytes), as the uint8 array gradtx writes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return npy(np.frombuffer(raw, np.uint8))


def archive(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def checkpoint(leaf=None, leaves=(ENTRY,), **extra):
    """A checkpoint of one leaf for ``target()``: the manifest, ``leaf`` as leaf_0.npy, then ``extra`` members."""
    leaf = np.arange(4, dtype=np.float32) if leaf is None else leaf
    return archive({MANIFEST: manifest({"format": FORMAT, "leaves": list(leaves)}), "leaf_0.npy": npy(leaf), **extra})


def raw_zip(members):
    """A zip archive written record by record, from ``(name, method, payload, size, crc[, stored size])``: what
    zipfile itself would not write (a deflate stream made without inflating it, a size that lies)."""
    out, central = bytearray(), bytearray()
    for name, method, payload, size, crc, *stored_size in members:
        offset, name = len(out), name.encode()
        fields = (
            method,
            0,
            0x21,
            crc,
            *(stored_size or [len(payload)]),
            size,
            len(name),
        )  # method, time, date (1980-01-01), ...
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + name + payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def stored(name, data):
    return (name, zipfile.ZIP_STORED, data, len(data), zlib.crc32(data))


def refused(data, *fragments, into=None):
    """The message of the CheckpointError that restoring ``data`` raises, with each fragment in it."""
    with pytest.raises(CheckpointError) as caught:
        state_from_bytes(target() if into is None else into, data)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not in: {message}"
    return message


def refused_from_file(tmp_path, data, *fragments):
    """The same through ``restore`` of a file: the message names the file too."""
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        restore(path, target())
    message = str(caught.value)
    for fragment in (repr(str(path)), *fragments):
        assert fragment in message, f"{fragment!r} is not in: {message}"


def test_the_hand_made_checkpoint_is_good():
    """The builders above make a checkpoint that loads: each test below changes one thing."""
    restored = state_from_bytes(target(), checkpoint())
    np.testing.assert_array_equal(np.asarray(restored["x"]), [0.0, 1.0, 2.0, 3.0])
    assert restored["x"].dtype == jnp.float32


def crc32_then_zeros(crc, mebibytes):
    """``zlib.crc32(data + bytes(mebibytes * 2**20))`` from ``crc = zlib.crc32(data)``, without the 1 GiB of
    zeros: appending a block of zero bytes is an affine map of the 32-bit CRC, read off on 33 inputs."""
    block = bytes(1 << 20)
    offset = zlib.crc32(block, 0)
    columns = [zlib.crc32(block, 1 << bit) ^ offset for bit in range(32)]
    for _ in range(mebibytes):
        crc = functools.reduce(operator.xor, (c for bit, c in enumerate(columns) if crc >> bit & 1), offset)
    return crc


def test_crc32_then_zeros_is_the_crc_of_the_zeros():
    assert crc32_then_zeros(zlib.crc32(b"head"), 3) == zlib.crc32(b"head" + bytes(3 << 20))


def zip_bomb():
    """About 1 MB: a manifest matching ``target()`` and a deflated leaf_0.npy of 2**28 float32 zeros (1 GiB
    inflated), with its true size and CRC; the old reader inflated it all into the (4,) leaf."""
    header = npy_header((2**28,), np.float32)
    mebibytes = 2**28 * 4 >> 20
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)  # the same bytes for each MiB
    stream = start + block * mebibytes + deflate.flush()
    crc = crc32_then_zeros(zlib.crc32(header), mebibytes)
    bomb = ("leaf_0.npy", zipfile.ZIP_DEFLATED, stream, len(header) + (mebibytes << 20), crc)
    return raw_zip([stored(MANIFEST, manifest({"format": FORMAT, "leaves": [ENTRY]})), bomb])


def test_a_compressed_member_claiming_2_28_elements_is_refused_before_any_data(tmp_path):
    data = zip_bomb()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("leaf_0.npy")
    assert len(data) < 1.2e6 and info.file_size == 128 + 2**30  # a genuine bomb: 1 MB, 1 GiB inflated
    assert zlib.decompressobj(-15).decompress(data[info.header_offset + 40 :], 200)[:6] == b"\x93NUMPY"
    tracemalloc.start()
    try:
        message = refused(data, "'x' (member leaf_0.npy) is compressed (deflate)", "uncompressed (stored)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated to refuse it: {message}"  # nothing inflated or allocated
    refused_from_file(tmp_path, data, "'x' (member leaf_0.npy) is compressed (deflate)")
    # a checkpoint re-saved compressed (np.savez_compressed) is refused the same way: gradtx reads stored members
    buffer = io.BytesIO()
    np.savez_compressed(buffer, leaf_0=np.zeros(4, np.float32), __gradtx_manifest__=np.frombuffer(b"{}", np.uint8))
    refused(buffer.getvalue(), f"the manifest member '{MANIFEST}' is compressed (deflate)")


def test_a_member_of_another_dtype_is_refused_not_kept():
    refused(
        checkpoint(np.arange(4, dtype=np.float16)),
        "'x' (member leaf_0.npy) holds float16 ('<f2') where the manifest and the target need float32 ('<f4')",
    )
    refused(checkpoint(np.arange(4, dtype=">f4")), "'x' (member leaf_0.npy) holds", "(another byte order)")
    refused(checkpoint(np.arange(4, dtype=np.int32)), "'x' (member leaf_0.npy) holds int32")


def test_a_bfloat16_leaf_is_read_only_from_its_bits():
    leaf = {"path": "x", "shape": [3, 4], "dtype": "bfloat16"}
    into = {"x": jnp.zeros((3, 4), jnp.bfloat16)}
    need = "where the manifest and the target need uint16 ('<u2')"
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 8  # exact in bfloat16
    refused(checkpoint(values, [leaf]), "'x' (member leaf_0.npy) holds float32 ('<f4')", need, into=into)
    bits = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    refused(checkpoint(bits.astype(">u2"), [leaf]), "(another byte order)", need, into=into)
    restored = state_from_bytes(into, checkpoint(bits.astype("<u2"), [leaf]))["x"]
    assert restored.dtype == jnp.bfloat16 and restored.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(restored, np.float32), values)


def test_an_edited_shape_is_refused_at_restore():
    refused(
        checkpoint(np.zeros(5, np.float32), [{**ENTRY, "shape": [5]}]),
        "'x' has shape (5,) in the checkpoint but (4,) in the target",
    )
    refused(
        checkpoint(np.zeros((2, 2), np.float32)),
        "'x' (member leaf_0.npy) holds an array of shape (2, 2) where the manifest and the target have shape (4,)",
    )
    # a header claiming 2**28 elements, stored, with 16 bytes behind it: refused by its header alone
    claim = npy_header((2**28,), np.float32) + bytes(16)
    refused(checkpoint(**{"leaf_0.npy": claim}), "holds an array of shape (268435456,)")
    # the right header with too few bytes behind it
    short = npy_header((4,), np.float32) + bytes(8)
    refused(checkpoint(**{"leaf_0.npy": short}), "'x' (member leaf_0.npy) has 8 bytes of data where", "needs 16")
    # a zip entry claiming more bytes than the file has
    member = npy(np.zeros(4, np.float32))
    lying = ("leaf_0.npy", zipfile.ZIP_STORED, member, 2**30, zlib.crc32(member))
    data = raw_zip([stored(MANIFEST, manifest({"format": FORMAT, "leaves": [ENTRY]})), lying])
    refused(data, "'x' (member leaf_0.npy) claims 1073741824 bytes but stores 144")
    lying = ("leaf_0.npy", zipfile.ZIP_STORED, member, 2**30, zlib.crc32(member), 2**30)
    data = raw_zip([stored(MANIFEST, manifest({"format": FORMAT, "leaves": [ENTRY]})), lying])
    refused(data, "'x' (member leaf_0.npy) claims 1073741824 bytes, more than the", "bytes of the whole file")


def test_a_fortran_order_member_is_read_in_its_order():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = checkpoint(np.asfortranarray(values), [{"path": "x", "shape": [2, 3], "dtype": "float32"}])
    assert b"'fortran_order': True" in data
    restored = state_from_bytes({"x": jnp.zeros((2, 3))}, data)["x"]
    np.testing.assert_array_equal(np.asarray(restored), values)


def member_contents(data):
    """``{name: (start, stop)}``: where each member's bytes (the .npy file, covered by its CRC-32) lie in ``data``."""
    spans = {}
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
        start = info.header_offset + 30 + name_length + extra_length
        spans[info.filename] = (start, start + info.compress_size)
    return spans


def corrupted(data, name, offset):
    """``data`` with the byte at ``offset`` of member ``name``'s contents changed."""
    position = member_contents(data)[name][0] + offset
    return data[:position] + bytes([data[position] ^ 0x20]) + data[position + 1 :]


def header(**fields):
    return manifest({"format": FORMAT, "leaves": [ENTRY], **fields})


def entry(**fields):
    return manifest({"format": FORMAT, "leaves": [{**ENTRY, **fields}]})


LEAF = npy(np.zeros(4, np.float32))
MALFORMED = {  # what each file is: (its bytes, the fragments of the message)
    "not a zip": (b"a text file, not a checkpoint", ["it is not a gradtx state checkpoint (not a zip archive"]),
    "empty": (b"", ["not a zip archive"]),
    "truncated": (checkpoint()[:-30], ["not a zip archive"]),
    "no manifest": (archive({"leaf_0.npy": LEAF}), [f"no manifest member '{MANIFEST}'"]),
    "manifest not utf-8": (archive({MANIFEST: manifest(b'{"format": "\xff\xfe"}')}), ["manifest is not UTF-8"]),
    "manifest not json": (archive({MANIFEST: manifest(b'{"format": ')}), ["manifest is not JSON"]),
    "manifest nested too deep": (archive({MANIFEST: manifest(b"[" * 100_000)}), ["manifest is not JSON"]),
    "manifest a list": (archive({MANIFEST: manifest([ENTRY])}), ["manifest is a list, not an object"]),
    "no format": (archive({MANIFEST: manifest({"leaves": [ENTRY]})}), ["unknown checkpoint format None"]),
    "unknown format": (
        archive({MANIFEST: manifest({"format": "gradtx-state-v0", "leaves": [ENTRY]})}),
        ["unknown checkpoint format 'gradtx-state-v0'; expected 'gradtx-state-v1'"],
    ),
    "no leaves": (archive({MANIFEST: manifest({"format": FORMAT})}), ["keys ['format'], not ['format', 'leaves']"]),
    "unknown key": (archive({MANIFEST: header(code="x")}), ["keys ['code', 'format', 'leaves']"]),
    "leaves a dict": (archive({MANIFEST: header(leaves={"x": ENTRY})}), ["'leaves' is a dict, not a list"]),
    "entry a string": (archive({MANIFEST: header(leaves=["x"])}), ["leaf 0 is a str"]),
    "entry without dtype": (
        archive({MANIFEST: header(leaves=[{"path": "x", "shape": [4]}])}),
        ["leaf 0 ('x') has the keys ['path', 'shape'], not ['path', 'shape', 'dtype']"],
    ),
    "path a number": (archive({MANIFEST: entry(path=3)}), ["leaf 0 has the path 3, not a string"]),
    "shape a string": (archive({MANIFEST: entry(shape="4")}), ["leaf 0 ('x') has the shape '4', not a list"]),
    "shape of floats": (archive({MANIFEST: entry(shape=[4.0])}), ["('x') has the shape [4.0]"]),
    "shape of bools": (archive({MANIFEST: entry(shape=[True])}), ["('x') has the shape [True]"]),
    "negative shape": (archive({MANIFEST: entry(shape=[-4])}), ["('x') has the shape [-4]"]),
    "dtype a number": (archive({MANIFEST: entry(dtype=32)}), ["('x') has the dtype 32, not a string"]),
    "manifest pickled": (
        archive({MANIFEST: npy(np.array([{"format": FORMAT}], dtype=object))}),
        ["holds Python objects", "allow_pickle"],
    ),
    "manifest not bytes": (archive({MANIFEST: npy(np.zeros(3, np.int32))}), ["holds int32 ('<i4')"]),
    "manifest 2-d": (archive({MANIFEST: npy(np.zeros((2, 2), np.uint8))}), ["have a 1-d array"]),
    "manifest compressed": (
        archive({MANIFEST: header(), "leaf_0.npy": LEAF}, zipfile.ZIP_DEFLATED),
        [f"the manifest member '{MANIFEST}' is compressed (deflate)"],
    ),
    "member missing": (
        archive({MANIFEST: header(leaves=[ENTRY, {**ENTRY, "path": "y"}]), "leaf_0.npy": LEAF}),
        ["'y' (member leaf_1.npy) is missing"],
    ),
    "extra member": (checkpoint(**{"payload.npy": LEAF}), ["the member 'payload.npy', which is no leaf"]),
    "leaf pickled": (checkpoint(np.array([None] * 4, dtype=object)), ["'x' (member leaf_0.npy) holds Python objects"]),
    "member header not npy": (
        checkpoint(**{"leaf_0.npy": b"#!/bin/sh\n" + bytes(64)}),
        ["'x' (member leaf_0.npy) is not"],
    ),
    "member header version 3": (
        checkpoint(**{"leaf_0.npy": b"\x93NUMPY\x03\x00" + LEAF[8:]}),
        ["'x' (member leaf_0.npy) is a .npy file of version (3, 0)"],
    ),
    "member data corrupted": (
        corrupted(checkpoint(), "leaf_0.npy", 128 + 5),
        ["'x' (member leaf_0.npy)", "Bad CRC-32"],
    ),
    "member header corrupted": (corrupted(checkpoint(), "leaf_0.npy", 60), ["'x' (member leaf_0.npy)"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_a_checkpoint_error(case, tmp_path):
    data, fragments = MALFORMED[case]
    into = {"x": jnp.zeros(4), "y": jnp.zeros(4)} if case == "member missing" else None
    message = refused(data, "cannot restore this checkpoint into the target: ", *fragments, into=into)
    if "'x'" in " ".join(fragments):
        assert "'x'" in message  # the leaf's path
    if into is None:
        refused_from_file(tmp_path, data, *fragments)


def test_two_members_of_one_name_are_refused():
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "w") as z:
        z.writestr(MANIFEST, header())
        z.writestr("leaf_0.npy", LEAF)
        z.writestr("leaf_0.npy", npy(np.full(4, 9.0, np.float32)))
    refused(buffer.getvalue(), "two members of the same name")


def test_every_flipped_byte_is_refused_or_changes_nothing():
    """A checkpoint with one byte changed (each byte in turn) restores to the same state or raises
    CheckpointError: never another exception, never other values."""
    state = {"w": jnp.arange(3.0), "n": jnp.asarray(7, jnp.int32)}
    into = {"w": jnp.zeros(3), "n": jnp.asarray(0, jnp.int32)}
    data = state_to_bytes(state)
    protected = {p for start, stop in member_contents(data).values() for p in range(start, stop)}
    outcomes = {"refused": 0, "same": 0}
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 0x20
        try:
            restored = state_from_bytes(into, bytes(changed))
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        assert position not in protected, f"byte {position}, inside a member, changed without an error"
        assert jax.tree.structure(restored) == jax.tree.structure(state), position
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
            assert got.dtype == want.dtype and got.shape == want.shape, position
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"byte {position}")
        outcomes["same"] += 1
    assert outcomes["refused"] >= len(protected) > len(data) / 2, outcomes


def test_save_and_restore_round_trip_every_dtype(tmp_path):
    state = {
        "bf16": jnp.arange(4.0, dtype=jnp.bfloat16) / 4,
        "f8": jnp.asarray([0.5, -2.0, 448.0], jnp.float8_e4m3fn),
        "count": jnp.asarray(3, jnp.int32),
        "key": jax.random.key_data(jax.random.key(0)),
        "transposed": np.arange(6.0, dtype=np.float32).reshape(2, 3).T,  # Fortran-ordered in NumPy
    }
    path = tmp_path / "state.npz"
    save(path, jax.tree.map(jnp.zeros_like, state))
    save(path, state)  # over the first one
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]  # no temporary file left behind
    restored = restore(str(path), jax.tree.map(jnp.zeros_like, state))
    for name, want in state.items():
        got = restored[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        bits = lambda x: np.ascontiguousarray(np.asarray(x)).view(np.uint8)
        np.testing.assert_array_equal(bits(got), bits(want), err_msg=name)


def test_restoring_a_file_names_the_file_and_the_leaf(tmp_path):
    tx = gradtx.adam(0.1)
    path = tmp_path / "state.npz"
    save(path, tx.init({"w": jnp.ones(3)}))
    with pytest.raises(
        CheckpointError, match=r"the checkpoint '.*state.npz' into the target: '0/mu/w' has shape \(3,\)"
    ):
        restore(path, tx.init({"w": jnp.ones(4)}))
    with pytest.raises(FileNotFoundError):
        restore(tmp_path / "missing.npz", tx.init({"w": jnp.ones(3)}))


def test_saving_python_objects_is_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save 'a/0': it holds Python objects"):
        save(tmp_path / "state.npz", {"a": [np.array([None], dtype=object)]})
    assert os.listdir(tmp_path) == []


WRITER = r"""
import os, random, shutil, signal, sys, time
import numpy as np
from gradtx.checkpoint import save  # imported once; each writer below is a fork of this process

directory, tries, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path, rng, log = os.path.join(directory, "state.npz"), random.Random(0), []
for attempt in range(tries):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: saves value 1000 * attempt + k for k = 1, 2, ... and reports each one saved
        os.close(read_end)
        for k in range(1, 1000):
            value = 1000 * attempt + k
            save(path, {"big": np.full(size, value, np.float32), "step": np.int32(value)})
            os.write(write_end, b"%d\n" % value)
        os._exit(0)
    os.close(write_end)
    time.sleep(rng.uniform(0.0, 0.12))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reports:
        saved = [int(v) for v in reports.read().split()]
    snapshot = os.path.join(directory, "after_%d.npz" % attempt)
    if os.path.exists(path):
        shutil.copyfile(path, snapshot)
    print(attempt, saved[-1] if saved else 0, snapshot if os.path.exists(snapshot) else "-", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers are forked")
def test_a_writer_killed_at_any_moment_leaves_a_whole_checkpoint_or_none(tmp_path):
    """Writers of a 2 MB state killed by SIGKILL after random delays (10 times): the path holds nothing
    before the first save, then the last reported save or the one after it (saved, killed before it
    reported); every file there, and every temporary file left, restores whole or is refused."""
    size, tries = 1 << 19, 10
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, str(script), str(work), str(tries), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert run.returncode == 0, run.stderr
    into = {"big": jnp.zeros(size), "step": jnp.asarray(0, jnp.int32)}

    def value_of(path):
        restored = restore(path, into)
        value = int(restored["step"])
        np.testing.assert_array_equal(np.asarray(restored["big"]), np.full(size, value, np.float32))
        return value

    previous, lines = None, run.stdout.split("\n")[:tries]
    for attempt, line in enumerate(lines):
        _, last_reported, snapshot = line.split()
        last_reported = int(last_reported)
        if snapshot == "-":  # no save completed yet
            assert previous is None and last_reported == 0, line
            continue
        value = value_of(snapshot)
        next_one = (last_reported + 1) if last_reported else 1000 * attempt + 1
        allowed = {next_one} | ({last_reported} if last_reported else {previous})
        assert value in allowed, f"attempt {attempt}: the file holds save {value}, expected one of {allowed}"
        previous = value
    assert len(lines) == tries and previous is not None, run.stdout
    leftovers = [name for name in os.listdir(work) if name.endswith(".tmp")]
    for name in leftovers:  # a temporary file of a killed writer: refused, or (written, not yet renamed) whole
        try:
            value_of(work / name)
        except CheckpointError:
            pass
