"""Summary lines for energy, power and the comparison with the profiled full model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_ee.control.energy_hook import describe_power
from edge_ee.control.setup import ProfileSummaryHook, format_extras
from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.pipeline.stats import RunStats, format_summary
from edge_ee.sources import open_source

ESTIMATE = {"kind": "estimate", "name": "estimate from CPU utilisation (model generic-x86)",
            "rail": "whole board (estimated, model generic-x86)", "estimated": True, "baseline_w": 3.1,
            "model": "generic-x86", "failed_sources": []}


def test_estimated_power_source_reads_cleanly() -> None:
    line = describe_power(ESTIMATE)
    assert line == "estimate, rail: whole board, ESTIMATED (CPU-utilisation model generic-x86), idle baseline 3.100 W"
    # the sampler's info() carries the model as a dict
    assert describe_power({**ESTIMATE, "model": {"name": "pi5"}}).count("model pi5") == 1
    measured = describe_power({"kind": "hwmon", "name": "INA226", "rail": "VIN", "estimated": False,
                               "baseline_w": None})
    assert measured == "INA226, rail: VIN, measured, no idle baseline"


def test_power_budget_summary_has_average_power_and_says_estimated() -> None:
    s = {"power": ESTIMATE, "energy_estimated": True, "mean_power_w": 2.4, "exit_energy_mj": [0.5, None, 1.5],
         "controller": {"budget": {"kind": "power", "text": "2.5W", "value": 2.5}, "target": 1.0,
                        "target_unit": "mJ", "frontier_source": "profile", "points": 3, "final_index": 1,
                        "final_thresholds": [0.5], "moves": 2, "slowdown": 1.0}}
    text = format_extras(s)
    assert "power source: estimate, rail: whole board, ESTIMATED (CPU-utilisation model generic-x86)" in text
    assert "((" not in text and "))" not in text
    assert "average power (estimated): 2.400 W over the run, idle included (budget 2.5W)" in text
    assert "energy per exit above idle (estimated): exit0: 0.500 mJ  exit2: 1.500 mJ" in text


def test_summary_energy_line_is_above_idle_with_the_total_beside_it() -> None:
    st = RunStats(num_exits=2, full_macs=100)
    st.add(0, 1.0, 50, infer_ms=0.8)
    st.add(1, 2.0, 100, infer_ms=1.8)
    s = st.summary()
    assert s["infer_ms_mean"] == pytest.approx(1.3)
    # the energy figures have one writer, the energy hook (tests/control/test_hooks.py measures them)
    assert not any(k.startswith(("energy", "exit_energy")) for k in s)
    s.update(energy_mj_per_inference=3.0, energy_total_mj_per_inference=7.0, energy_estimated=True)
    assert "energy (estimated): 3.000 mJ per inference above idle (7.000 mJ including idle power)" in format_summary(s)


def test_comparison_with_the_profiled_full_model(bundle: Path) -> None:
    profile = {"full_model": {"latency_ms": 2.0, "energy_mj": 4.0}, "power": {"estimated": True}}
    hook = ProfileSummaryHook(profile, Path("/x/profile.json"))
    b = load_bundle(bundle)
    r = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(max_frames=5, status=False), hooks=[hook])
    s = r.run()
    assert s["full_model_latency_ms"] == 2.0 and s["profile_path"] == "/x/profile.json"
    assert s["latency_vs_full_model"] == pytest.approx(s["infer_ms_mean"] / 2.0)
    assert "energy_vs_full_model" not in s  # no energy measured in this run
    s.update(energy_mj_per_inference=1.0)
    hook.on_stop(r, s)
    assert s["energy_vs_full_model"] == pytest.approx(0.25) and s["full_model_energy_estimated"] is True
    text = format_extras(s)
    assert "latency vs full model: inference mean" in text and "of 2.000 ms (full model, measured by" in text
    # the profile's energy was estimated: the comparison says so even when the run's was measured
    assert "energy vs full model (estimated): 1.000 mJ above idle = 25.0% of 4.000 mJ" in text
    assert not math.isnan(s["latency_vs_full_model"])
