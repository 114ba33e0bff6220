"""'Budget cannot be met' warnings: the runner without a controller, and the controller's streak check."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge_ee.control.hook import ControllerHook
from edge_ee.control.operating_points import Frontier, OperatingPoint
from edge_ee.core.budget import parse_budget
from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.sources import open_source


def _run(bundle: Path, budget: str, mode: str = "adaptive", hooks: list | None = None,
         frames: int = 30) -> tuple[Runner, dict[str, Any]]:
    b = load_bundle(bundle)
    e = Engine(b)
    # stage 0 is predicted to take 5 ms here (segment and head 2.5 ms each, no spread)
    for stat in (e.latency.segments[0], e.latency.heads[0]):
        stat.seed([2.5e-3] * 5)
        stat.update = lambda x: None  # type: ignore[method-assign]  # keep the prediction fixed
    r = Runner(e, open_source("synthetic", b.manifest),
               RunConfig(budget=parse_budget(budget), mode=mode, max_frames=frames, status=False),  # type: ignore[arg-type]
               hooks=hooks or [])
    return r, r.run()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in caplog.messages if "cannot be met" in m]


def test_runner_warns_once_when_the_first_exit_alone_exceeds_a_latency_budget(
        bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        r, s = _run(bundle, "2ms")
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and r.warned_infeasible
    assert msgs[0].startswith("budget 2ms cannot be met: the first exit alone takes 5.")
    assert msgs[0].endswith("ms here; answering from the first exit")
    assert s["frames"] == 30


def test_runner_warning_names_modes_that_do_not_stop_early(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _run(bundle, "2ms", mode="full")
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "mode full does not stop early" in msgs[0]


def test_runner_is_quiet_for_a_feasible_budget(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        r, _ = _run(bundle, "20ms")
    assert _warnings(caplog) == [] and not r.warned_infeasible


def test_runner_leaves_the_warning_to_the_controller(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctrl = ControllerHook(parse_budget("2ms"), stage_latency_s=[5e-3, 5e-3, 5e-3])  # a ladder: costs unknown
    with caplog.at_level(logging.WARNING):
        r, _ = _run(bundle, "2ms", hooks=[ctrl])
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and not r.warned_infeasible  # the controller's, not a second one from the runner


# ---- the controller's streak check ---------------------------------------------------------------
def _controller(bundle: Path, budget: str) -> tuple[ControllerHook, Any]:
    pts = [OperatingPoint([0.0, 0.0], latency_ms=1.0), OperatingPoint([0.5, 0.5], latency_ms=2.0),
           OperatingPoint([1.01, 1.01], latency_ms=3.0)]
    hook = ControllerHook(parse_budget(budget), frontier=Frontier(pts, "test"), stage_latency_s=[1e-3] * 3)
    runner = SimpleNamespace(engine=Engine(load_bundle(bundle)))
    hook.on_start(runner)  # type: ignore[arg-type]
    return hook, runner


def _feed(hook: ControllerHook, runner: Any, total_ms: float, frames: int = 300) -> None:
    """Simulated frames that all take ``total_ms``, whatever the operating point (a loaded device)."""
    for _ in range(frames):
        hook.before_infer(runner, None)  # type: ignore[arg-type]
        hook.on_result(runner, None, None, {"total_ms": total_ms})  # type: ignore[arg-type]


def test_latency_streak_compares_with_the_budget_not_the_setpoint(
        bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 9.5 ms per frame at the cheapest point: above the 9 ms setpoint (0.9 x 10 ms) but within the budget
    hook, runner = _controller(bundle, "10ms")
    with caplog.at_level(logging.WARNING, logger="edge_ee.control"):
        _feed(hook, runner, 9.5)
    assert hook.ctrl is not None and hook.ctrl.index == 0 and hook.ctrl.saturated == "low"
    assert _warnings(caplog) == [] and not hook._warned_infeasible


def test_latency_streak_warns_when_the_mean_exceeds_the_budget(
        bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    hook, runner = _controller(bundle, "10ms")
    with caplog.at_level(logging.WARNING, logger="edge_ee.control"):
        _feed(hook, runner, 10.5)
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "cheapest operating point" in msgs[0] and "first exit" in msgs[0]


# ---- energy and power budgets: measured and predicted energies are both above idle -----------------
@pytest.mark.parametrize("budget, fps", [("2.5mJ", None), ("1.25W", 100.0)])
def test_energy_and_power_controllers_track_energy_above_idle(bundle: Path, budget: str, fps: float | None) -> None:
    """Frontier energies above idle (1, 2, 3 mJ); the device uses exactly the predicted energy above idle
    plus 1 W idle. Energy budget 2.5 mJ, or power budget 1.25 W at 100 fps = 1 W idle + 100 x 2.5 mJ:
    the controller settles on the 2 mJ point with a slowdown of 1 (not at its clamp)."""
    pts = [OperatingPoint([0.0, 0.0], latency_ms=1.0, energy_mj=1.0),
           OperatingPoint([0.5, 0.5], latency_ms=2.0, energy_mj=2.0),
           OperatingPoint([1.01, 1.01], latency_ms=3.0, energy_mj=3.0)]
    energy_hook = SimpleNamespace(baseline_w=1.0)
    hook = ControllerHook(parse_budget(budget), frontier=Frontier(pts, "profile"), fps=fps, energy_hook=energy_hook,
                          stage_latency_s=[1e-3] * 3)
    runner = SimpleNamespace(engine=Engine(load_bundle(bundle)))
    hook.on_start(runner)  # type: ignore[arg-type]
    rec: dict[str, Any] = {}
    for _ in range(300):
        hook.before_infer(runner, None)  # type: ignore[arg-type]
        above = pts[hook._in_force].energy_mj
        rec = {"total_ms": 1.0, "energy_mj": above, "energy_total_mj": above + 1.0}  # + 1 W idle over 1 ms
        hook.on_result(runner, None, None, rec)  # type: ignore[arg-type]
    assert hook.ctrl is not None
    assert hook.ctrl.index == 1 and hook.ctrl.slowdown == pytest.approx(1.0, rel=1e-6)
    assert rec["controller_target"] == pytest.approx(2.5)  # mJ above idle per inference
    assert not hook._warned_infeasible
