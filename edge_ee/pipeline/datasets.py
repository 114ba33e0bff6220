"""Torch-free readers for the public data sets edge-ee is measured on.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (IDX files under
/usr/share/datasets/fashion-mnist, overridable with ``$FASHION_MNIST_DIR``). The exporter trains on
it, and the samples script and the benchmarks evaluate on it, all through this one reader.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import SourceError

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                        "Bag", "Ankle boot"]
FASHION_MNIST_HINT = ("install it with `sudo apt-get install dataset-fashion-mnist` (files land in "
                      "/usr/share/datasets/fashion-mnist), or pass a directory holding the four *-ubyte(.gz) files")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetError(SourceError):
    """A data set is missing or malformed."""

    kind = "dataset error"


def read_idx(data: bytes, what: str) -> np.ndarray:
    """Decode an IDX file (magic 0x0000 08 ndim, big-endian sizes, uint8 payload)."""
    if len(data) < 8:
        raise DatasetError(f"{what}: truncated IDX file")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or not 1 <= ndim <= 4:
        raise DatasetError(f"{what}: not an unsigned-byte IDX file (header {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    n = int(np.prod(dims))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != n:
        raise DatasetError(f"{what}: expected {n} values for shape {dims}, found {payload.size}")
    return payload.reshape(dims)


def _read(base: Path, stem: str) -> bytes:
    for name in (stem + ".gz", stem):
        p = base / name
        if p.is_file():
            raw = p.read_bytes()
            return gzip.decompress(raw) if name.endswith(".gz") else raw
    raise DatasetError(f"Fashion-MNIST file {stem}(.gz) not found in {base}", FASHION_MNIST_HINT)


def load_fashion_mnist(path: str | os.PathLike[str] | None = None,
                       split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` uint8 and labels ``[N]`` uint8 of the ``train`` or ``test`` split."""
    base = Path(path) if path is not None else FASHION_MNIST_DIR
    if not base.is_dir():
        raise DatasetError(f"Fashion-MNIST directory {base} does not exist", FASHION_MNIST_HINT)
    img_name, lab_name = _FILES[split]
    images = read_idx(_read(base, img_name), img_name)
    labels = read_idx(_read(base, lab_name), lab_name)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} disagree")
    return images, labels
