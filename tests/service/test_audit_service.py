"""`--audit` in a service: the drift alarm in systemd's STATUS= line and the audit's Prometheus series."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from helpers import NotifySocket

from edge_ee.calibration.audit import AuditHook, AuditSettings
from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.service.sdnotify import Notifier
from edge_ee.service.watchdog import SystemdHook
from edge_ee.sources import open_source


def _alarming_runner(bundle: Path, hooks: list, frames: int = 120) -> tuple[Runner, AuditHook]:
    """The test bundle's random exit-0 head disagrees with the final head on most inputs: with every frame
    answered at exit 0 and audited, a 1% target raises the alarm within a few dozen frames."""
    b = load_bundle(bundle)
    engine = Engine(b)
    engine.set_thresholds([0.0, 0.0])
    audit = AuditHook(AuditSettings(1.0, 0.01, seed=0))
    runner = Runner(engine, open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=frames),
                    hooks=[audit, *hooks])
    return runner, audit


def test_drift_alarm_in_systemd_status(bundle: Path, notify_socket: NotifySocket) -> None:
    sd = SystemdHook(Notifier(notify_socket.path), status_interval_s=60.0)  # only the immediate STATUS= counts
    runner, audit = _alarming_runner(bundle, [sd])
    summary = runner.run()
    assert summary["audit"]["alarm"] and audit.status_note()
    notify_socket.collect(0.2)
    status = [f for f in notify_socket.fields() if f.startswith("STATUS=frames")]
    assert any("DRIFT ALARM: disagreement with the final exit" in s and "> target 1.00%" in s for s in status)
    assert "DRIFT ALARM" in sd.status_text()


def test_audit_metrics(bundle: Path) -> None:
    pytest.importorskip("prometheus_client")
    from edge_ee.service.metrics import MetricsHook

    mh = MetricsHook(0, "127.0.0.1", num_exits=3)
    runner, audit = _alarming_runner(bundle, [mh], frames=60)
    try:
        summary = runner.run()
        with urllib.request.urlopen(mh.url, timeout=10) as r:
            text = r.read().decode()
    finally:
        mh.close()

    def value(series: str) -> float:
        m = re.search(r"^" + re.escape(series) + r" ([0-9.e+-]+)$", text, re.M)
        assert m, f"{series} not in metrics"
        return float(m.group(1))

    a = summary["audit"]
    assert value("edge_ee_audit_samples_total") == a["samples"] == 60
    assert value("edge_ee_audit_disagreements_total") == a["disagreements"]
    assert value("edge_ee_audit_drift_alarm") == 1.0
    w = a["window"]
    assert value("edge_ee_audit_agreement") == pytest.approx(w["agreement"], abs=1e-6)
    assert value("edge_ee_audit_agreement_lower") <= value("edge_ee_audit_agreement") <= \
        value("edge_ee_audit_agreement_upper")
