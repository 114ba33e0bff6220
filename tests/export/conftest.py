"""Exporter tests: CI-sized (a few hundred samples, one epoch). Marked ``export``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the exporter is its own package (export/); make it importable even when not pip-installed
_EXPORT = Path(__file__).resolve().parents[2] / "export"
if str(_EXPORT) not in sys.path:
    sys.path.insert(0, str(_EXPORT))

FASHION = Path("/usr/share/datasets/fashion-mnist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for it in items:
        if here in Path(str(it.fspath)).parents:
            it.add_marker(pytest.mark.export)


@pytest.fixture(scope="session")
def fm_data():
    pytest.importorskip("torch")
    if not FASHION.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed (sudo apt-get install dataset-fashion-mnist)")
    from edge_ee_export.data import fashion_mnist

    return fashion_mnist.load(seed=0, calib=6000, train_limit=300, test_limit=300)


@pytest.fixture(scope="session")
def fm_export(fm_data, tmp_path_factory: pytest.TempPathFactory):
    """(EarlyExitModel, bundle path): ResNet-8 on 300 Fashion-MNIST images, one epoch, via the API."""
    import torch
    from edge_ee_export import api
    from edge_ee_export.train import set_seed
    from edge_ee_export.zoo import resnet8

    torch.set_num_threads(1)
    set_seed(0)
    model = resnet8()
    api.train_backbone(model, fm_data, epochs=1, progress=False)
    ee = api.attach_exits(model, ["stem", "stack1"], fm_data.train.x[:2], final_split="stack3", head="conv_conf")
    api.train(ee, fm_data, epochs=1, progress=False)
    cal = api.calibrate(ee, fm_data)
    out = api.export(ee, cal, fm_data, tmp_path_factory.mktemp("fm") / "bundle", name="test-fm")
    return ee, out


@pytest.fixture(scope="session")
def fm_bundle(fm_export) -> Path:
    return fm_export[1]
