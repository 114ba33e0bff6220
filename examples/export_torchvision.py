"""Export a torchvision ResNet-18 (your own weights) as an early-exit bundle, split where you say.

    python examples/export_torchvision.py --weights resnet18_mine.pt --data IMAGES/ --size 96 96 \
        --splits layer1,layer2 --final-split layer4 --out my_bundle

``--data`` is an image folder with one sub-folder per class. Without ``--weights`` the model is
trained briefly first (demo only). The split points are module paths of the model (see
``print(model)``); the cut after each must be clean (e.g. a whole ``layerN``, not a conv inside a
residual block). Without torchvision installed, a locally defined model with the same module paths
(conv1/bn1/relu/maxpool/layer1..layer4/avgpool/fc) stands in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from edge_ee_export import api
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class LocalResNet(nn.Module):
    """Same module paths as ``torchvision.models.resnet18`` (narrower: ``width`` channels first)."""

    def __init__(self, num_classes: int = 1000, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, w, 1))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w, 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(num_classes: int, weights: str | None = None, local_width: int = 64) -> nn.Module:
    try:
        from torchvision.models import resnet18

        model: nn.Module = resnet18(num_classes=num_classes)
    except Exception:  # noqa: BLE001 - torchvision missing or not importable beside this torch
        model = LocalResNet(num_classes=num_classes, width=local_width)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def export_model(model: nn.Module, data: api.Dataset, out: str | Path, splits: list[str], final_split: str,
                 head: str = "conv_conf", exit_epochs: int = 5, backbone_epochs: int = 0,
                 target_drop: float = 0.01) -> Path:
    if backbone_epochs:
        api.train_backbone(model, data, epochs=backbone_epochs, lr=0.05, progress=False)
    ee = api.attach_exits(model, splits, data.train.x[:2], final_split=final_split, head=head,
                          num_classes=len(data.labels))
    api.train(ee, data, method="pteenet", epochs=exit_epochs, progress=False)
    cal = api.calibrate(ee, data, target_drop=target_drop)
    return api.export(ee, cal, data, out, name="resnet18-ee", description=f"ResNet-18, exits after {splits}",
                      command="examples/export_torchvision.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="image folder, one sub-folder per class")
    p.add_argument("--weights", default=None, help="state_dict of your resnet18 (num_classes = folders)")
    p.add_argument("--size", type=int, nargs=2, default=[96, 96])
    p.add_argument("--splits", default="layer1,layer2")
    p.add_argument("--final-split", default="layer4")
    p.add_argument("--epochs", type=int, default=5, help="exit training epochs")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    from edge_ee_export.data import image_folder

    data = image_folder.load(a.data, size=tuple(a.size))
    model = build_model(len(data.labels), a.weights)
    out = export_model(model, data, a.out, a.splits.split(","), a.final_split, exit_epochs=a.epochs,
                       backbone_epochs=0 if a.weights else 5)
    print(out)


if __name__ == "__main__":
    main()
