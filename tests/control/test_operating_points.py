"""Operating points from the manifest, profile and ladder; choosing a point for a budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from factory import build_bundle, edit_manifest

from edge_ee.control.operating_points import Frontier, OperatingPoint, from_manifest, from_profile, ladder
from edge_ee.core.bundle import load_bundle

OPS = [
    {"thresholds": [0.9, 0.9], "accuracy": 0.90, "agreement": 0.97, "mean_macs": 3000, "macs_ratio": 0.8,
     "exit_fractions": [0.3, 0.3, 0.4]},
    {"thresholds": [0.5, 0.5], "accuracy": 0.85, "agreement": 0.93, "mean_macs": 1500, "macs_ratio": 0.4,
     "exit_fractions": [0.8, 0.1, 0.1]},
    {"thresholds": [0.99, 0.99], "accuracy": 0.92, "agreement": 1.0, "mean_macs": 4000, "macs_ratio": 1.0,
     "exit_fractions": [0.0, 0.1, 0.9]},
    {"thresholds": [0.7, 0.7], "accuracy": 0.84, "agreement": 0.9, "mean_macs": 2000, "macs_ratio": 0.5,
     "exit_fractions": [0.6, 0.2, 0.2]},  # dominated
]


def with_calibration(path: Path, rule: str = "max_softmax") -> Path:
    edit_manifest(path, lambda d: d.update(calibration={"rule": rule, "operating_points": OPS,
                                                       "exit_accuracy": [0.7, 0.85, 0.92]}))
    return path


def test_from_manifest_sorted_pareto_with_first_exit(tmp_path: Path) -> None:
    b = load_bundle(with_calibration(build_bundle(tmp_path / "b")))
    f = from_manifest(b.manifest, "max_softmax")
    assert f is not None and f.source == "manifest"
    macs = [p.mean_macs for p in f.points[1:]]
    assert macs == sorted(macs) and 2000 not in macs  # dominated point dropped
    assert f.points[0].exit_fractions == [1.0, 0.0, 0.0] and f.points[0].accuracy == 0.7
    assert f.points[0].thresholds == [0.0, 0.0]
    # another rule: the table does not apply
    assert from_manifest(b.manifest, "entropy") is None


def test_no_calibration_gives_none_and_ladder(tmp_path: Path) -> None:
    b = load_bundle(build_bundle(tmp_path / "b"))
    assert from_manifest(b.manifest) is None
    lad = ladder(3, "max_softmax")
    assert lad.points[0].thresholds == [0.0, 0.0] and lad.points[-1].thresholds[0] > 1.0
    assert all(len(p.thresholds) == 2 for p in lad.points)
    ent = ladder(3, "entropy")
    assert ent.points[0].thresholds == [1.0, 1.0] and ent.points[-1].thresholds[0] < 0


def test_predicted_costs_and_choice(tmp_path: Path) -> None:
    b = load_bundle(with_calibration(build_bundle(tmp_path / "b")))
    f = from_manifest(b.manifest, "max_softmax")
    assert f is not None
    f.set_stage_costs(latency_ms=[1.0, 2.0, 4.0])
    lat = [p.latency_ms for p in f.points]
    assert lat[0] == pytest.approx(1.0)
    assert lat[-1] == pytest.approx(0.0 * 1 + 0.1 * 2 + 0.9 * 4)
    idx, ok = f.choose("latency", 2.0e-3)
    assert ok and f.points[idx].latency_ms <= 2.0
    assert all(p.latency_ms > 2.0 for p in f.points[idx + 1:])
    idx, ok = f.choose("latency", 0.5e-3)  # below the first exit: infeasible
    assert not ok and idx == 0
    assert f.choose("energy", 1.0) == (len(f) - 1, True)  # unknown energy: most accurate


def test_profile_frontier_round_trip() -> None:
    pts = [OperatingPoint([0.5], accuracy=0.8, latency_ms=1.0, energy_mj=2.0, exit_fractions=[0.9, 0.1]),
           OperatingPoint([0.9], accuracy=0.9, latency_ms=1.5, energy_mj=3.0, exit_fractions=[0.4, 0.6])]
    prof = {"rule": "max_softmax", "frontier": [p.to_dict() for p in pts],
            "exits": [{"adaptive_ms": 1.0, "adaptive_energy_mj": 2.0}, {"adaptive_ms": 2.0, "adaptive_energy_mj": 4}]}
    f = from_profile(prof)
    assert isinstance(f, Frontier) and f.source == "profile" and len(f) == 2
    assert f.costs("energy") == pytest.approx([2e-3, 3e-3])
    assert f.stage_latency_ms == [1.0, 2.0]
    assert from_profile({"frontier": []}) is None
