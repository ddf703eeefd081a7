"""The examples: the IDX reader, and the MLP example trained end to end."""

import gzip
import importlib.util
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def _load_datasets():
    # Loaded from its path: "datasets" is also the name of a popular package.
    spec = importlib.util.spec_from_file_location("examples_datasets", os.path.join(EXAMPLES, "datasets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


datasets = _load_datasets()


def write_idx(path, array, compress=False):
    """Write ``array`` (uint8) as an IDX file: magic 0x0000 0x08 ndim, big-endian dims, bytes."""
    array = np.asarray(array, dtype=np.uint8)
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "images", images, compress)
    write_idx(tmp_path / "labels", labels, compress)

    got_images = datasets.read_idx(str(tmp_path / "images"))
    got_labels = datasets.read_idx(str(tmp_path / "labels"))
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 3, 4)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (5,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_multibyte_values_are_big_endian(tmp_path):
    values = np.array([[1, -2], [300, 70000]], dtype=">i4")
    (tmp_path / "ints").write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 2) + values.tobytes())
    got = datasets.read_idx(str(tmp_path / "ints"))
    assert got.tolist() == [[1, -2], [300, 70000]]
    assert got.dtype.isnative


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"not an IDX file: bad magic number 0x12345678"):
        datasets.read_idx(str(path))


def test_read_idx_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(ValueError, match="10 bytes"):
        datasets.read_idx(str(path))


def run_example(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "mnist_mlp.py"), "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"^final test accuracy: (\d\.\d+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return result.stdout, float(match.group(1))


def test_digits_example_reaches_97_percent():
    # The defaults: 50 epochs, seed 0, batch 64, Adam at 1e-3 (about 5 s on two cores).
    stdout, accuracy = run_example()
    assert "64 inputs" in stdout
    assert len(re.findall(r"^epoch +\d+ +train loss", stdout, re.MULTILINE)) == 50
    assert accuracy >= 0.97, stdout


def test_mnist_example_runs_on_idx_files(tmp_path):
    # A tiny fake MNIST, in the four files the real one comes in, partly gzipped.
    rng = np.random.default_rng(0)
    for split, n, compress in (("train", 128, True), ("t10k", 32, False)):
        suffix = ".gz" if compress else ""
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), compress)
    stdout, accuracy = run_example("--data-dir", str(tmp_path), "--epochs", "1")
    assert "128 training and 32 test examples, 784 inputs" in stdout
    assert len(re.findall(r"^epoch", stdout, re.MULTILINE)) == 1
    assert 0.0 <= accuracy <= 1.0
