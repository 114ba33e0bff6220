"""Built-in backbones in the shapes used by MLPerf Tiny.

* :func:`resnet8` - ResNet-8 (image classification, MLPerf Tiny CIFAR-10 shape: 16/32/64 channels).
* :func:`resnet8_wide` - ResNet-8 at 4x width (64/128/256 channels, ~16x the MACs): a millisecond-scale
  model for benchmarking budget control, where a 0.1 ms model would drown in Python-level jitter.
* :func:`dscnn` - DS-CNN (keyword spotting, MLPerf Tiny shape: 64 channels, 4 depthwise-separable blocks).
* :func:`mobilenet_v1` - MobileNetV1 with width multiplier 0.25 (MLPerf Tiny visual wake words shape).

Every model ends in a classifier that returns logits ``[N, num_classes]``. Module paths are stable
(``stem``, ``stack1`` ... ``classifier``) so they can be named as exit split points. Each entry of
:data:`RECIPES` names the default split points for the built-in exits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int | tuple[int, int], stride: int | tuple[int, int] = 1,
             groups: int = 1, padding: int | tuple[int, int] | None = None) -> nn.Sequential:
    if padding is None:
        padding = (k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=False),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or strided 1x1) shortcut, as in MLPerf Tiny ResNet-8."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class Classifier(nn.Module):
    """Global average pooling, flatten, linear: the final classifier of every zoo model."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


class ResNet8(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        a, b, c = width
        self.stem = _conv_bn(in_channels, a, 3)
        self.stack1 = ResidualBlock(a, a, 1)
        self.stack2 = ResidualBlock(a, b, 2)
        self.stack3 = ResidualBlock(b, c, 2)
        self.classifier = Classifier(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stack3(self.stack2(self.stack1(self.stem(x)))))


class DSBlock(nn.Module):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = _conv_bn(cin, cin, 3, stride=stride, groups=cin)
        self.pw = _conv_bn(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DSCNN(nn.Module):
    """MLPerf Tiny DS-CNN for keyword spotting; input ``[N, 1, 49, 10]`` (time x MFCC)."""

    def __init__(self, num_classes: int = 12, channels: int = 64, blocks: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )
        for i in range(1, blocks + 1):
            self.add_module(f"block{i}", DSBlock(channels, channels))
        self.blocks = blocks
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return self.classifier(x)


class MobileNetV1(nn.Module):
    """MobileNetV1 (alpha = 0.25 by default), MLPerf Tiny visual-wake-words shape (96x96 RGB)."""

    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, in_channels: int = 3, num_classes: int = 2, alpha: float = 0.25) -> None:
        super().__init__()
        c = max(8, int(32 * alpha))
        self.stem = _conv_bn(in_channels, c, 3, stride=2)
        for i, (out, s) in enumerate(self.CFG, start=1):
            o = max(8, int(out * alpha))
            self.add_module(f"block{i}", DSBlock(c, o, s))
            c = o
        self.classifier = Classifier(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, len(self.CFG) + 1):
            x = getattr(self, f"block{i}")(x)
        return self.classifier(x)


def resnet8(num_classes: int = 10, in_channels: int = 1) -> ResNet8:
    return ResNet8(in_channels=in_channels, num_classes=num_classes)


def resnet8_wide(num_classes: int = 10, in_channels: int = 1) -> ResNet8:
    return ResNet8(in_channels=in_channels, num_classes=num_classes, width=(64, 128, 256))


def dscnn(num_classes: int = 12) -> DSCNN:
    return DSCNN(num_classes=num_classes)


def mobilenet_v1(num_classes: int = 2, in_channels: int = 3, alpha: float = 0.25) -> MobileNetV1:
    return MobileNetV1(in_channels=in_channels, num_classes=num_classes, alpha=alpha)


@dataclass
class Recipe:
    """Default exit placement for a built-in model."""

    build: Callable[..., nn.Module]
    splits: list[str]
    final_split: str
    head: str
    head_kw: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    # exits after the stem (~1 % of the MACs) and after stage 1 (~40 %), as T-RecX/SDN place them early
    "resnet8": Recipe(resnet8, ["stem", "stack1"], "stack3", "conv_conf"),
    # three exits (stem ~0.3 %, stack1 ~40 %, stack2 ~70 % of the MACs): finer steps for a budget controller
    "resnet8_wide": Recipe(resnet8_wide, ["stem", "stack1", "stack2"], "stack3", "conv_conf"),
    # T-RecX-style depthwise-separable heads: a conv head on 64x25x5 features would cost ~40 % of DS-CNN
    "dscnn": Recipe(dscnn, ["block1", "block2"], "block4", "dws_conf", {"head_width": 32, "max_spatial": 5}),
    "mobilenet_v1": Recipe(mobilenet_v1, ["block3", "block7"], "block13", "dws"),
}
ARCHS = tuple(RECIPES)
