"""CLI commands and exit codes, run as real subprocesses (what a user sees)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factory import edit_manifest

from edge_ee.errors import ExitCode

CLI = [sys.executable, "-m", "edge_ee"]


def ee(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def test_version_and_help() -> None:
    r = ee("--version")
    assert r.returncode == 0 and "edge-ee" in r.stdout
    r = ee("--help")
    assert r.returncode == 0 and "run" in r.stdout


def test_info(bundle: Path) -> None:
    r = ee("info", "--model", bundle)
    assert r.returncode == 0, r.stderr
    assert "test-3stage" in r.stdout and "max_softmax" in r.stdout and "final" in r.stdout
    d = json.loads(ee("info", "--model", bundle, "--json").stdout)
    assert d["name"] == "test-3stage" and len(d["stages"]) == 3
    assert d["stages"][2]["cumulative_macs"] >= d["full_model_macs"]


def test_info_embedded_default() -> None:
    r = ee("info", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["embedded"] and d["task"] == "image_classification"


def test_validate_ok_and_bad(bundle: Path) -> None:
    r = ee("validate", bundle)
    assert r.returncode == 0 and "valid" in r.stdout
    with open(bundle / "segment2.onnx", "ab") as f:
        f.write(b"x")
    r = ee("validate", bundle)
    assert r.returncode == ExitCode.BUNDLE
    assert "checksum mismatch" in r.stderr and "Traceback" not in r.stderr


def test_corrupt_manifest_exit_code(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("{oops")
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "3")
    assert r.returncode == ExitCode.BUNDLE
    assert "corrupt JSON" in r.stderr and "Traceback" not in r.stderr


def test_run_synthetic_with_log(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    summ = tmp_path / "s.json"
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "50", "--budget", "50ms", "--log", log,
           "--summary-json", summ, "-q")
    assert r.returncode == 0, r.stderr
    assert "frames: 50" in r.stdout and "deadline hit rate" in r.stdout and "MACs" in r.stdout
    lines = log.read_text().splitlines()
    assert len(lines) == 50
    rec = json.loads(lines[0])
    for key in ("ts", "frame", "exit", "label", "confidence", "segment_ms", "total_ms", "budget",
                "deadline_met", "energy_mj", "thresholds", "macs"):
        assert key in rec
    assert rec["budget"] == "50ms"
    assert rec["power_source"] is not None and isinstance(rec["energy_estimated"], bool)  # energy by default
    s = json.loads(summ.read_text())
    assert s["frames"] == 50 and sum(s["exits"]) == 50


def test_run_modes_and_thresholds(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "10", "--mode", "full", "--log", log, "-q")
    assert r.returncode == 0
    assert {json.loads(x)["exit"] for x in log.read_text().splitlines()} == {2}
    log.unlink()
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "10", "--thresholds", "0", "--log", log, "-q")
    assert r.returncode == 0
    assert {json.loads(x)["exit"] for x in log.read_text().splitlines()} == {0}
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "5", "--mode", "exit-at", "--exit-at", "1", "-q")
    assert r.returncode == 0 and "exit1: 5" in r.stdout


@pytest.mark.parametrize("args, code, needle", [
    (["--budget", "20 parsecs"], ExitCode.USAGE, "unknown budget unit"),
    (["--budget", "fast"], ExitCode.USAGE, "cannot parse budget"),
    (["--thresholds", "0.5,0.5,0.5"], ExitCode.USAGE, "2 early exits"),
    (["--mode", "exit-at"], ExitCode.USAGE, "--exit-at"),
    (["--mode", "weird"], ExitCode.USAGE, "--mode"),
])
def test_run_usage_errors(bundle: Path, args: list[str], code: int, needle: str) -> None:
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "3", *args)
    assert r.returncode == code, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("source, needle", [
    ("video:/nonexistent.mp4", "no such file"),
    ("images:/nonexistent/*.png", "no image files"),
])
def test_run_source_errors(bundle: Path, source: str, needle: str) -> None:
    r = ee("run", "--model", bundle, "-s", source)
    assert r.returncode == ExitCode.SOURCE
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_unknown_source_is_usage_error(bundle: Path) -> None:
    r = ee("run", "--model", bundle, "-s", "carrier-pigeon")
    assert r.returncode == ExitCode.USAGE and "unknown source" in r.stderr


def test_missing_bundle(tmp_path: Path) -> None:
    r = ee("info", "--model", tmp_path / "nope")
    assert r.returncode == ExitCode.BUNDLE and "not a directory" in r.stderr


def test_missing_onnx_file(bundle: Path) -> None:
    (bundle / "exit0.onnx").unlink()
    r = ee("validate", bundle)
    assert r.returncode == ExitCode.BUNDLE and "missing" in r.stderr


def test_unwritable_log_is_output_error(bundle: Path, tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    (d / "log.jsonl").mkdir()  # a directory where the file should be: cannot open for append, even as root
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "3", "--log", d / "log.jsonl")
    assert r.returncode == ExitCode.OUTPUT and "cannot open telemetry log" in r.stderr


def test_unreadable_image_mid_stream_keeps_telemetry(bundle: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"a{i}.png"), np.full((28, 28), 40 * i, np.uint8))
    (imgs / "z_broken.png").write_bytes(b"not a png")
    log = tmp_path / "t.jsonl"
    r = ee("run", "--model", bundle, "-s", f"images:{imgs}", "--log", log, "-q", "--strict")
    assert r.returncode == ExitCode.SOURCE and "z_broken.png" in r.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)
    assert "work done so far" in r.stderr
    # without --strict the unreadable image is skipped with a warning and counted as a dropped frame
    log.unlink()
    r = ee("run", "--model", bundle, "-s", f"images:{imgs}", "--log", log, "-q")
    assert r.returncode == 0 and "z_broken.png" in r.stderr and "skipped" in r.stderr
    assert "dropped frames: 1" in r.stdout and "Traceback" not in r.stderr
    assert len(log.read_text().splitlines()) == 3


def test_sigterm_mid_run_exits_cleanly(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    p = subprocess.Popen([*CLI, "run", "--model", str(bundle), "-s", "synthetic", "--fps", "200",
                          "--log", str(log), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and (not log.exists() or log.stat().st_size < 2000):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "frames:" in out
    raw = log.read_text()
    assert raw.endswith("\n")
    n = len([json.loads(x) for x in raw.splitlines()])
    assert f"frames: {n}" in out


def test_import_without_torch(tmp_path: Path) -> None:
    """The runtime must work where torch is not installed: block it and run an inference."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'edge_ee_export'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import edge_ee, edge_ee.commands, edge_ee.pipeline.runner, edge_ee.sources, edge_ee.pipeline.preprocess\n"
        "import numpy as np\n"
        "e = edge_ee.Engine()\n"
        "r = e.infer(np.zeros(e.input_shape, np.float32))\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok', r.label)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_bundle_edit_keeps_other_fields(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(description="changed"))
    assert json.loads((bundle / "manifest.json").read_text())["description"] == "changed"


