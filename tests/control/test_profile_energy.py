"""`edge-ee profile` energy: every stage window integrated from real power samples, above idle.

A fake clock drives the engine's stage timings and the power sampler: samples every 0.1 s (what the
sampler thread does), power a triangle wave with corners on sample times, so integrating between
real samples is exact while holding the last reading (a stale window) is far off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import AllExits, Engine
from edge_ee.power import PowerSampler, PowerSource
from edge_ee.profiling.measure import run_profile
from edge_ee.profiling.profile import format_profile
from edge_ee.sources import open_source

T0 = 100.0
PERIOD = 0.1
SEG_S = [0.05, 0.04, 0.03]
HEAD_S = [0.02, 0.02, 0.02]
IDLE_W = 1.0


def power(t: float) -> float:
    """1 W .. 11 W triangle, corners every 0.2 s (on sample times)."""
    x = ((t - T0) / 0.4) % 1.0
    return IDLE_W + 10.0 * (2 * x if x < 0.5 else 2 - 2 * x)


def above_idle_j(t0: float, t1: float) -> float:
    ts = np.linspace(t0, t1, 4001)
    return float(np.trapezoid([power(t) - IDLE_W for t in ts], ts))


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Triangle(PowerSource):
    kind = "fake"
    name = "fake INA"
    rail = "VDD_TEST"
    unit = "W"
    update_interval_s = PERIOD

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def read(self) -> float:
        return power(self.clock())


class Device:
    """Moves the fake clock and takes a power sample on every 0.1 s tick, like the sampler thread."""

    def __init__(self, clock: Clock, sampler: PowerSampler) -> None:
        self.clock, self.sampler = clock, sampler
        self.tick = 0

    def advance(self, dt: float) -> None:
        end = self.clock.t + dt
        while T0 + self.tick * PERIOD <= end:
            self.clock.t = T0 + self.tick * PERIOD
            self.sampler.sample_once()
            self.tick += 1
        self.clock.t = end


def test_profile_stage_energy_is_integrated_from_samples_covering_each_window(
        bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    sampler = PowerSampler(Triangle(clock), clock=clock, fallback=None)
    sampler.set_baseline(IDLE_W)
    dev = Device(clock, sampler)
    dev.advance(0.0)
    engine = Engine(load_bundle(bundle))
    real = engine.infer_all_exits
    windows: list[tuple[str, int, float, float]] = []
    stale: list[tuple[str, int, float]] = []  # what integrating right after the inference gives

    def fake_infer_all_exits(x: np.ndarray) -> AllExits:
        a = real(x)
        t_start = t = clock()
        mine = []
        for k in range(engine.num_stages):
            dev.advance(SEG_S[k])
            mine.append(("segment", k, t, t + SEG_S[k]))
            t += SEG_S[k]
            dev.advance(HEAD_S[k])
            mine.append(("head", k, t, t + HEAD_S[k]))
            t += HEAD_S[k]
        windows.extend(mine)
        stale.extend((kind, k, sampler.marginal_energy_between(a0, a1)) for kind, k, a0, a1 in mine)
        return AllExits(a.logits, a.confidence, list(SEG_S), list(HEAD_S), t_start)

    monkeypatch.setattr(engine, "infer_all_exits", fake_infer_all_exits)

    def wait_for(t: float, timeout: float | None = None) -> bool:  # the thread goes on sampling meanwhile
        while sampler.newest_time() < t:
            dev.advance(0.01)
        return True

    monkeypatch.setattr(sampler, "wait_for", wait_for)

    class Source:
        def __init__(self) -> None:
            self.inner = open_source("synthetic", engine.manifest)

        def read(self):  # noqa: ANN202 - a Frame
            dev.advance(0.03)  # time between inferences
            return self.inner.read()

    warmup, frames = 2, 20
    p = run_profile(engine, Source(), frames=frames, warmup=warmup, sampler=sampler, confidence=None)
    measured = windows[warmup * 2 * engine.num_stages:]
    stale_measured = stale[warmup * 2 * engine.num_stages:]
    assert p["power"]["extrapolated_windows"] == 0 and p["power"]["baseline_w"] == IDLE_W
    stale_error = 0.0
    for k, st in enumerate(p["stages"]):
        for kind in ("segment", "head"):
            truth = 1e3 * np.mean([above_idle_j(a, b) for kd, j, a, b in measured if kd == kind and j == k])
            got = st[f"{kind}_energy_mj"]
            assert got == pytest.approx(truth, rel=1e-3), (kind, k)
            old = 1e3 * np.mean([e for kd, j, e in stale_measured if kd == kind and j == k])
            stale_error = max(stale_error, abs(old - truth) / truth)
        assert st["energy_mj"] == pytest.approx(st["segment_energy_mj"] + st["head_energy_mj"])
        # idle power included: + 1 W over the stage time
        assert st["energy_total_mj"] == pytest.approx(st["energy_mj"] + 1e3 * IDLE_W * (SEG_S[k] + HEAD_S[k]),
                                                      rel=1e-6)
    # the old way (integrate right after the inference: the last stages hold the newest reading) misses by
    # far more than the tolerance above
    assert stale_error > 0.01
    full = p["full_model"]
    stages = p["stages"]
    assert full["energy_mj"] == pytest.approx(sum(s["segment_energy_mj"] for s in stages)
                                              + stages[-1]["head_energy_mj"])
    exits = p["exits"]
    assert exits[-1]["adaptive_energy_mj"] == pytest.approx(sum(s["energy_mj"] for s in stages))
    assert exits[0]["exit_at_energy_mj"] == pytest.approx(stages[0]["energy_mj"])
    # frontier energies are above idle too: between the first exit's and every stage's
    for pt in p["frontier"]:
        assert exits[0]["adaptive_energy_mj"] - 1e-9 <= pt["energy_mj"] <= exits[-1]["adaptive_energy_mj"] + 1e-9
    text = format_profile(p)
    assert "mJ above idle" in text and "seg mJ" in text and "head mJ" in text and "ESTIMATED" not in text


def test_profile_without_baseline_keeps_totals_only(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    sampler = PowerSampler(Triangle(clock), clock=clock, fallback=None)
    dev = Device(clock, sampler)
    dev.advance(0.0)
    engine = Engine(load_bundle(bundle))

    class Source:
        def __init__(self) -> None:
            self.inner = open_source("synthetic", engine.manifest)

        def read(self):  # noqa: ANN202
            dev.advance(0.05)
            return self.inner.read()

    with caplog.at_level("WARNING", logger="edge_ee.profile"):
        p = run_profile(engine, Source(), frames=10, warmup=1, sampler=sampler, baseline_s=0, confidence=None)
    assert "no idle baseline" in caplog.text
    assert p["full_model"]["energy_mj"] is None and p["full_model"]["energy_total_mj"] is not None
    assert all(s["energy_mj"] is None and s["energy_total_mj"] is not None for s in p["stages"])
    assert all("energy_mj" not in pt for pt in p["frontier"])
    assert "full model:" in format_profile(p)
