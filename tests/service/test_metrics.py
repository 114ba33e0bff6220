"""Prometheus endpoint on loopback: names in base units, counters follow the run, drops counted."""

from __future__ import annotations

import re
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from helpers import popen, wait_for

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.errors import UsageError
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.pipeline.telemetry import TelemetryWriter
from edge_ee.sources import open_source

pytest.importorskip("prometheus_client")
from edge_ee.service.metrics import MetricsHook  # noqa: E402


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def value(text: str, series: str) -> float:
    m = re.search(r"^" + re.escape(series) + r" ([0-9.e+-]+)$", text, re.M)
    assert m, f"{series} not in metrics"
    return float(m.group(1))


def test_metrics_endpoint_in_process(bundle: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle)
    tel = TelemetryWriter("/dev/full") if Path("/dev/full").exists() else None
    hook = MetricsHook(0, "127.0.0.1", num_exits=3, bundle_info={"name": b.manifest.name})
    runner = Runner(Engine(b), open_source("synthetic", b.manifest),
                    RunConfig(status=False, max_frames=40, budget=None), telemetry=tel, hooks=[hook])
    runner.engine.set_thresholds([0.0, 0.0])  # every frame answers at exit 0
    try:
        assert hook.url.startswith("http://127.0.0.1:")
        before = scrape(hook.url)
        assert value(before, 'edge_ee_exits_total{exit="2"}') == 0  # series exist from the start
        runner.run()
        text = scrape(hook.url)
    finally:
        hook.close()
        if tel is not None:
            tel.close()
    assert value(text, "edge_ee_inferences_total") == 40
    assert value(text, 'edge_ee_exits_total{exit="0"}') == 40
    assert value(text, 'edge_ee_inference_latency_seconds_count{exit="0"}') == 40
    assert 0 < value(text, 'edge_ee_inference_latency_seconds_sum{exit="0"}') < 40  # seconds, not ms
    assert value(text, 'edge_ee_threshold{exit="0"}') == 0.0
    assert value(text, "edge_ee_deadline_misses_total") == 0
    assert value(text, "edge_ee_dropped_frames_total") == 0
    if tel is not None:
        assert value(text, "edge_ee_telemetry_dropped_total") == 40
    assert re.search(r'^edge_ee_bundle_info\{.*name="test-3stage".*\} 1\.0$', text, re.M)
    for name in ("edge_ee_energy_per_inference_joules", "edge_ee_power_watts", "edge_ee_operating_point",
                 "edge_ee_power_estimated"):
        assert f"# TYPE {name} gauge" in text


def test_energy_power_operating_point_and_deadline_from_records(bundle: Path) -> None:
    b = load_bundle(bundle)
    hook = MetricsHook(0, num_exits=3)

    class Fake:  # what the power and controller hooks add to each record
        def on_result(self, runner, frame, result, record) -> None:
            record.update(energy_mj=12.5, power_w=3.25, operating_point=4, deadline_met=False,
                          energy_estimated=False, risk_price=7.5)

    from edge_ee.pipeline.runner import RunHook

    fake = type("FakeHook", (Fake, RunHook), {})()
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=5),
                    hooks=[fake, hook])
    try:
        runner.run()
        text = scrape(hook.url)
    finally:
        hook.close()
    assert value(text, "edge_ee_energy_per_inference_joules") == 0.0125
    assert value(text, "edge_ee_power_watts") == 3.25
    assert value(text, "edge_ee_operating_point") == 4
    assert value(text, "edge_ee_guard_risk_price") == 7.5
    assert value(text, "edge_ee_deadline_misses_total") == 5
    assert value(text, "edge_ee_power_estimated") == 0


def test_power_derived_from_energy_when_absent(bundle: Path) -> None:
    from edge_ee.pipeline.runner import RunHook

    class Energy(RunHook):  # what the energy hook writes: energies (above idle, total), no power field
        def on_result(self, runner, frame, result, record) -> None:
            record.update(energy_mj=2.0, energy_total_mj=6.0, infer_ms=2.0, energy_estimated=True)

    b = load_bundle(bundle)
    hook = MetricsHook(0, num_exits=3)
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=2),
                    hooks=[Energy(), hook])
    try:
        runner.run()
        text = scrape(hook.url)
    finally:
        hook.close()
    assert value(text, "edge_ee_power_watts") == 3.0  # 6 mJ in total over 2 ms, idle included
    assert value(text, "edge_ee_energy_per_inference_joules") == 0.002  # above idle
    assert value(text, "edge_ee_power_estimated") == 1  # the estimate is marked


def test_metrics_port_from_the_command_line(bundle: Path) -> None:
    p = popen("run", "--model", bundle, "-s", "synthetic", "--fps", "100", "--metrics-port", "0", "-q")
    try:
        line = wait_for(lambda: p.stderr.readline(), what="metrics url")
        while "metrics at" not in line:
            line = p.stderr.readline()
        url = line.split("metrics at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        wait_for(lambda: value(scrape(url), "edge_ee_inferences_total") >= 3, what="inferences")
    finally:
        p.terminate()
        p.communicate(timeout=30)
    assert p.returncode == 0


def test_port_in_use_and_missing_package(monkeypatch) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        with pytest.raises(UsageError, match="cannot serve metrics"):
            MetricsHook(s.getsockname()[1])
    finally:
        s.close()
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(UsageError, match=r"edge-ee\[metrics\]"):
        MetricsHook(0)


def test_scrape_while_running_in_a_thread(bundle: Path) -> None:
    b = load_bundle(bundle)
    hook = MetricsHook(0)
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False, fps=200), hooks=[hook])
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        wait_for(lambda: value(scrape(hook.url), "edge_ee_inferences_total") >= 5, what="live counters")
        assert value(scrape(hook.url), "edge_ee_last_inference_timestamp_seconds") > 1e9
    finally:
        runner.stop()
        t.join(30)
        hook.close()
