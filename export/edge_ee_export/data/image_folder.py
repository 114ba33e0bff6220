"""Any image folder with one sub-folder per class (``root/<class>/<image>``).

Images are read and preprocessed by the runtime's own code (:class:`edge_ee.sources.images.ImageSource` and
:func:`edge_ee.pipeline.preprocess.make_preprocessor`), so the colour conversion, centre crop and resize seen in
training are exactly the ones ``edge-ee run --source images:DIR`` applies at deploy time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edge_ee.core.manifest import InputSpec
from edge_ee.errors import EdgeEEError
from edge_ee.pipeline.preprocess import make_preprocessor
from edge_ee.sources.images import IMAGE_EXTS

from ..errors import DatasetError
from . import Dataset, TensorSplit

EXTS = IMAGE_EXTS


def class_folders(root: str | os.PathLike[str]) -> list[str]:
    """The class names of an image folder (its sub-folders, sorted); at least two."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder {base} does not exist", "pass --data DIR with one sub-folder per class")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"image folder {base} has {len(classes)} class sub-folders; at least 2 are needed")
    return classes


def image_spec(size: Sequence[int], color: str, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> dict:
    """The manifest's ``input.preprocess`` for images: centre crop to the aspect ratio, then resize."""
    c = 1 if color == "gray" else 3
    return {"kind": "image", "color": color, "size": [int(size[0]), int(size[1])], "crop": "center",
            "scale": 1 / 255.0, "mean": [float(v) for v in (mean if mean is not None else [0.0] * c)],
            "std": [float(v) for v in (std if std is not None else [1.0] * c)], "invert": False}


def read_images(root: str | os.PathLike[str], classes: list[str], size: Sequence[int], color: str,
                limit_per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under ``root/<class>/`` through the runtime's reader and preprocessing, scaled to [0, 1]
    (no mean/std yet). Returns ``x [N, C, H, W]`` float32 and ``y [N]`` class indices."""
    from edge_ee.sources.images import ImageSource

    c = 1 if color == "gray" else 3
    spec = InputSpec("input", [1, c, int(size[0]), int(size[1])], "float32", "NCHW", image_spec(size, color))
    pre = make_preprocessor(spec)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for ci, name in enumerate(classes):
        d = Path(root) / name
        if not any(f.suffix.lower() in EXTS for f in d.rglob("*")):
            continue
        try:
            src = ImageSource(str(d), strict=True)  # training data: an unreadable image is an error
            n = 0
            while (frame := src.read()) is not None and (limit_per_class is None or n < limit_per_class):
                xs.append(pre(frame.data)[0])
                ys.append(ci)
                n += 1
        except EdgeEEError as e:
            raise DatasetError(f"cannot read images under {d}: {e}") from e
    if not xs:
        raise DatasetError(f"no images ({', '.join(sorted(EXTS))}) found under {root}")
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def load(root: str | os.PathLike[str], size: tuple[int, int] = (96, 96), color: str = "rgb", seed: int = 0,
         calib_fraction: float = 0.1, test_fraction: float = 0.1, train_limit: int | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         calib: int | None = None) -> Dataset:
    """Read every image (runtime preprocessing), normalise, split per class into train / calib / test.

    ``mean``/``std`` (per channel, on the [0, 1] scale): the model's own normalisation; when not given they are
    measured on the images and recorded in the preprocessing spec. ``calib``: total calibration frames
    (temperature + threshold halves) instead of ``calib_fraction`` of every class.
    """
    classes = class_folders(root)
    x, y = read_images(root, classes, size, color)
    if mean is None or std is None:
        mean = [float(v) for v in x.mean(dim=(0, 2, 3))]
        std = [float(v) for v in x.std(dim=(0, 2, 3)).clamp_min(1e-3)]
    c = x.shape[1]
    if len(mean) not in (1, c) or len(std) not in (1, c):
        raise DatasetError(f"mean/std have {len(mean)}/{len(std)} values; the images have {c} channels")
    m = torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    x = (x - m) / s
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[int]] = {"train": [], "t": [], "c1": [], "c2": []}
    counts = torch.bincount(y, minlength=len(classes))
    for ci in range(len(classes)):
        idx = torch.nonzero(y == ci).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        nt = int(len(idx) * test_fraction)
        nc = int(len(idx) * calib_fraction) if calib is None else round(calib * len(idx) / int(counts.sum()))
        nc = min(nc, len(idx) - nt - 1)
        parts["t"] += idx[:nt]
        parts["c1"] += idx[nt: nt + nc // 2]
        parts["c2"] += idx[nt + nc // 2: nt + nc]
        parts["train"] += idx[nt + nc:]
    if train_limit is not None:
        parts["train"] = parts["train"][:train_limit]
    full = TensorSplit(x, y)
    pre = image_spec(size, color, mean, std)
    return Dataset(train=full.subset(torch.tensor(parts["train"]), "train"),
                   calib_temp=full.subset(torch.tensor(parts["c1"]), "calib_temp"),
                   calib_thr=full.subset(torch.tensor(parts["c2"]), "calib_thr"),
                   test=full.subset(torch.tensor(parts["t"]), "test"), labels=classes, preprocess=pre,
                   layout="NCHW", task="image_classification", augment="shift_flip",
                   meta={"root": str(root)})
