"""Python API for custom models: attach exits, train them, calibrate, export.

Example (a torchvision-style model with the user's own weights)::

    from edge_ee_export import api
    ee = api.attach_exits(model, ["layer1", "layer2"], example_input, final_split="layer4",
                          head="conv_conf")
    api.train(ee, dataset, method="pteenet", epochs=5)          # backbone frozen
    cal = api.calibrate(ee, dataset, target_drop=0.01)
    api.export(ee, cal, dataset, "my_bundle", name="my-model-ee")

``dataset`` is an :class:`edge_ee_export.data.Dataset` (see ``data.image_folder.load`` for
one sub-folder per class, or build one from tensors with :func:`dataset_from_tensors`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .attach import EarlyExitModel, attach_exits, count_macs, place_splits
from .calibrate import calibrate as _calibrate
from .data import Dataset, TensorSplit
from .onnx_export import export_bundle, producer_info
from .train import train_backbone, train_exits

__all__ = ["attach_exits", "place_splits", "count_macs", "train", "train_backbone", "calibrate", "export",
           "dataset_from_tensors", "EarlyExitModel", "Dataset", "TensorSplit"]


def train(ee: EarlyExitModel, data: Dataset, method: str = "pteenet", epochs: int = 5, **kw: Any) -> list[dict]:
    """Train the exits (``pteenet``/``sdn``: frozen backbone; ``eenet``/``trecx``: joint)."""
    return train_exits(ee, data, method=method, epochs=epochs, **kw)


def calibrate(ee: EarlyExitModel, data: Dataset, target_drop: float = 0.01, **kw: Any) -> dict[str, Any]:
    """Temperatures on ``data.calib_temp``, thresholds on ``data.calib_thr``."""
    return _calibrate(ee, data.calib_temp, data.calib_thr, target_drop=target_drop, **kw)


def export(ee: EarlyExitModel, cal: dict[str, Any], data: Dataset, out: str | os.PathLike[str], *,
           name: str = "custom-ee", description: str = "", quantize: bool = False, seed: int = 0,
           command: str | None = None, **producer: Any) -> Path:
    """Write a verified bundle (atomically) and return its path."""
    cal = dict(cal)
    cal["split"] = {**cal.get("split", {}), "sizes": data.sizes()}
    return export_bundle(ee, cal, out, data, name=name, description=description,
                         producer=producer_info(seed, command if command is not None else "python API", **producer),
                         quantize=quantize)


def dataset_from_tensors(x: torch.Tensor, y: torch.Tensor, labels: list[str], *, preprocess: dict | None = None,
                         layout: str = "NCHW", task: str = "image_classification", calib_fraction: float = 0.2,
                         test: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0) -> Dataset:
    """Split tensors into train / calib_temp / calib_thr (and test, if not given).

    ``preprocess`` is what the runtime will do to a frame before the model sees it (export/README.md, "Preprocessing");
    without it the bundle expects ready-made tensors, and images fed to it (``run --source images:``) are not
    normalised like ``x`` was: a warning says so."""
    if preprocess is None and task == "image_classification":
        warnings.warn("dataset_from_tensors: no preprocess given, the bundle will declare {'kind': 'none'} (frames are "
                      "model inputs as they are); pass preprocess={'kind': 'image', 'size': [H, W], 'mean': ..., "
                      "'std': ...} if it will see camera or image files", stacklevel=2)
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    perm = torch.randperm(n, generator=g)
    nc = max(2, int(n * calib_fraction))
    nt = 0 if test is not None else nc
    c1, c2, te, tr = perm[: nc // 2], perm[nc // 2: nc], perm[nc: nc + nt], perm[nc + nt:]
    full = TensorSplit(x, y, "data")
    return Dataset(train=full.subset(tr, "train"), calib_temp=full.subset(c1, "calib_temp"),
                   calib_thr=full.subset(c2, "calib_thr"),
                   test=TensorSplit(*test, "test") if test is not None else full.subset(te, "test"),
                   labels=list(labels), preprocess=preprocess or {"kind": "none"}, layout=layout, task=task)
