"""Datasets for the exporter: Fashion-MNIST (IDX files), synthetic keyword spotting, image folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class TensorSplit:
    """One split of a dataset held in memory: ``x`` float32 model inputs, ``y`` int64 labels; ``conditions``: the
    recording condition of each input where the data set knows it (keyword clips: quiet / noise / babble)."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    conditions: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: torch.Tensor | slice, name: str | None = None) -> TensorSplit:
        cond = None if self.conditions is None else self.conditions[np.asarray(idx) if isinstance(idx, torch.Tensor)
                                                                    else idx]
        return TensorSplit(self.x[idx], self.y[idx], name if name is not None else self.name, cond)


@dataclass
class Dataset:
    """Everything the exporter needs from a dataset.

    ``train`` trains the model, ``calib_temp`` fits the per-exit temperatures, ``calib_thr`` the
    thresholds; ``test`` (and any ``extra`` test splits, e.g. held-out voices) only measure.
    """

    train: TensorSplit
    calib_temp: TensorSplit
    calib_thr: TensorSplit
    test: TensorSplit
    labels: list[str]
    preprocess: dict
    layout: str
    task: str
    extra: dict[str, TensorSplit] | None = None
    augment: str | None = None  # name of the training-time augmentation ("shift_flip", "time_mask")
    train_fn: Callable[[int], TensorSplit] | None = None  # fresh augmented training split per epoch (seed)
    meta: dict = field(default_factory=dict)  # dataset facts recorded in the manifest

    def sizes(self) -> dict[str, int]:
        d = {"train": len(self.train), "calib_temp": len(self.calib_temp), "calib_thr": len(self.calib_thr),
             "test": len(self.test)}
        for k, v in (self.extra or {}).items():
            d[k] = len(v)
        return d
