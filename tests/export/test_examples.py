"""The torchvision example exports a model with user-named split points (local stand-in model)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from export_torchvision import build_model, export_model  # noqa: E402

from edge_ee.core.bundle import load_bundle  # noqa: E402


def test_export_torchvision_style(tmp_path: Path) -> None:
    from edge_ee_export import api

    g = torch.Generator().manual_seed(0)
    n = 600  # 60 threshold-calibration frames: enough for the guarantee machinery to run
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.3
    for c in range(3):  # a learnable pattern: class c brightens channel c
        x[y == c, c] += 1.0
    data = api.dataset_from_tensors(x, y, ["r", "g", "b"], preprocess={"kind": "none"})
    torch.manual_seed(0)
    model = build_model(num_classes=3, local_width=8)
    out = export_model(model, data, tmp_path / "tv", ["layer1", "layer2"], "layer4", exit_epochs=1,
                       backbone_epochs=1)
    m = load_bundle(out).manifest
    assert [s.head.stats["split_point"] for s in m.stages] == ["layer1", "layer2", "layer4"]  # type: ignore[union-attr]
