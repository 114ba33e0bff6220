"""Controller and energy hooks end to end through the Runner, with a fake power source."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_ee.control.energy_hook import EnergyHook
from edge_ee.control.hook import ControllerHook
from edge_ee.control.settings import RunSettings
from edge_ee.control.setup import format_extras, make_run_hooks
from edge_ee.core.budget import parse_budget
from edge_ee.core.bundle import load_bundle
from edge_ee.core.deadline import StrictGuard
from edge_ee.core.engine import Engine
from edge_ee.errors import UsageError
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.power import PowerSampler, PowerSource
from edge_ee.sources import open_source


class FakePower(PowerSource):
    kind = "fake"
    name = "fake INA"
    rail = "VDD_TEST"
    unit = "W"
    update_interval_s = 0.01

    def __init__(self, watts: float = 3.0, fail_after: int | None = None) -> None:
        self.watts = watts
        self.reads = 0
        self.fail_after = fail_after

    def read(self) -> float:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError("sensor vanished")
        return self.watts


def _run(bundle: Path, hooks: list, budget: str | None = None, frames: int = 300) -> tuple[Runner, dict]:
    b = load_bundle(bundle)
    e = Engine(b)
    bud = parse_budget(budget)
    r = Runner(e, open_source("synthetic", b.manifest), RunConfig(budget=bud, max_frames=frames, status=False),
               hooks=hooks)
    return r, r.run()


def test_energy_hook_records(bundle: Path, tmp_path: Path) -> None:
    import json

    from edge_ee.pipeline.telemetry import TelemetryWriter

    sampler = PowerSampler(FakePower(3.0), fallback=None)
    sampler.set_baseline(1.0)
    hook = EnergyHook(sampler=sampler, announce=False)
    b = load_bundle(bundle)
    e = Engine(b)
    log = tmp_path / "t.jsonl"
    tw = TelemetryWriter(log)
    r = Runner(e, open_source("synthetic", b.manifest), RunConfig(max_frames=50, status=False), telemetry=tw,
               hooks=[hook])
    s = r.run()
    tw.close()
    sampler.stop()
    rec = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(rec) == 50
    for x in rec:
        assert x["power_source"] == "fake" and x["power_rail"] == "VDD_TEST" and x["energy_estimated"] is False
        # 3 W over the inference window, 1 W of it idle: the energy is the 2 W above idle
        assert x["energy_mj"] == pytest.approx(2.0 * x["infer_ms"], rel=0.05, abs=2e-4)
        assert x["energy_total_mj"] == pytest.approx(3.0 * x["infer_ms"], rel=0.05, abs=2e-4)
        assert "marginal_energy_mj" not in x
        assert isinstance(x["energy_extrapolated"], bool)
        # the stages add up to the inference's energy
        assert len(x["stage_energy_mj"]) == len(x["segment_ms"])
        assert sum(x["stage_energy_mj"]) == pytest.approx(x["energy_mj"], abs=1e-4 * len(x["stage_energy_mj"]))
    assert s["energy_estimated"] is False
    mean_infer = sum(x["infer_ms"] for x in rec) / len(rec)
    assert s["energy_mj_per_inference"] == pytest.approx(2.0 * mean_infer, rel=0.05)
    assert s["energy_total_mj_per_inference"] == pytest.approx(3.0 * mean_infer, rel=0.05)
    assert s["energy_extrapolated_inferences"] == 0  # the summary waits for samples covering every window
    per_exit = [v for v in s["exit_energy_mj"] if v is not None]
    assert per_exit and all(v > 0 for v in per_exit)
    assert s["mean_power_w"] == pytest.approx(3.0, rel=1e-6)
    assert s["power"]["rail"] == "VDD_TEST"
    text = format_extras(s)
    assert "power source: fake INA, rail: VDD_TEST, measured, idle baseline 1.000 W" in text
    assert "ESTIMATED" not in text and "average power: 3.000 W" in text


def test_sensor_disappearing_mid_run_falls_back_to_estimate(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = FakePower(3.0, fail_after=3)
    sampler = PowerSampler(src, max_failures=1)
    sampler.set_baseline(1.0)
    hook = EnergyHook(sampler=sampler, announce=False)
    with caplog.at_level(logging.WARNING):
        sampler.start()
        import time

        deadline = time.monotonic() + 5
        while sampler.source is src and time.monotonic() < deadline:
            time.sleep(0.01)
        r, s = _run(bundle, [hook], frames=30)
    sampler.stop()
    assert sampler.source is not src and s["energy_estimated"] is True
    assert "ESTIMATED" in caplog.text or "estimate" in caplog.text.lower()
    assert "estimated" in format_extras(s).lower()


def test_energy_budget_controller_with_fake_power(bundle: Path) -> None:
    sampler = PowerSampler(FakePower(3.0), fallback=None)
    sampler.set_baseline(1.0)
    energy = EnergyHook(sampler=sampler, announce=False)
    budget = parse_budget("1mJ")
    ctrl = ControllerHook(budget, energy_hook=energy, stage_latency_s=[1e-4, 1e-4, 1e-4])
    r, s = _run(bundle, [energy, ctrl], budget="1mJ", frames=200)
    sampler.stop()
    c = s["controller"]
    assert c["budget"]["kind"] == "energy" and c["frontier_source"] == "ladder"
    assert 0 <= c["final_index"] < c["points"]
    assert "controller: budget 1mJ" in format_extras(s)


def test_latency_budget_records_controller_state(bundle: Path, tmp_path: Path) -> None:
    import json

    from edge_ee.pipeline.telemetry import TelemetryWriter

    b = load_bundle(bundle)
    e = Engine(b)
    bud = parse_budget("50ms")
    ctrl = ControllerHook(bud)
    log = tmp_path / "t.jsonl"
    tw = TelemetryWriter(log)
    r = Runner(e, open_source("synthetic", b.manifest), RunConfig(budget=bud, max_frames=100, status=False),
               telemetry=tw, hooks=[ctrl])
    s = r.run()
    tw.close()
    rec = [json.loads(x) for x in log.read_text().splitlines()]
    assert all("operating_point" in x and "controller_error" in x for x in rec)
    # a generous budget: the controller moves to (and stays at) the most accurate point
    assert rec[-1]["operating_point"] == s["controller"]["points"] - 1
    thr = ctrl.frontier.points[rec[-1]["operating_point"]].thresholds
    assert rec[-1]["thresholds"] == thr
    misses = sum(not x["deadline_met"] for x in rec)
    assert s["controller"]["target_miss"] == 0.005
    assert (s["controller"]["miss_rate"] == 0.0) == (misses == 0)  # the EWMA of the records' misses
    # the guard's risk price rides on every record while the controller runs, and is switched off after
    assert all(x["risk_price"] > 0 for x in rec)
    assert s["controller"]["risk_price"] == pytest.approx(rec[-1]["risk_price"], rel=1e-3)
    assert isinstance(e.guard, StrictGuard)


def test_infeasible_latency_budget_warns_once(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    bud = parse_budget("1us")
    ctrl = ControllerHook(bud, stage_latency_s=[1e-4, 1e-4, 1e-4])
    with caplog.at_level(logging.WARNING, logger="edge_ee.control"):
        r, s = _run(bundle, [ctrl], budget="1us", frames=200)
    msgs = [m for m in caplog.messages if "cannot be met" in m]
    assert len(msgs) == 1 and "first exit" in msgs[0]
    assert s["exits"][0] == 200  # every frame answered from the first exit
    assert s["controller"]["infeasible_warning"] is True


def test_make_run_hooks_rules(bundle: Path) -> None:
    b = load_bundle(bundle)
    e = Engine(b)
    with pytest.raises(UsageError, match="power source"):
        make_run_hooks(b, e, RunSettings(budget=parse_budget("5mJ"), power_source="none"))
    with pytest.raises(UsageError, match="controller"):
        make_run_hooks(b, e, RunSettings(budget=parse_budget("2W"), controller=False))
    with pytest.raises(UsageError, match="adaptive"):
        make_run_hooks(b, e, RunSettings(budget=parse_budget("2W"), mode="full"))
    hooks, _ = make_run_hooks(b, e, RunSettings(budget=parse_budget("20ms")))
    assert [type(h).__name__ for h in hooks] == ["ControllerHook"]
    hooks, _ = make_run_hooks(b, e, RunSettings(budget=parse_budget("20ms"), controller=False))
    assert hooks == []
    hooks, _ = make_run_hooks(b, e, RunSettings(power_source="estimate"))
    assert [type(h).__name__ for h in hooks] == ["EnergyHook"]


def test_controller_follows_reloaded_budget(bundle: Path) -> None:
    hook = ControllerHook(parse_budget("20ms"))
    runner, _ = _run(bundle, [hook], budget="20ms", frames=20)
    assert hook.ctrl is not None
    before = hook.ctrl.target
    assert hook.on_reload(runner, {"budget": "5ms"}, {"budget"}) == {"budget"}
    assert hook.ctrl.target == pytest.approx(before / 4)
    assert hook.on_reload(runner, {"budget": "5ms"}, {"thresholds"}) == set()
    with pytest.raises(UsageError, match="restart"):
        hook.on_reload(runner, {"budget": "50mJ"}, {"budget"})
    assert hook.on_reload(runner, {"budget": None}, {"budget"}) == {"budget"}
    assert hook.ctrl is None
    hook.before_infer(runner, None)  # no controller: thresholds are left to the reload


def test_idle_device_telemetry_has_no_negative_zero(bundle: Path, tmp_path: Path) -> None:
    from edge_ee.pipeline.telemetry import TelemetryWriter

    sampler = PowerSampler(FakePower(1.25), fallback=None)
    sampler.set_baseline(1.25)  # the device draws exactly its idle power: every energy above idle is ~0
    hook = EnergyHook(sampler=sampler, announce=False)
    b = load_bundle(bundle)
    log = tmp_path / "t.jsonl"
    tw = TelemetryWriter(log)
    Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(max_frames=40, status=False), telemetry=tw,
           hooks=[hook]).run()
    tw.close()
    sampler.stop()
    text = log.read_text()
    assert '"stage_energy_mj":[0.0,' in text.replace(" ", "") and "-0.0" not in text


def test_hooks_run_in_their_declared_phases(bundle: Path) -> None:
    """settings -> measure -> control -> report, whatever order the hooks were added in (stable within a phase)."""
    from edge_ee.pipeline.runner import RunHook

    seen: list[str] = []

    def hook(name: str, phase: str) -> RunHook:
        cls = type(name, (RunHook,), {"phase": phase,
                                      "before_infer": lambda self, runner, frame: seen.append(name)})
        return cls()

    b = load_bundle(bundle)
    hooks = [hook("report1", "report"), hook("control", "control"), hook("measure", "measure"),
             hook("report2", "report"), hook("settings", "settings")]
    r = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(max_frames=1, status=False), hooks=hooks)
    r.hooks.append(hook("late_measure", "measure"))  # added after the runner was made
    r.run()
    assert seen == ["settings", "measure", "late_measure", "control", "report1", "report2"]
