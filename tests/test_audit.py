"""`edge-ee run --audit`: the interval and the drift alarm on simulated agreement streams (false alarms over many
clean streams, detection delay after a shift), the label-free recalibration, the cost accounting in the runner,
and the command line (telemetry, summary, bad input, config key)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_ee.calibration.audit import (
    AuditHook,
    Auditor,
    AuditSample,
    AuditSettings,
    DisagreementMonitor,
    binom_sf,
    default_target,
    parse_audit_fraction,
    select_from_audits,
    wilson,
)
from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.core.exit_rules import get_rule
from edge_ee.errors import ExitCode, UsageError
from edge_ee.pipeline.runner import RunConfig, RunHook, Runner
from edge_ee.sources import open_source

CLI = [sys.executable, "-m", "edge_ee"]


def ee(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=180, **kw)


# ------------------------------------------------------------------------------------------------ statistics


def test_binomial_tail() -> None:
    for x, n, p in [(0, 5, 0.3), (3, 19, 0.031), (10, 10, 0.3), (5, 800, 0.03), (50, 800, 0.03), (400, 800, 0.5)]:
        ref = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(x, n + 1))
        assert binom_sf(x, n, p) == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_wilson_interval_covers_at_its_level() -> None:
    rng = np.random.default_rng(0)
    p, n = 0.03, 200
    lo_hi = [wilson(int(x), n, 0.9) for x in rng.binomial(n, p, 4000)]
    cover = np.mean([lo <= p <= hi for lo, hi in lo_hi])
    assert 0.86 <= cover <= 0.95
    assert wilson(0, 0, 0.9) == (0.0, 1.0)


@pytest.mark.parametrize("text, value", [("2%", 0.02), ("0.5", 0.5), ("100%", 1.0), ("1", 1.0)])
def test_parse_audit_fraction(text: str, value: float) -> None:
    assert parse_audit_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "0%", "150%", "1.5", "-2%", "abc", "nan"])
def test_parse_audit_fraction_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_audit_fraction(text)


def test_each_check_false_alarms_at_most_at_its_level() -> None:
    """At a disagreement exactly at the target, a window's test fires with probability <= its level: exactly
    (summing over every possible count), and in simulated streams through the monitor."""
    target, f, false_alarm = 0.02, 0.5, 0.3  # level 0.05 per window (6 windows)
    m = DisagreementMonitor(target, false_alarm)
    for n in (25, 100, 800):
        p0 = target / f
        size = sum(math.comb(n, x) * p0 ** x * (1 - p0) ** (n - x) for x in range(n + 1)
                   if binom_sf(x, n, p0) <= m.level)
        assert size <= m.level
    rng = np.random.default_rng(1)
    trials, fired = 400, 0
    for _ in range(trials):
        m = DisagreementMonitor(target, false_alarm)
        for i in range(200):  # every other frame early and audited: 100 audits
            early = i % 2 == 0
            m.count(early)
            if early:
                m.add(bool(rng.random() < target / f))
        fired += m.exceeds(100)
    assert fired / trials <= m.level + 3 * math.sqrt(m.level * (1 - m.level) / trials)


class Sim:
    """An audited frame of a simulated stream (only the outcome matters to the Auditor)."""

    __slots__ = ("disagree",)

    def __init__(self, disagree: bool) -> None:
        self.disagree = disagree


def stream(auditor: Auditor, phases: list[tuple[int, float, float]], rng: random.Random) -> int | None:
    """Feed (frames, early share, conditional disagreement) phases; the frame index of the first alarm."""
    i = 0
    for frames, share, d in phases:
        for _ in range(frames):
            early = rng.random() < share
            sample = Sim(rng.random() < d) if early and auditor.draw() else None
            if auditor.frame(early, sample) is not None:
                return i
            i += 1
    return None


def test_no_false_alarm_over_many_clean_streams() -> None:
    """Clean streams like the shipped bundle's (72% early, 0.83% conditional disagreement: D = 0.6% against a 1%
    target), 10,000 frames each at a 2% audit: alarms in at most 2 of 60 streams."""
    alarms = sum(stream(Auditor(AuditSettings(0.02, 0.01, seed=s)), [(10_000, 0.72, 0.0083)], random.Random(s))
                 is not None for s in range(60))
    assert alarms <= 2


def test_alarm_soon_after_a_shift() -> None:
    """After 1,000 clean frames the inputs change as rotated images do (32% early, 14% conditional disagreement:
    D = 4.5%): at a 2% audit the alarm comes within 3,000 frames of the change in at least 90% of the streams."""
    delays = []
    for s in range(30):
        a = stream(Auditor(AuditSettings(0.02, 0.01, seed=100 + s)), [(1000, 0.72, 0.0083), (6000, 0.32, 0.14)],
                   random.Random(100 + s))
        delays.append(math.inf if a is None else a - 1000)
    assert min(delays) >= 0  # nothing before the change
    assert np.mean(np.array(delays) <= 3000) >= 0.9, delays


def test_boost_starts_when_the_early_share_moves() -> None:
    au = Auditor(AuditSettings(0.02, 0.01, seed=0))
    rng = random.Random(0)
    stream(au, [(2000, 0.8, 0.0)], rng)
    assert au.boost is None and au.rate == 0.02
    stream(au, [(600, 0.2, 0.0)], rng)
    assert au.boosts == 1 and au.rate == pytest.approx(0.2)
    assert any("share of early answers moved" in e for e in au.events)


# ------------------------------------------------------------------------------------------------ recalibration


def _samples(rng: np.random.Generator, n: int) -> list[AuditSample]:
    """Two early exits + final over 10 classes; a frame's exit-0 confidence says how likely it agrees."""
    out = []
    for _ in range(n):
        final = int(rng.integers(10))
        conf = float(rng.uniform(0.3, 1.0))
        agree0 = rng.random() < conf ** 4
        lab0 = final if agree0 else (final + 1) % 10

        def logits(label: int, c: float) -> np.ndarray:
            z = np.zeros(10)
            z[label] = math.log(9 * c / (1 - c + 1e-9) + 1e-9)
            return z

        out.append(AuditSample([logits(lab0, conf), logits(final, 0.99), logits(final, 0.99)], [None] * 3,
                               exit_index=0, label_index=lab0))
    return out


