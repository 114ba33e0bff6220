"""Export a torchvision ResNet-18 (your own weights) as an early-exit bundle, split where you say.

    python examples/export_torchvision.py --weights resnet18_mine.pt --data IMAGES/ --size 96 96 \
        --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --splits layer1,layer2 --final-split layer4 --out my_bundle

``--data`` is an image folder with one sub-folder per class, read and preprocessed exactly as the runtime does
(``edge_ee.pipeline.preprocess``: centre crop, resize). Without ``--weights`` the model is trained briefly first
(demo only; mean/std are then measured on the images); with them, ``--mean/--std`` are the normalisation it was
trained with. ``--color gray`` builds a 1-channel model for grayscale data. The split points are module paths of
the model (``edge-ee-export inspect --model examples/export_torchvision.py:inspect_model --input 3,96,96`` lists
them); the cut after each must be clean (e.g. a whole ``layerN``, not a conv inside a residual block). ``--calib``
frames are held out for calibration: the thresholds carry a guarantee (accuracy drop <= ``--target-drop`` with
probability ``--confidence``) only with enough of them; the run says how many would be needed when it cannot
certify one.
Without torchvision (or with one that does not load beside this torch), the run says so and a locally defined model
with the same module paths (conv1/bn1/relu/maxpool/layer1..layer4/avgpool/fc) stands in.
"""

from __future__ import annotations

import argparse
import sys
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


def build_model(num_classes: int, weights: str | None = None, local_width: int = 64, in_channels: int = 3,
                quiet: bool = True) -> nn.Module:
    try:
        from torchvision.models import resnet18

        model: nn.Module = resnet18(num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)  # type: ignore[assignment]
    except Exception as e:  # noqa: BLE001 - torchvision missing or not importable beside this torch
        if not quiet:
            print(f"torchvision is not usable here ({type(e).__name__}: {str(e).splitlines()[0][:120]}); using the "
                  f"local ResNet-18 with the same module paths (width {local_width})", file=sys.stderr)
        model = LocalResNet(num_classes=num_classes, width=local_width, in_channels=in_channels)
    if weights:
        from edge_ee_export.onnx_import import load_weights

        load_weights(model, weights)  # clear errors for a file that does not fit
    return model


def inspect_model() -> nn.Module:
    """For ``edge-ee-export inspect --model examples/export_torchvision.py:inspect_model``."""
    return build_model(1000)


def export_model(model: nn.Module, data: api.Dataset, out: str | Path, splits: list[str], final_split: str,
                 head: str = "conv_conf", exit_epochs: int = 5, backbone_epochs: int = 0,
                 target_drop: float = 0.01, confidence: float = 0.9, progress: bool = False) -> Path:
    if backbone_epochs:
        api.train_backbone(model, data, epochs=backbone_epochs, lr=0.05, progress=progress)
    ee = api.attach_exits(model, splits, data.train.x[:2], final_split=final_split, head=head,
                          num_classes=len(data.labels))
    api.train(ee, data, method="pteenet", epochs=exit_epochs, progress=progress)
    cal = api.calibrate(ee, data, target_drop=target_drop, confidence=confidence)
    g = cal.get("guarantee")
    if progress:
        print(f"calibrated on {len(data.calib_thr)} frames: early exit {100 * cal['chosen']['accuracy']:.2f}% vs full "
              f"{100 * cal['full_accuracy']:.2f}% at {100 * cal['chosen']['macs_ratio']:.1f}% of the MACs; "
              + ("guarantee certified" if g and g.get("certified") else
                 f"no guarantee certified (about {g.get('frames_needed')} calibration frames would be needed: "
                 "raise --calib)" if g and g.get("frames_needed") else "no guarantee"), file=sys.stderr)
    return api.export(ee, cal, data, out, name="resnet18-ee", description=f"ResNet-18, exits after {splits}",
                      command="examples/export_torchvision.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="image folder, one sub-folder per class")
    p.add_argument("--weights", default=None, help="state_dict of your resnet18 (num_classes = folders)")
    p.add_argument("--size", type=int, nargs=2, default=[96, 96])
    p.add_argument("--color", choices=["rgb", "gray"], default="rgb", help="gray: a 1-channel model")
    p.add_argument("--mean", default=None, help="per-channel mean on [0, 1] (required with --weights)")
    p.add_argument("--std", default=None, help="per-channel std (required with --weights)")
    p.add_argument("--splits", default="layer1,layer2")
    p.add_argument("--final-split", default="layer4")
    p.add_argument("--epochs", type=int, default=5, help="exit training epochs")
    p.add_argument("--calib", type=int, default=6000, help="calibration frames (half for the thresholds)")
    p.add_argument("--target-drop", type=float, default=0.01)
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    from edge_ee_export.byom import floats
    from edge_ee_export.data import image_folder

    if a.threads:
        torch.set_num_threads(a.threads)
    mean, std = floats("--mean", a.mean), floats("--std", a.std)
    if a.weights and (mean is None or std is None):
        sys.exit("export_torchvision.py: --mean and --std are required with --weights (the normalisation the model "
                 "was trained with, e.g. 0.485,0.456,0.406 / 0.229,0.224,0.225)")
    if not a.no_progress:
        print(f"reading {a.data} ...", file=sys.stderr)
    data = image_folder.load(a.data, size=tuple(a.size), color=a.color, mean=mean, std=std, calib=a.calib)
    if not a.no_progress:
        print(f"data: {data.sizes()}", file=sys.stderr)
    model = build_model(len(data.labels), a.weights, in_channels=1 if a.color == "gray" else 3,
                        quiet=a.no_progress)
    out = export_model(model, data, a.out, a.splits.split(","), a.final_split, exit_epochs=a.epochs,
                       backbone_epochs=0 if a.weights else 5, target_drop=a.target_drop, confidence=a.confidence,
                       progress=not a.no_progress)
    print(out)


if __name__ == "__main__":
    main()
