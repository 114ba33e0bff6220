from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edge_ee.errors import ExitCode
from edge_ee.pipeline.datasets import FASHION_MNIST_DIR, DatasetError, load_fashion_mnist, read_idx


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def test_read_idx_roundtrip_and_errors() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_idx(a), "x"), a)
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(b"\0\0", "x")
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX"):
        read_idx(b"\1\2\3\4" + b"\0" * 8, "x")
    with pytest.raises(DatasetError, match="expected 24 values"):
        read_idx(_idx(a)[:-1], "x")


def test_load_from_a_directory(tmp_path: Path) -> None:
    imgs = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([1, 2, 3], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(imgs)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))
    x, y = load_fashion_mnist(tmp_path, "test")
    assert x.shape == (3, 28, 28) and list(y) == [1, 2, 3]
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte") as ei:
        load_fashion_mnist(tmp_path, "train")
    assert "apt-get install dataset-fashion-mnist" in str(ei.value)
    assert ei.value.exit_code == ExitCode.SOURCE
    with pytest.raises(DatasetError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nope")


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split() -> None:
    x, y = load_fashion_mnist(split="test")
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == [1000] * 10