MS = get_rule("max_softmax")
CUM_MACS = [1.0, 5.0, 10.0]


def _exit(s: AuditSample, th: list[float]) -> int:
    for k, t in enumerate(th):
        if MS.fires(MS.score(s.logits[k]), t):
            return k
    return len(th)


def test_recalibration_holds_its_target() -> None:
    """Simulated audits whose true risk is known from a large fresh draw: the risk of the selected thresholds
    exceeds the target in at most ~10% of the draws (90% confidence), and early exits are found."""
    rng = np.random.default_rng(3)
    target, conf = 0.05, 0.9
    violations, moved = 0, 0
    fresh = _samples(rng, 3000)
    for _ in range(40):
        sel = select_from_audits(_samples(rng, 1000), ["max_softmax"] * 3, [1.0] * 3, CUM_MACS, target, conf)
        risk = np.mean([int(np.argmax(s.logits[_exit(s, sel.thresholds)])) != s.final_label for s in fresh])
        violations += risk > target
        moved += sel.certified
        assert not sel.certified or sel.disagreement <= sel.upper <= target + 1e-12
    assert moved >= 32  # it does find early-exit points
    assert violations <= 7  # P(risk > target) <= 10%, with sampling slack


def test_too_few_audits_fall_back_to_the_final_exit() -> None:
    sel = select_from_audits(_samples(np.random.default_rng(0), 10), ["max_softmax"] * 3, [1.0] * 3, CUM_MACS,
                             0.01, 0.9)
    assert sel.thresholds == [MS.never, MS.never] and "too few" in sel.note and not sel.certified


# ------------------------------------------------------------------------------------------------ in the runner


