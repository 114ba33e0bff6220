"""Fashion-MNIST from the IDX files of Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import os

import numpy as np
import torch

from edge_ee.pipeline import datasets

from ..errors import DatasetError
from . import Dataset, TensorSplit

DEFAULT_PATH = datasets.FASHION_MNIST_DIR
LABELS = datasets.FASHION_MNIST_LABELS
MEAN, STD = 0.2860, 0.3530
INSTALL_HINT = datasets.FASHION_MNIST_HINT


def load_raw(path: str | os.PathLike[str] | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` uint8 and labels ``[N]`` uint8 of the ``train`` or ``test`` split
    (the runtime's torch-free reader, with the exporter's error type and exit code)."""
    try:
        return datasets.load_fashion_mnist(path, split)
    except datasets.DatasetError as e:
        raise DatasetError(e.message, e.hint) from e


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
