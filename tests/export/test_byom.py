"""Bring your own model: an ONNX classifier or a PyTorch module the project did not define, the deploy-time
preprocessing rule in training, and clear errors (nothing written) for models and data that do not fit."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
if importlib.util.find_spec("onnx2torch") is None:  # imported through edge_ee_export.onnx_import (torchvision stand-in)
    pytest.skip("onnx2torch is not installed (make test installs it)", allow_module_level=True)
cv2 = pytest.importorskip("cv2")

from typer.testing import CliRunner  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import byom_fixtures as bf  # noqa: E402
from edge_ee_export.cli import main  # noqa: E402

from edge_ee.commands import app  # noqa: E402
from edge_ee.errors import ExitCode  # noqa: E402

NORM = ["--mean", ",".join(map(str, bf.MEAN)), "--std", ",".join(map(str, bf.STD))]
FIXTURES = Path(__file__).parent / "byom_fixtures.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("byom")
    root = bf.make_image_folder(d / "images")
    torch.set_num_threads(1)
    model = bf.train_small(root)
    torch.save(model.state_dict(), d / "small.pt")
    return {"dir": d, "images": root, "onnx": bf.to_onnx(model, d / "small.onnx"), "weights": d / "small.pt"}


def _onnx(args: list[str]) -> int:
    return main(["onnx", *args, "--exit-epochs", "1", "--no-progress", "--threads", "1"])


def _nothing_written(parent: Path) -> None:
    assert not (parent / "out").exists()
    assert not [p for p in parent.iterdir() if p.name.startswith((".out.partial-", ".out.old-"))]


def test_inspect_lists_cut_points(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(trained["onnx"])]) == 0
    out = capsys.readouterr().out
    assert "layer1/" in out and "layer2/" in out and "default final split" in out and "%" in out
    assert main(["inspect", "--model", f"{FIXTURES}:build", "--input", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "\nlayer1 " in out and "\nstem " in out


def test_onnx_model_to_bundle(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert _onnx([str(trained["onnx"]), "--data", str(trained["images"]), *NORM, "--exits", "layer1",
                  "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    pre = m["input"]["preprocess"]
    assert pre["crop"] == "center" and pre["mean"] == bf.MEAN and pre["std"] == bf.STD and pre["size"] == [32, 32]
    par = m["producer"]["check"]["parity_with_source_onnx"]
    assert par["max_abs_diff"] < 1e-3 and par["bundle_accuracy"] == par["original_accuracy"] > 0.9
    assert m["producer"]["source_model"]["kind"] == "onnx" and len(m["producer"]["source_model"]["sha256"]) == 64

    # the runtime's preprocessing on labelled images agrees with what the manifest records
    r = CliRunner().invoke(app, ["validate", str(out), "--data", str(trained["images"]), "--per-class", "10"])
    assert r.exit_code == 0, r.output
    assert "30 labelled images of 3 classes" in r.output


def test_wrong_preprocessing_is_caught_by_validate(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert _onnx([str(trained["onnx"]), "--data", str(trained["images"]), *NORM, "--exits", "0.3",
                  "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    m["input"]["preprocess"]["invert"] = True
    m["input"]["preprocess"]["mean"] = [5.0, 5.0, 5.0]
    (out / "manifest.json").write_text(json.dumps(m))
    r = CliRunner().invoke(app, ["validate", str(out), "--data", str(trained["images"]), "--per-class", "10"])
    assert r.exit_code == 3, r.output
    assert "far below" in r.output


def test_center_crop_as_at_run_time(tmp_path: Path) -> None:
    """A wide photo is cropped to the centre (as the runtime does), not squashed."""
    from edge_ee_export.data import image_folder

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        img = np.zeros((40, 80, 3), np.uint8)
        img[:, :20] = img[:, 60:] = 255  # white only outside the centre square
        cv2.imwrite(str(tmp_path / c / "x.png"), img)
    x, y = image_folder.read_images(tmp_path, ["a", "b"], (16, 16), "rgb")
    assert x.shape == (2, 3, 16, 16) and float(x.max()) == 0.0


def _variant(src: Path, dst: Path, edit) -> Path:
    m = onnx.load(str(src))
    edit(m)
    onnx.save(m, str(dst))
    return dst


def _second_input(m) -> None:
    m.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1, 4]))


def _unsupported_op(m) -> None:
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    out = relu.output[0]
    relu.output[0] = out + "_raw"
    idx = list(m.graph.node).index(relu)
    m.graph.node.insert(idx + 1, onnx.helper.make_node("Shrink", [out + "_raw"], [out], lambd=0.0))


def _softmax_end(m) -> None:
    last = m.graph.node[-1]
    name = last.output[0]
    last.output[0] = name + "_logits"
    m.graph.node.append(onnx.helper.make_node("Softmax", [name + "_logits"], [name], axis=1))


@pytest.mark.parametrize("case, want, text", [
    ("two_inputs", ExitCode.MODEL, "takes 2 inputs"),
    ("dynamic_size", ExitCode.MODEL, "must be fixed"),
    ("unsupported", ExitCode.MODEL, "Shrink"),
    ("softmax", ExitCode.MODEL, "ends in Softmax"),
    ("features", ExitCode.MODEL, "not a classifier"),
    ("not_onnx", ExitCode.MODEL, "not an ONNX model"),
    ("bad_exit", 2, "exit 'layer9'"),
    ("no_mean", 2, "--mean and --std are required"),
    ("classes", ExitCode.DATASET, "3 outputs but"),
    ("class_order", ExitCode.DATASET, "class order does not match"),
])
def test_onnx_bad_input(trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
                        want: int, text: str) -> None:
    src, images, args = trained["onnx"], trained["images"], list(NORM)
    if case == "two_inputs":
        src = _variant(src, tmp_path / "m.onnx", _second_input)
    elif case == "dynamic_size":
        src = tmp_path / "m.onnx"
        torch.onnx.export(bf.SmallNet(), (torch.zeros(1, 3, 32, 32),), str(src), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    elif case == "unsupported":
        src = _variant(src, tmp_path / "m.onnx", _unsupported_op)
    elif case == "softmax":
        src = _variant(src, tmp_path / "m.onnx", _softmax_end)
    elif case == "features":
        src = bf.to_onnx(bf.SmallNet().stem.eval(), tmp_path / "m.onnx")
    elif case == "not_onnx":
        src = tmp_path / "m.onnx"
        src.write_text("not a model")
    elif case == "bad_exit":
        args += ["--exits", "layer9"]
    elif case == "no_mean":
        args = []
    elif case == "classes":
        images = tmp_path / "two"
        for c in bf.CLASSES[:2]:
            shutil.copytree(trained["images"] / c, images / c)
    elif case == "class_order":  # the same images under each other's names
        images = tmp_path / "swapped"
        for a, b in zip(bf.CLASSES, bf.CLASSES[1:] + bf.CLASSES[:1]):
            shutil.copytree(trained["images"] / a, images / b)
    rc = _onnx([str(src), "--data", str(images), *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == want, err
    assert text in err and "Traceback" not in err
    _nothing_written(tmp_path)


def test_pytorch_module_with_weights(trained: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["image-folder", "--data", str(trained["images"]), "--size", "32", "32", "--model", f"{FIXTURES}:build",
            "--exit-epochs", "1", "--no-progress", "--threads", "1", "--cache", str(tmp_path / "cache")]
    out = tmp_path / "bundle"
    assert main([*base, "--weights", str(trained["weights"]), *NORM, "--splits", "layer1", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["input"]["preprocess"]["mean"] == bf.MEAN and m["producer"]["splits"] == ["layer1"]
    assert m["calibration"]["full_accuracy"] > 0.9
    # without the model's normalisation: refused, nothing written
    assert main([*base, "--weights", str(trained["weights"]), "--out", str(tmp_path / "out")]) == 2
    assert "--mean and --std are required" in capsys.readouterr().err
    # weights of another architecture
    torch.save(bf.SmallNet(5).state_dict(), tmp_path / "other.pt")
    rc = main([*base, "--weights", str(tmp_path / "other.pt"), *NORM, "--out", str(tmp_path / "out")])
    assert rc == ExitCode.MODEL
    assert "does not fit SmallNet" in capsys.readouterr().err
    _nothing_written(tmp_path)


def test_onnx_where_a_module_or_bundle_is_expected(trained: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from edge_ee_export import api
    from edge_ee_export.errors import UsageError

    with pytest.raises(UsageError, match="load_onnx"):
        api.attach_exits(onnx.load(str(trained["onnx"])), ["layer1"], torch.zeros(2, 3, 32, 32))
    r = CliRunner().invoke(app, ["validate", str(trained["onnx"])])
    assert r.exit_code == 3 and "edge-ee-export onnx" in r.output
    rc = main(["image-folder", "--data", str(trained["images"]), "--pretrained", str(trained["onnx"]), "--out",
               str(tmp_path / "out"), "--no-progress"])
    assert rc == 2 and "edge-ee-export onnx" in capsys.readouterr().err
    _nothing_written(tmp_path)


@pytest.mark.parametrize("cmd", ["onnx", "inspect", "image-folder"])
def test_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out.lower()
