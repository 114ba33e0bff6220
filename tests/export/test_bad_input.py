"""Bad input: clear message, non-zero exit, no half-written bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ee_export.cli import main  # noqa: E402
from edge_ee_export.errors import UsageError, VerificationError  # noqa: E402

from edge_ee.errors import ExitCode  # noqa: E402


def _cli(args: list[str], tmp: Path) -> int:
    return main([*args, "--cache", str(tmp / "cache"), "--no-progress", "--threads", "1"])


def _no_leftovers(parent: Path) -> None:
    assert not [p for p in parent.iterdir() if p.name.startswith((".out.partial-", ".out.old-"))]
    assert not (parent / "out").exists()


def test_bad_split_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _cli(["fashion-mnist", "--epochs", "1", "--train-limit", "50", "--splits", "stack9", "--out",
               str(tmp_path / "out")], tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "split point 'stack9' is not a module" in err and "stack1" in err
    _no_leftovers(tmp_path)


def test_unclean_split_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _cli(["fashion-mnist", "--epochs", "1", "--train-limit", "50", "--splits", "stack2.conv1", "--out",
               str(tmp_path / "out")], tmp_path)
    assert rc == 2
    assert "not a clean cut" in capsys.readouterr().err
    _no_leftovers(tmp_path)


def test_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _cli(["fashion-mnist", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")], tmp_path)
    assert rc == ExitCode.DATASET
    assert "sudo apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    _no_leftovers(tmp_path)


def test_espeak_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    rc = _cli(["kws", "--epochs", "1", "--train-limit", "20", "--out", str(tmp_path / "out")], tmp_path)
    assert rc == ExitCode.DATASET
    err = capsys.readouterr().err
    assert "espeak-ng is not installed" in err and "apt-get install espeak-ng" in err
    _no_leftovers(tmp_path)


class Probabilities(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.body(x).mean((2, 3))), 1)


class FeatureMap(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TupleOut(FeatureMap):
    def forward(self, x: torch.Tensor):  # type: ignore[override]
        y = self.body(x).mean((2, 3))
        return y, y


@pytest.mark.parametrize("model,msg", [(Probabilities(), "probabilities"), (FeatureMap(), "logits must be"),
                                       (TupleOut(), "not a logits tensor")])
def test_non_logit_output(model: torch.nn.Module, msg: str) -> None:
    from edge_ee_export.attach import attach_exits

    with pytest.raises(UsageError, match=msg):
        attach_exits(model, ["body"], torch.randn(2, 1, 8, 8))


def test_onnx_mismatch_fails_and_leaves_nothing(fm_export, fm_data, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ee_export import api, onnx_export

    ee, _ = fm_export
    cal = api.calibrate(ee, fm_data)
    real = onnx_export._torch_outputs

    def skewed(model, x):  # PyTorch "disagrees" with the ONNX graphs by 0.01 on exit 1
        outs = real(model, x)
        outs[1] = (outs[1][0] + 0.01, outs[1][1])
        return outs

    monkeypatch.setattr(onnx_export, "_torch_outputs", skewed)
    with pytest.raises(VerificationError, match="mismatch at exit 1"):
        api.export(ee, cal, fm_data, tmp_path / "out")
    _no_leftovers(tmp_path)
    # an existing bundle is left untouched by a failed export
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    with pytest.raises(VerificationError):
        api.export(ee, cal, fm_data, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_mismatch_exit_code(fm_export, fm_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from edge_ee_export import onnx_export

    real = onnx_export._torch_outputs

    def skewed(model, x):
        outs = real(model, x)
        return [(lg + 0.5, c) for lg, c in outs]

    monkeypatch.setattr(onnx_export, "_torch_outputs", skewed)
    rc = _cli(["fashion-mnist", "--epochs", "1", "--train-limit", "100", "--out", str(tmp_path / "out")], tmp_path)
    assert rc == ExitCode.VERIFICATION
    assert "ONNX/PyTorch mismatch" in capsys.readouterr().err
    _no_leftovers(tmp_path)
