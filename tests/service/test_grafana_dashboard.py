"""systemd/grafana/edge-ee.json: every query names a metric the runtime exports (edge_ee/service/metrics.py,
read from a live MetricsHook registry, so a renamed metric breaks this test), and the dashboard is importable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

DASHBOARD = Path(__file__).resolve().parents[2] / "systemd" / "grafana" / "edge-ee.json"

AUDIT = {"edge_ee_audit_agreement", "edge_ee_audit_samples_total"}  # exported once a frame was audited (--audit)


def exported_names() -> set[str]:
    import prometheus_client

    from edge_ee.service.metrics import MetricsHook

    hook = MetricsHook(0, num_exits=3, bundle_info={"name": "b", "task": "t", "sha256": "0"})
    try:
        hook._audit_metrics({"audited": True, "audit_agree": True, "audit_agreement": 1.0,
                             "audit_agreement_lower": 0.9, "audit_agreement_upper": 1.0, "drift_alarm": False})
        text = prometheus_client.generate_latest(hook.registry).decode()
    finally:
        hook.close()
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) \S+$", text, re.M)} | {
        m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}


def queries(node: object) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                out.append(v)
            else:
                out.extend(queries(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(queries(v))
    return out


def test_every_query_names_an_exported_metric() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    assert "edge_ee_inferences_total" in exported and "edge_ee_inference_latency_seconds_bucket" in exported
    exprs = queries(dash)
    assert len(exprs) >= 20
    used = set()
    for e in exprs:
        names = set(re.findall(r"\bedge_ee_[a-zA-Z0-9_]+", e))
        assert names, f"query names no edge-ee metric: {e}"
        used |= names
    unknown = used - exported
    assert not unknown, f"dashboard queries metrics the runtime does not export: {sorted(unknown)}"
    # the panels the issue asks for
    for m in ("edge_ee_exits_total", "edge_ee_inference_latency_seconds_bucket", "edge_ee_deadline_misses_total",
              "edge_ee_energy_per_inference_joules", *AUDIT):
        assert m in used, m


def test_dashboard_is_importable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    names = [v["name"] for v in dash["templating"]["list"]]
    assert "datasource" in names and "instance" in names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
