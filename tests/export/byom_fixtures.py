"""A model the project did not define, trained on a small image folder and saved as ONNX (shared by the byom tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
CLASSES = ["circle", "columns", "rows"]


def make_image_folder(root: Path, per_class: int = 80, seed: int = 0, classes: list[str] | None = None) -> Path:
    """Non-square colour photos (48x64) of three easy patterns on noise, one sub-folder per class."""
    import cv2

    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes or CLASSES):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = (rng.random((48, 64, 3)) * 120).astype(np.uint8)
            col = tuple(int(v) for v in rng.integers(130, 256, 3))
            cx, cy, r = int(rng.integers(24, 40)), int(rng.integers(18, 30)), int(rng.integers(8, 14))
            if ci % 3 == 0:
                cv2.circle(img, (cx, cy), r, col, -1)
            elif ci % 3 == 1:
                img[:, ::6] = col
            else:
                img[::6] = col
            cv2.imwrite(str(d / f"{i:03d}.png"), img)
    return root


class SmallNet(nn.Module):
    """A torchvision-style chain: stem, two stages, pooled classifier."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                    nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                    nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


def build() -> nn.Module:
    """Factory for ``--model tests/export/byom_fixtures.py:build``."""
    return SmallNet()


def train_small(root: Path, size: tuple[int, int] = (32, 32), epochs: int = 4) -> nn.Module:
    """Train SmallNet on the folder through the runtime's preprocessing with the fixed MEAN/STD."""
    from edge_ee_export.data import image_folder

    x, y = image_folder.read_images(root, image_folder.class_folders(root), size, "rgb")
    x = (x - torch.tensor(MEAN).reshape(1, 3, 1, 1)) / torch.tensor(STD).reshape(1, 3, 1, 1)
    torch.manual_seed(0)
    model = SmallNet(len(set(y.tolist())))
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 32):
            idx = perm[i: i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def to_onnx(model: nn.Module, path: Path, shape: tuple[int, ...] = (1, 3, 32, 32), dynamic: bool = True) -> Path:
    torch.onnx.export(model, (torch.zeros(*shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None)
    return path
