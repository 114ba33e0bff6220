"""`edge-ee profile` then `edge-ee run` on a small bundle, as subprocesses; profile schema; mismatches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ee.errors import ExitCode

CLI = [sys.executable, "-m", "edge_ee"]


def ee(*args: object, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def profiled(bundle: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    state = tmp_path / "state"
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--frames", "120", "--warmup", "5",
           "--power-source", "estimate", "--power-baseline", "0", "--target-drop", "2%", state=state)
    assert r.returncode == 0, r.stderr
    path = bundle / "profile.json"
    assert path.is_file() and f"profile: {path}" in r.stdout
    return bundle, state, json.loads(path.read_text())


def test_profile_schema(profiled: tuple[Path, Path, dict]) -> None:
    bundle, _, p = profiled
    assert p["schema"] == "edge-ee-profile/2"
    from edge_ee.core.bundle import load_bundle

    assert p["bundle"]["hash"] == load_bundle(bundle).content_hash()
    for k in ("board", "cpu", "cores", "machine", "power_mode", "onnxruntime", "providers"):
        assert k in p["device"]
    assert p["measured_inputs"] == 120 and p["warmup_discarded"] == 5
    assert p["quality_metric"] == "agreement_with_final_exit"  # synthetic: no labels
    assert p["power"]["estimated"] is True
    assert len(p["stages"]) == 3 and len(p["exits"]) == 3
    for s in p["stages"]:
        assert set(s["segment_ms"]) == {"mean", "p50", "p95", "p99"}
        assert s["segment_ms"]["p50"] <= s["segment_ms"]["p99"]
    lat = [pt["latency_ms"] for pt in p["frontier"]]
    assert lat == sorted(lat) and len(lat) >= 2
    q = [pt["agreement"] for pt in p["frontier"]]
    assert q == sorted(q)
    c = p["chosen"]
    assert len(c["thresholds"]) == 2 and c["agreement"] >= 1.0 - 0.02 - 1e-9
    assert p["full_model"]["latency_ms"] > 0 and p["full_model"]["energy_mj"] is not None
    # energies above the idle baseline, totals beside them; per stage: segment and head
    assert p["full_model"]["energy_total_mj"] >= p["full_model"]["energy_mj"]
    assert p["power"]["baseline_w"] is not None and p["power"]["extrapolated_windows"] == 0
    for s in p["stages"]:
        assert {"segment_energy_mj", "head_energy_mj", "energy_mj", "energy_total_mj"} <= set(s)
        assert s["energy_mj"] == pytest.approx(s["segment_energy_mj"] + s["head_energy_mj"])
        assert s["energy_total_mj"] >= s["energy_mj"]
    for e in p["exits"]:
        assert {"adaptive_energy_mj", "adaptive_energy_total_mj", "exit_at_energy_mj"} <= set(e)
    assert all(pt["energy_mj"] is not None for pt in p["frontier"])


def test_run_uses_matching_profile(profiled: tuple[Path, Path, dict], tmp_path: Path) -> None:
    bundle, state, p = profiled
    log = tmp_path / "t.jsonl"
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "50", "--log", log, "-q", state=state)
    assert r.returncode == 0, r.stderr
    assert "using profile" in r.stderr
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["thresholds"] == pytest.approx(p["chosen"]["thresholds"])
    # with a budget: the controller uses the profile's frontier
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "200", "--budget", "50ms", "-q",
           "--summary-json", tmp_path / "s.json", state=state)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["controller"]["frontier_source"] == "profile"
    assert "controller: budget 50ms" in r.stdout and "risk price" in r.stdout


def test_profile_with_the_old_schema_is_refused_clearly(profiled: tuple[Path, Path, dict], tmp_path: Path) -> None:
    bundle, state, p = profiled
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(p, schema="edge-ee-profile/1")))
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "-q", "--profile", old, state=state)
    assert r.returncode == ExitCode.CONFIG and "Traceback" not in r.stderr
    assert "old schema edge-ee-profile/1" in r.stderr and "idle power" in r.stderr and "edge-ee profile" in r.stderr
    (bundle / "profile.json").write_text(old.read_text())  # found automatically: ignored, the run goes on
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "-q", state=state)
    assert r.returncode == 0, r.stderr
    assert "ignoring profile" in r.stderr and "old schema" in r.stderr and "using profile" not in r.stderr


def test_run_summary_compares_with_the_profiled_full_model(profiled: tuple[Path, Path, dict], tmp_path: Path) -> None:
    bundle, state, p = profiled
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "60", "-q", "--power-source", "estimate",
           "--power-baseline", "0", "--summary-json", tmp_path / "s.json", state=state)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["full_model_latency_ms"] == pytest.approx(p["full_model"]["latency_ms"])
    assert s["latency_vs_full_model"] == pytest.approx(s["infer_ms_mean"] / p["full_model"]["latency_ms"])
    assert "latency vs full model: inference mean" in r.stdout and "measured by `edge-ee profile`" in r.stdout
    if s.get("energy_vs_full_model") is not None:  # the estimate's energy above idle can be 0 on an idle CPU
        assert "energy vs full model (estimated)" in r.stdout
    assert "ESTIMATED (CPU-utilisation model" in r.stdout and "((" not in r.stdout


def test_profile_for_other_bundle_or_device_is_ignored(profiled: tuple[Path, Path, dict], tmp_path: Path) -> None:
    bundle, state, p = profiled
    other = dict(p, bundle={**p["bundle"], "hash": "0" * 64})
    f = tmp_path / "other.json"
    f.write_text(json.dumps(other))
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "-q", "--profile", f, state=state)
    assert r.returncode == 0, r.stderr
    assert "ignoring profile" in r.stderr and "another bundle" in r.stderr and "using profile" not in r.stderr
    dev = dict(p, device={**p["device"], "board": "Raspberry Pi 5 Model B Rev 1.0"})
    (bundle / "profile.json").write_text(json.dumps(dev))
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "-q", state=state)
    assert r.returncode == 0, r.stderr
    assert "another device" in r.stderr and "Raspberry Pi 5" in r.stderr and "using profile" not in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "-q", "--profile", bad, state=state)
    assert r.returncode == ExitCode.CONFIG and "not valid JSON" in r.stderr and "Traceback" not in r.stderr


def test_profile_embedded_default_goes_to_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = ee("profile", "--source", "sample", "--frames", "60", "--warmup", "2", "--power-source", "estimate",
           "--power-baseline", "0", "--plot", tmp_path / "f.png", state=state)
    assert r.returncode == 0, r.stderr
    files = list((state / "edge-ee" / "profiles").glob("*.json"))
    assert len(files) == 1
    assert (tmp_path / "f.png").stat().st_size > 1000
    p = json.loads(files[0].read_text())
    assert p["quality_metric"] in ("accuracy", "agreement_with_final_exit")


def test_energy_budget_run_says_estimated(bundle: Path, tmp_path: Path) -> None:
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "100", "--budget", "50mJ", "-q",
           "--power-source", "estimate", "--power-baseline", "0", state=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert "(estimated)" in r.stdout and "ESTIMATED" in r.stdout and "controller: budget 50mJ" in r.stdout


def test_bad_budget_and_power_source_usage(bundle: Path, tmp_path: Path) -> None:
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "--budget", "5parsecs", state=tmp_path)
    assert r.returncode == ExitCode.USAGE and "unknown budget unit" in r.stderr
    r = ee("run", "--model", bundle, "--source", "synthetic", "-n", "5", "--budget", "5mJ", "--power-source",
           "none", state=tmp_path)
    assert r.returncode == ExitCode.USAGE and "power source" in r.stderr
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--target-drop", "x%", state=tmp_path)
    assert r.returncode == ExitCode.USAGE and "target-drop" in r.stderr


def test_doctor_json(tmp_path: Path) -> None:
    r = ee("doctor", "--json", state=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert "power" in d and "onnxruntime" in d


def test_profile_and_run_take_the_same_power_sources(bundle: Path, tmp_path: Path) -> None:
    """`--power-source none` profiles latency only (no energies); an unknown source is refused by both
    commands with the same message, before the bundle loads."""
    state = tmp_path / "state"
    out = tmp_path / "p.json"
    r = ee("profile", "--model", bundle, "--source", "synthetic", "--frames", "60", "--warmup", "5",
           "--power-source", "none", "--confidence", "none", "--no-plot", "--out", out, state=state)
    assert r.returncode == 0, r.stderr
    p = json.loads(out.read_text())
    assert p["power"]["source"] is None and p["full_model"]["energy_mj"] is None
    assert all(s["energy_mj"] is None for s in p["stages"]) and p["full_model"]["latency_ms"] > 0
    assert "power: not measured" in r.stdout
    errs = []
    for cmd in ("profile", "run"):
        r = ee(cmd, "--model", tmp_path / "no-such-bundle", "--source", "synthetic", "--power-source", "bogus",
               state=state)
        assert r.returncode == ExitCode.USAGE, r.stderr
        errs.append(r.stderr.splitlines()[0])
    assert errs[0] == errs[1] and "unknown power source 'bogus'" in errs[0]