def test_audit_work_is_counted_in_the_frame_cost(bundle: Path) -> None:
    b = load_bundle(bundle)
    engine = Engine(b)
    engine.set_thresholds([0.0, 0.0])  # every frame answers at exit 0, every one is audited
    hook = AuditHook(AuditSettings(1.0, 0.5, seed=0))
    runner = Runner(engine, open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=30),
                    hooks=[hook])
    recs: list[dict] = []

    class Keep(RunHook):
        def on_result(self, runner, frame, result, record):  # noqa: ANN001
            recs.append(dict(record, answer_macs=result.macs, answer_ms=result.total_ms))

    runner.hooks.append(Keep())
    summary = runner.run()
    all_exits = sum(s.segment.macs + (s.head.macs if s.head else 0) for s in b.manifest.stages)
    assert len(recs) == 30 and all(r["audited"] for r in recs)
    for r in recs:
        assert r["audit_macs"] == all_exits
        assert r["macs"] == r["answer_macs"] + all_exits
        assert r["infer_ms"] >= r["answer_ms"] + r["audit_ms"] - 1e-3
        assert r["total_ms"] >= r["infer_ms"]
        assert 0.0 <= r["audit_agreement_lower"] <= r["audit_agreement"] <= r["audit_agreement_upper"] <= 1.0
    assert summary["mean_macs"] == pytest.approx(np.mean([r["macs"] for r in recs]))
    a = summary["audit"]
    assert a["samples"] == 30 and a["audit_macs_each"] == all_exits
    assert a["disagreements"] == sum(not r["audit_agree"] for r in recs)


