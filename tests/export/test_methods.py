"""Every training method runs, keeps (or fine-tunes) the backbone as documented, and exports."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ee_export import api  # noqa: E402
from edge_ee_export.train import set_seed  # noqa: E402
from edge_ee_export.zoo import resnet8  # noqa: E402

from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402


@pytest.mark.parametrize("method,head", [("pteenet", "conv_conf"), ("sdn", "pool_linear"), ("eenet", "conv_conf"),
                                         ("trecx", "dws")])
def test_method_trains_and_exports(method: str, head: str, fm_data, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    set_seed(0)
    model = resnet8()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ee = api.attach_exits(model, ["stem", "stack1"], fm_data.train.x[:2], final_split="stack3", head=head)
    api.train(ee, fm_data, method=method, epochs=1, progress=False)
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed == (method in ("eenet", "trecx")), "frozen methods must not touch the backbone"
    assert ee.meta.early_view == (method == "trecx")
    cal = api.calibrate(ee, fm_data)
    out = api.export(ee, cal, fm_data, tmp_path / method, name=f"t-{method}")
    m = load_bundle(out).manifest
    assert m.stages[0].head is not None and (m.stages[0].head.confidence is not None) == head.endswith("_conf")
    r = Engine(str(out)).infer(fm_data.test.x[:1].numpy())
    assert 0 <= r.label_index < 10


def test_int8_quantisation_records_accuracy_change(fm_export, fm_data, tmp_path: Path) -> None:
    ee, _ = fm_export
    cal = api.calibrate(ee, fm_data)
    out = api.export(ee, cal, fm_data, tmp_path / "q", quantize=True)
    m = load_bundle(out).manifest
    q = m.calibration.extra["quantization"]
    assert "int8" in m.calibration.extra["method"] and m.calibration.guarantee is not None
    assert "adaptive_accuracy_change" in q and q["calibration_samples"] > 0
    assert len(q["int8"]["exit_accuracy"]) == 3
    assert m.producer["quantized"] is True
    Engine(str(out)).infer(fm_data.test.x[:1].numpy())