# ---- energy in every telemetry line (--power-source auto by default) ----------------------------------
def _no_sensors_env(tmp_path: Path) -> dict[str, str]:
    """A machine without any power sensor: an empty sysfs root and no vcgencmd/tegrastats on PATH."""
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "bin").mkdir(exist_ok=True)
    return {**os.environ, "EDGE_EE_SYSFS_ROOT": str(tmp_path / "root"), "PATH": str(tmp_path / "bin"),
            "XDG_STATE_HOME": str(tmp_path / "state")}


def test_run_records_estimated_energy_by_default(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "20", "--log", log, "-q",
           "--power-baseline", "0", env=_no_sensors_env(tmp_path))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(recs) == 20
    for rec in recs:
        assert rec["power_source"] == "estimate" and rec["energy_estimated"] is True
        assert rec["power_rail"] and isinstance(rec["stage_energy_mj"], list)
    # the estimate is announced once on stderr, without warnings (no sensor at all is not a problem)
    assert len([x for x in r.stderr.splitlines() if "estimat" in x.lower()]) == 1, r.stderr
    assert "WARNING" not in r.stderr


def test_run_power_source_none_switches_energy_off(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "--log", log, "-q",
           "--power-source", "none", env=_no_sensors_env(tmp_path))
    assert r.returncode == 0, r.stderr
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["energy_mj"] is None and rec["power_source"] is None
    assert "estimat" not in r.stderr.lower()