def test_alarm_and_recalibration_in_the_runner(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The test bundle's random heads disagree with the final one on most inputs: a 1% target raises the alarm;
    with --recalibrate every input goes to the final exit while 60 frames are audited, then the selection on them
    sets the thresholds (here nothing is certified: never exit early), each step logged."""
    b = load_bundle(bundle)
    engine = Engine(b)
    engine.set_thresholds([0.0, 0.0])
    hook = AuditHook(AuditSettings(1.0, 0.01, recalibrate=True, recal_samples=60, seed=0))
    recs: list[dict] = []

    class Keep(RunHook):
        def on_result(self, runner, frame, result, record):  # noqa: ANN001
            recs.append(dict(record))

    runner = Runner(engine, open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=150),
                    hooks=[hook, Keep()])
    with caplog.at_level("WARNING", logger="edge_ee.audit"):
        summary = runner.run()
    text = caplog.text
    assert "DRIFT ALARM" in text and "recalibrating: every input goes to the final exit" in text
    assert "recalibrated at frame" in text
    a = summary["audit"]
    assert a["alarms"] == 1 and len(a["recalibrations"]) == 1
    r = a["recalibrations"][0]
    assert r["samples"] == 60 and r["to"] == engine.thresholds
    collecting = [x for x in recs if "recalibrating" in x]
    assert len(collecting) == 60 and all(x["exit"] == 2 for x in collecting)
    assert all(x["drift_alarm"] for x in collecting[:-1]) and not collecting[-1]["drift_alarm"]  # done there
    assert all(x["audited"] for x in collecting)  # fraction 1.0: every frame audited while collecting
    assert not a["alarm"] and hook.status_note() is None


# ------------------------------------------------------------------------------------------------ command line


def test_cli_audit_on_the_shipped_bundle(tmp_path: Path) -> None:
    log, sj = tmp_path / "t.jsonl", tmp_path / "s.json"
    r = ee("run", "--source", "sample", "--audit", "100%", "--power-source", "none", "--log", log,
           "--summary-json", sj, "-q")
    assert r.returncode == 0, r.stderr
    assert "auditing 100% of the frames answered early" in r.stderr
    assert "drift alarm above" in r.stderr and "disagreement with the final exit" in r.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    audited = [x for x in lines if x["audited"]]
    assert audited and all(x["exit"] < 2 for x in audited)
    assert all(not x["audited"] for x in lines if x["exit"] == 2)
    assert all("drift_alarm" in x for x in lines)
    for x in audited:
        assert x["audit_macs"] > 0 and x["audit_ms"] > 0 and x["macs"] > x["audit_macs"]
        assert x["audit_final_label"] in {y["label"] for y in lines} | {x["audit_final_label"]}
    s = json.loads(sj.read_text())
    assert s["audit"]["samples"] == len(audited)
    assert s["mean_macs"] == pytest.approx(np.mean([x["macs"] for x in lines]))
    assert "audit: " in r.stdout and "agreement with the final exit" in r.stdout


def test_cli_audit_target_and_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('audit = "50%"\naudit_target = "3%"\n')
    r = ee("run", "--source", "sample", "--config", cfg, "--power-source", "none", "-n", "50", "-q")
    assert r.returncode == 0, r.stderr
    assert "auditing 50% of the frames answered early; drift alarm above 3% disagreement" in r.stderr
    assert "target disagreement 3.00%" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--audit", "2%", "--mode", "full"], "--mode full"),
    (["--audit", "0"], "must be above 0"),
    (["--audit", "0%"], "must be above 0"),
    (["--audit", "150%"], "at most 100%"),
    (["--audit", "lots"], "give a percentage"),
    (["--audit-target", "1%"], "--audit-target needs --audit"),
    (["--recalibrate"], "--recalibrate needs --audit"),
    (["--audit", "2%", "--audit-target", "0"], "--audit-target"),
    (["--audit", "2%", "--recalibrate", "--budget", "5ms"], "controller sets the thresholds"),
    (["--audit", "2%", "--recalibrate", "--mode", "exit-at", "--exit-at", "0"], "adaptive mode"),
])
def test_cli_audit_usage_errors(args: list[str], needle: str) -> None:
    r = ee("run", "--source", "synthetic", "-n", "5", "--power-source", "none", "-q", *args)
    assert r.returncode == ExitCode.USAGE, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------ energy, target


def test_audit_energy_is_part_of_the_frame_energy(bundle: Path, tmp_path: Path) -> None:
    """With a constant 3 W source and a 1 W idle baseline, the energy above idle of an audited frame covers the
    audit too: 2 W x (answer + audit time); the audit's own piece is ``audit_energy_mj``."""
    from edge_ee.control.energy_hook import EnergyHook
    from edge_ee.power import PowerSampler, PowerSource

    class Constant(PowerSource):
        kind, name, rail, unit, update_interval_s = "fake", "fake INA", "VDD_TEST", "W", 0.01

        def read(self) -> float:
            return 3.0

    sampler = PowerSampler(Constant(), fallback=None)
    sampler.set_baseline(1.0)
    b = load_bundle(bundle)
    engine = Engine(b)
    engine.set_thresholds([0.0, 0.0])
    recs: list[dict] = []

    class Keep(RunHook):
        def on_result(self, runner, frame, result, record):  # noqa: ANN001
            recs.append(dict(record))

    hooks = [AuditHook(AuditSettings(0.5, 0.5, seed=1)), EnergyHook(sampler=sampler, announce=False), Keep()]
    runner = Runner(engine, open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=60),
                    hooks=hooks)
    summary = runner.run()
    sampler.stop()
    audited = [x for x in recs if x["audited"]]
    assert audited and len(audited) < len(recs)
    for x in recs:
        assert x["energy_mj"] == pytest.approx(2.0 * x["infer_ms"], rel=0.05, abs=3e-4)
        if x["audited"]:
            # its piece runs from the engine's answer to the audit's end (the audit and the hand-over before it)
            assert 0.9 * 2.0 * x["audit_ms"] <= x["audit_energy_mj"] < x["energy_mj"]
            assert sum(x["stage_energy_mj"]) + x["audit_energy_mj"] == pytest.approx(x["energy_mj"], abs=5e-4)
        else:
            assert "audit_energy_mj" not in x
    mean_infer = sum(x["infer_ms"] for x in recs) / len(recs)
    assert summary["energy_mj_per_inference"] == pytest.approx(2.0 * mean_infer, rel=0.05)


def test_default_target_from_the_calibration_in_force() -> None:
    shipped = load_bundle(None).manifest
    t, where = default_target(shipped, None)
    agree = shipped.calibration.chosen.agreement
    assert t == pytest.approx(shipped.calibration.target_drop + (1 - agree)) and "disagreement" in where
    label_free = {"target_drop": 0.01, "guarantee": {"risk": "disagreement", "target": 0.02},
                  "chosen": {"agreement": 0.99}, "quality_metric": "agreement_with_final_exit"}
    assert default_target(shipped, label_free) == (0.02, "the device profile's label-free target")
    labelled = {"target_drop": 0.01, "guarantee": {"risk": "accuracy_drop", "target": 0.01},
                "chosen": {"agreement": 0.985}, "quality_metric": "accuracy"}
    assert default_target(shipped, labelled)[0] == pytest.approx(0.025)
    point_estimate_no_labels = {"target_drop": 0.03, "guarantee": None, "chosen": {"agreement": 0.97},
                                "quality_metric": "agreement_with_final_exit"}
    assert default_target(shipped, point_estimate_no_labels)[0] == pytest.approx(0.03)
    with pytest.raises(UsageError, match="--audit-target"):
        default_target(shipped, {"target_drop": None})
