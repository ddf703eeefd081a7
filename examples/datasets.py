"""Datasets for the examples: scikit-learn's digits, and MNIST read from IDX files.

Both loaders return ``(x_train, y_train, x_test, y_test)`` as NumPy arrays:
images flattened to float32 rows scaled to [0, 1], labels as int32.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

# The third byte of an IDX file's magic number says how each value is stored;
# multi-byte values are big-endian.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _open(path: str):
    """Open a file for reading bytes, decompressing it if it is gzipped."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into an array of its dtype and shape.

    The header is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``
    followed by ``ndim`` big-endian uint32 sizes; the values follow, row-major.
    """
    with _open(path) as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in IDX_DTYPES:
            raise ValueError(
                f"{path} is not an IDX file: bad magic number {'0x' + header.hex() if header else '(empty)'} "
                "(expected 0x0000 followed by a dtype code and the number of dimensions)"
            )
        dtype, ndim = IDX_DTYPES[header[2]], header[3]
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = f.read()
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but {len(data)} bytes follow")
    # Convert to native byte order so that JAX accepts the array as it is.
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"neither {name} nor {name}.gz is in {data_dir}")


def load_mnist(data_dir: str):
    """MNIST from the four IDX files in ``data_dir``: 784 inputs, pixels / 255."""
    arrays = {key: read_idx(_find(data_dir, name)) for key, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"MNIST {split} split: expected images (n, rows, cols) and labels (n,), "
                f"got {images.shape} and {labels.shape}"
            )
    flatten = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    return (
        flatten(arrays["x_train"]),
        arrays["y_train"].astype(np.int32),
        flatten(arrays["x_test"]),
        arrays["y_test"].astype(np.int32),
    )


def load_digits():
    """scikit-learn's 8x8 digits: 64 inputs, pixels / 16, a stratified 75/25 split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    x, y = sklearn_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32) / 16.0, y.astype(np.int32), test_size=0.25, stratify=y, random_state=0
    )
    return x_train, y_train, x_test, y_test