def test_run_help_documents_the_power_source_default() -> None:
    r = ee("run", "--help", env={**os.environ, "COLUMNS": "200"})
    text = " ".join(r.stdout.split())
    assert "ESTIMATE from CPU utilisation" in text and "none (no energy measurement)" in text
    assert "default: auto" in text


# ---- edge-ee profile: PNG plot by default, --labels FILE / source -------------------------------------
PROFILE_FAST = ("--frames", "60", "--warmup", "2", "--power-source", "estimate", "--power-baseline", "0")


def _block_matplotlib(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "blocked"
    (d / "matplotlib").mkdir(parents=True)
    (d / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib (blocked)')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), str(Path(__file__).resolve().parents[1])])}


def test_profile_writes_the_plot_beside_the_profile_by_default(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.json"
    r = ee("profile", "--model", bundle, "--source", "synthetic", *PROFILE_FAST, "--out", out)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "p.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert f"plot: {png}" in r.stdout
    data = json.loads(out.read_text())
    assert data["device"]["threads"] == 1 and data["device"]["providers"] == ["CPUExecutionProvider"]


def test_profile_no_plot(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = ee("profile", "--model", bundle, "--source", "synthetic", *PROFILE_FAST, "--out", out, "--no-plot")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and not (tmp_path / "p.png").exists() and "plot:" not in r.stdout
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--no-plot", "--plot", tmp_path / "x.png")
    assert r.returncode == ExitCode.USAGE and "contradict" in r.stderr


def test_profile_without_matplotlib_skips_the_plot_once(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    env = _block_matplotlib(tmp_path)
    r = ee("profile", "--model", bundle, "--source", "synthetic", *PROFILE_FAST, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("plot skipped: matplotlib not installed (pip install matplotlib)") == 1
    assert out.is_file() and not (tmp_path / "p.png").exists()
    # asking for a plot explicitly without matplotlib is a usage error, before any profiling
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--plot", tmp_path / "x.png", env=env)
    assert r.returncode == ExitCode.USAGE and "needs matplotlib" in r.stderr and "profiling" not in r.stderr


def test_profile_labels_file(bundle: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("# calibration clip\n" + "".join(f"class{i % 10}\n" if i % 2 else f"{i % 10}\n"
                                                         for i in range(12)) + "\n")
    out = tmp_path / "p.json"
    r = ee("profile", "--model", bundle, "--source", "synthetic", *PROFILE_FAST, "--labels", labels, "--out", out,
           "--no-plot", "--confidence", "none")  # 12 frames: too few for a guarantee
    assert r.returncode == 0, r.stderr
    assert f"{labels} has 12 labels: profiling stops there" in r.stderr
    p = json.loads(out.read_text())
    assert p["quality_metric"] == "accuracy" and p["inputs"] == 12 and p["measured_inputs"] == 10
    assert p["labels_file"] == str(labels)


def test_profile_bad_labels_file_fails_before_profiling(bundle: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("class1\nclass2\n\nclass42\n")
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--labels", labels)
    assert r.returncode == ExitCode.USAGE
    assert "line 4: 'class42' is not one of the bundle's labels" in r.stderr and "0=class0" in r.stderr
    assert "profiling" not in r.stderr
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--labels", tmp_path / "missing.txt")
    assert r.returncode == ExitCode.USAGE and "no such file" in r.stderr
    labels.write_text("class1\nclass2\n")
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--labels", labels, "--warmup", "5")
    assert r.returncode == ExitCode.USAGE and "warm-up" in r.stderr


def test_profile_labels_source_without_ground_truth_fails_fast(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--labels", "source", "--power-baseline", "5",
           "--out", out)
    assert r.returncode == ExitCode.USAGE
    assert "--labels source: synthetic gives no ground truth" in r.stderr and "--labels FILE" in r.stderr
    assert "idle power baseline" not in r.stderr and not out.exists()  # stopped before measuring anything
