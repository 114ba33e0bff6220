"""Fashion-MNIST from the IDX files of Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from . import Dataset, TensorSplit

DEFAULT_PATH = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530
INSTALL_HINT = ("install it with `sudo apt-get install dataset-fashion-mnist` (files land in "
                "/usr/share/datasets/fashion-mnist), or pass --data DIR holding the four *-ubyte(.gz) files")

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open(base: Path, stem: str) -> bytes:
    for name in (stem + ".gz", stem):
        p = base / name
        if p.is_file():
            raw = p.read_bytes()
            return gzip.decompress(raw) if name.endswith(".gz") else raw
    raise DatasetError(f"Fashion-MNIST file {stem}(.gz) not found in {base}", INSTALL_HINT)


def read_idx(data: bytes, what: str) -> np.ndarray:
    """Decode an IDX file (magic 0x0000 08 dims, big-endian sizes, uint8 payload)."""
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


def load_raw(path: str | os.PathLike[str] | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` uint8 and labels ``[N]`` uint8 of the ``train`` or ``test`` split."""
    base = Path(path) if path is not None else DEFAULT_PATH
    if not base.is_dir():
        raise DatasetError(f"Fashion-MNIST directory {base} does not exist", INSTALL_HINT)
    img_name, lab_name = FILES[split]
    images = read_idx(_open(base, img_name), img_name)
    labels = read_idx(_open(base, lab_name), lab_name)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} disagree")
    return images, labels


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> normalised float ``[N, 1, 28, 28]`` (the bundle's preprocess)."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - MEAN) / STD


PREPROCESS = {"kind": "image", "color": "gray", "size": [28, 28], "scale": 1 / 255.0, "mean": [MEAN],
              "std": [STD], "invert": False}


def load(path: str | os.PathLike[str] | None = None, seed: int = 0, calib: int = 5000,
         train_limit: int | None = None, test_limit: int | None = None) -> Dataset:
    """Train = 60k training images minus ``calib`` held out (half for temperatures, half for
    thresholds); test = the 10k t10k images."""
    xi, yi = load_raw(path, "train")
    xt, yt = load_raw(path, "test")
    g = np.random.default_rng(seed)
    perm = g.permutation(len(yi))
    calib = min(calib, len(yi) // 5)
    cal, tr = perm[:calib], perm[calib:]
    if train_limit is not None:
        tr = tr[:train_limit]
        cal = cal[: max(2 * min(train_limit // 2, calib // 2), 2)]
    if test_limit is not None:
        xt, yt = xt[:test_limit], yt[:test_limit]
    half = len(cal) // 2

    def split(ix: np.ndarray, name: str) -> TensorSplit:
        return TensorSplit(to_input(xi[ix]), torch.from_numpy(yi[ix].astype(np.int64)), name)

    return Dataset(
        train=split(tr, "train"),
        calib_temp=split(cal[:half], "calib_temp"),
        calib_thr=split(cal[half:], "calib_thr"),
        test=TensorSplit(to_input(xt), torch.from_numpy(yt.astype(np.int64)), "test"),
        labels=list(LABELS),
        preprocess=dict(PREPROCESS),
        layout="NCHW",
        task="image_classification",
        augment="shift_flip",
    )
