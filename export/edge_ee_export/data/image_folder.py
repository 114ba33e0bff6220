"""Any image folder with one sub-folder per class (``root/<class>/<image>``), via Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from . import Dataset, TensorSplit

EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load(root: str | os.PathLike[str], size: tuple[int, int] = (96, 96), color: str = "rgb", seed: int = 0,
         calib_fraction: float = 0.1, test_fraction: float = 0.1, train_limit: int | None = None) -> Dataset:
    """Load, resize (bilinear) and normalise every image; split per class into train / calib / test."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover
        raise DatasetError("Pillow is needed to read image folders", "pip install pillow") from e
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder {base} does not exist", "pass --data DIR with one sub-folder per class")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"image folder {base} has {len(classes)} class sub-folders; at least 2 are needed")
    xs, ys = [], []
    mode = "L" if color == "gray" else "RGB"
    for ci, c in enumerate(classes):
        files = sorted(p for p in (base / c).rglob("*") if p.suffix.lower() in EXTS)
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.uint8)
            except OSError as e:
                raise DatasetError(f"cannot read image {f}: {e}") from e
            xs.append(a if a.ndim == 3 else a[:, :, None])
            ys.append(ci)
    if not xs:
        raise DatasetError(f"no images ({', '.join(sorted(EXTS))}) found under {base}")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    y = torch.tensor(ys)
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[int]] = {"train": [], "t": [], "c1": [], "c2": []}
    for ci in range(len(classes)):
        idx = torch.nonzero(y == ci).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        nt, nc = int(len(idx) * test_fraction), int(len(idx) * calib_fraction)
        parts["t"] += idx[:nt]
        parts["c1"] += idx[nt: nt + nc // 2]
        parts["c2"] += idx[nt + nc // 2: nt + nc]
        parts["train"] += idx[nt + nc:]
    if train_limit is not None:
        parts["train"] = parts["train"][:train_limit]
    full = TensorSplit(x, y)
    pre = {"kind": "image", "color": color, "size": list(size), "scale": 1 / 255.0,
           "mean": [float(v) for v in mean], "std": [float(v) for v in std], "invert": False}
    return Dataset(train=full.subset(torch.tensor(parts["train"]), "train"),
                   calib_temp=full.subset(torch.tensor(parts["c1"]), "calib_temp"),
                   calib_thr=full.subset(torch.tensor(parts["c2"]), "calib_thr"),
                   test=full.subset(torch.tensor(parts["t"]), "test"), labels=classes, preprocess=pre,
                   layout="NCHW", task="image_classification", augment="shift_flip")
