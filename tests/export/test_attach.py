"""Attaching exits: split by module path, MACs, placement, heads, torchvision-style models."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ee_export.attach import attach_exits, count_macs, make_head, place_splits, split_model  # noqa: E402
from edge_ee_export.errors import UsageError  # noqa: E402
from edge_ee_export.zoo import RECIPES, dscnn, mobilenet_v1, resnet8  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from export_torchvision import LocalResNet, build_model  # noqa: E402


def test_split_reproduces_model() -> None:
    m = resnet8().eval()
    x = torch.randn(3, 1, 28, 28)
    pieces = split_model(m, ["stem", "stack1", "stack3"])
    y = x
    for p in pieces:
        y = p(y)
    torch.testing.assert_close(y, m(x))


def test_macs_known_values() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, torch.randn(1, 3, 10, 10)) == 10 * 10 * 8 * 3 * 9
    dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, torch.randn(1, 8, 5, 5)) == 5 * 5 * 8 * 9
    assert count_macs(torch.nn.Linear(16, 4), torch.randn(1, 16)) == 64
    # MLPerf Tiny shapes: DS-CNN ~2.7 M MACs, MobileNetV1-0.25 at 96x96 ~7.5 M
    assert 2.4e6 < count_macs(dscnn(), torch.randn(1, 1, 49, 10)) < 3.0e6
    assert 7.0e6 < count_macs(mobilenet_v1(), torch.randn(1, 3, 96, 96)) < 8.0e6


def test_costs_add_up_and_heads_are_measured() -> None:
    m = resnet8()
    x = torch.randn(2, 1, 28, 28)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ee = attach_exits(m, ["stem", "stack1"], x, final_split="stack3", head="conv_conf")
    assert any("costs" in str(i.message) for i in w)  # the head after the tiny stem is flagged
    ct = ee.cost_table()
    assert sum(ct["segment_macs"]) + ct["head_macs"][-1] == count_macs(m, x) == ct["full_macs"]
    assert all(h > 0 for h in ct["head_macs"])


INPUTS = {"resnet8": (1, 1, 28, 28), "resnet8_wide": (1, 1, 28, 28), "dscnn": (1, 1, 49, 10),
          "mobilenet_v1": (1, 3, 96, 96)}


@pytest.mark.parametrize("arch", sorted(RECIPES))
def test_recipes_split_where_they_say(arch: str) -> None:
    """Every built-in recipe's split points exist and cut the model into stages of rising cost."""
    r = RECIPES[arch]
    m = r.build().eval()
    x = torch.randn(*INPUTS[arch])
    pieces = split_model(m, [*r.splits, r.final_split])
    assert len(pieces) == len(r.splits) + 2
    y = x
    cum = []
    for p in pieces[:-1]:
        cum.append((cum[-1] if cum else 0) + count_macs(p, y))
        y = p(y)
    assert cum == sorted(cum) and cum[-1] <= count_macs(m, x)
    if arch == "resnet8_wide":  # ~16x ResNet-8, exits at ~0.3 %, ~40 %, ~70 % of the MACs
        full = count_macs(m, x)
        assert 14 * count_macs(resnet8(), x) < full < 18 * count_macs(resnet8(), x)
        assert [round(c / full, 1) for c in cum[:3]] == [0.0, 0.4, 0.7]


def test_place_splits_by_mac_fraction() -> None:
    m = resnet8()
    assert place_splits(m, torch.randn(1, 1, 28, 28), [0.4, 0.7]) == ["stack1", "stack2"]


@pytest.mark.parametrize("family", ["pool_linear", "dws", "conv", "pool_linear_conf", "dws_conf", "conv_conf"])
def test_head_families(family: str) -> None:
    h = make_head(family, torch.Size([1, 16, 14, 14]), 5)
    out = h(torch.randn(2, 16, 14, 14))
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 5)
    if family.endswith("_conf"):
        assert out[1].shape == (2, 1) and bool(((out[1] > 0) & (out[1] < 1)).all())


def test_unknown_head_and_wrong_order() -> None:
    with pytest.raises(UsageError, match="unknown exit head"):
        make_head("huge", torch.Size([1, 4, 4, 4]), 3)
    with pytest.raises(UsageError, match="execution order"):
        split_model(resnet8(), ["stack2", "stack1"])


def test_torchvision_style_model_split_points() -> None:
    m = build_model(num_classes=4, local_width=8)
    x = torch.randn(2, 3, 64, 64)
    ee = attach_exits(m, ["layer1", "layer2"], x, final_split="layer4", head="dws")
    ee.eval()
    with torch.no_grad():
        torch.testing.assert_close(ee(x)[-1][0], m.eval()(x))
    with pytest.raises(UsageError, match="not a clean cut"):
        attach_exits(LocalResNet(4, 8), ["layer1.0.conv1"], x)
