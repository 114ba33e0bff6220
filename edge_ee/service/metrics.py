"""Prometheus metrics as a :class:`~edge_ee.pipeline.runner.RunHook` (``--metrics-port``, ``--metrics-addr``).

Names follow Prometheus conventions: base units (seconds, joules, watts), counters end in ``_total``.
prometheus_client is imported only when metrics are asked for (extra ``edge-ee[metrics]``). The
hook has its own registry and HTTP server (threaded, loopback by default), shut down on close.

Energy and power come from the telemetry record (energy hook): ``edge_ee_energy_per_inference_joules``
is the energy above the idle baseline (``energy_mj``), ``edge_ee_power_watts`` the mean power during
the inference with idle power included (``power_w``, else ``energy_total_mj`` / inference time), and
``edge_ee_power_estimated`` is 1 while those figures come from the CPU-utilisation estimate rather
than a sensor (0 when measured), so dashboards can label them "estimated".

With ``--audit``, the audit's series appear with the first frame: ``edge_ee_audit_agreement`` (with
``_lower``/``_upper``), ``edge_ee_audit_samples_total``, ``edge_ee_audit_disagreements_total`` and the
``edge_ee_audit_drift_alarm`` gauge.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .. import __version__
from ..errors import UsageError
from ..pipeline.runner import RunHook, Runner
from ..sources.base import Frame

log = logging.getLogger("edge_ee.service")

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise UsageError("--metrics-port needs the prometheus_client package, which is not installed",
                         "pip install 'edge-ee[metrics]' (or drop metrics_port from the config)") from None
    return prometheus_client


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A malformed or aborted request is the client's problem: one debug line, never a traceback
        (socketserver prints one to stderr, i.e. into the journal, for each)."""
        err = sys.exc_info()[1]
        log.debug("metrics: request from %s failed: %s: %s", client_address, type(err).__name__, err)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def get_stderr(self) -> Any:
        """wsgiref writes an application error's traceback here: to the debug log, one line."""
        return _DebugStream()


class _DebugStream(io.StringIO):
    def flush(self) -> None:
        text = self.getvalue().strip()
        if text:
            log.debug("metrics: %s", text.splitlines()[-1])
        self.seek(0)
        self.truncate()


WILDCARD_ADDRS = ("0.0.0.0", "::", "[::]")


class MetricsHook(RunHook):
    def __init__(self, port: int, addr: str = "127.0.0.1", num_exits: int = 1,
                 bundle_info: dict[str, str] | None = None) -> None:
        pc = _import_prometheus()
        self.registry = r = pc.CollectorRegistry()
        self.inferences = pc.Counter("edge_ee_inferences", "Inferences run.", registry=r)
        self.exits = pc.Counter("edge_ee_exits", "Inferences answered at each exit.", ["exit"], registry=r)
        self.deadline_misses = pc.Counter("edge_ee_deadline_misses",
                                          "Inferences that took longer than the budget.", registry=r)
        self.dropped_frames = pc.Counter("edge_ee_dropped_frames",
                                         "Frames the source skipped because inference was slower.", registry=r)
        self.telemetry_dropped = pc.Counter("edge_ee_telemetry_dropped",
                                            "Telemetry records dropped (disk full, write errors).", registry=r)
        self.latency = pc.Histogram("edge_ee_inference_latency_seconds",
                                    "Preprocessing + inference time, by exit taken.", ["exit"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.energy = pc.Gauge("edge_ee_energy_per_inference_joules",
                               "Energy above the idle baseline of the last inference (when a power source is "
                               "available); estimated when edge_ee_power_estimated is 1.", registry=r)
        self.power = pc.Gauge("edge_ee_power_watts", "Mean power, idle included, during the last inference (record "
                              "power_w, else total energy / inference time); estimated when "
                              "edge_ee_power_estimated is 1.", registry=r)
        self.power_estimated = pc.Gauge("edge_ee_power_estimated",
                                        "1 when energy and power come from the CPU-utilisation estimate, "
                                        "0 when measured by a sensor.", registry=r)
        self.operating_point = pc.Gauge("edge_ee_operating_point",
                                        "Budget controller's operating point (index on the frontier).", registry=r)
        self.risk_price = pc.Gauge("edge_ee_guard_risk_price",
                                   "Deadline guard's price of a miss under a latency budget with the controller "
                                   "(higher: fewer inputs risk a stage that may miss).", registry=r)
        self.threshold = pc.Gauge("edge_ee_threshold", "Exit threshold in force.", ["exit"], registry=r)
        self.last_time = pc.Gauge("edge_ee_last_inference_timestamp_seconds",
                                  "Unix time of the last inference (alert when it stops moving).", registry=r)
        self.info = pc.Info("edge_ee_bundle", "The model bundle being run.", registry=r)
        self.info.info({"edge_ee_version": __version__, **(bundle_info or {})})
        for k in range(num_exits):  # every series exists from the start, at zero
            self.exits.labels(exit=str(k))
            self.latency.labels(exit=str(k))
        self._pc = pc
        self._audit: dict[str, Any] | None = None  # created with the first audited run's record
        self._seen_dropped = 0
        self._seen_tel_dropped = 0
        self._lock = threading.Lock()
        if not addr.strip():
            raise UsageError("--metrics-addr is empty", "give 127.0.0.1 (this machine only, the default), or "
                             "0.0.0.0 / :: to serve every network interface")
        if addr in WILDCARD_ADDRS:
            log.warning("metrics: --metrics-addr %s serves every network interface: anyone who can reach "
                        "this device can read the metrics (use 127.0.0.1 or one interface's address)", addr)
            addr = addr.strip("[]")
        server_cls = _Server6 if ":" in addr else _Server
        try:
            self.server = make_server(addr, port, pc.make_wsgi_app(r), server_cls, handler_class=_QuietHandler)
        except OSError as e:
            raise UsageError(f"cannot serve metrics on {addr}:{port}: {e.strerror or e}",
                             "choose another --metrics-port (0 = any free port) or --metrics-addr") from None
        self.addr = addr
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edge-ee-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    # ------------------------------------------------------------------ hook
    def on_start(self, runner: Runner) -> None:
        for k, t in enumerate(runner.engine.thresholds):
            self.threshold.labels(exit=str(k)).set(t)

    def on_result(self, runner: Runner, frame: Frame, result: Any, record: dict[str, Any]) -> None:
        ex = str(record["exit"])
        self.inferences.inc()
        self.exits.labels(exit=ex).inc()
        self.latency.labels(exit=ex).observe(record["total_ms"] / 1e3)
        if record.get("deadline_met") is False:
            self.deadline_misses.inc()
        e = record.get("energy_mj")  # above idle
        if isinstance(e, (int, float)):
            self.energy.set(e / 1e3)
        p = record.get("power_w")
        et = record.get("energy_total_mj")  # idle included
        if not isinstance(p, (int, float)) and isinstance(et, (int, float)):
            window_ms = record.get("infer_ms") or record.get("total_ms")
            p = et / window_ms if window_ms else None  # mJ / ms = W: mean power over the inference
        if isinstance(p, (int, float)):
            self.power.set(p)
        est = record.get("energy_estimated")
        if isinstance(est, bool):
            self.power_estimated.set(int(est))
        op = record.get("operating_point")
        ctl = record.get("controller")
        if op is None and isinstance(ctl, dict):
            op = ctl.get("operating_point")
        if isinstance(op, (int, float)) and not isinstance(op, bool):
            self.operating_point.set(op)
        rp = record.get("risk_price")
        if isinstance(rp, (int, float)) and not isinstance(rp, bool):
            self.risk_price.set(rp)
        for k, t in enumerate(record.get("thresholds") or ()):
            if isinstance(t, (int, float)):
                self.threshold.labels(exit=str(k)).set(t)
        self.last_time.set(record.get("ts") or 0)
        if "audited" in record:
            self._audit_metrics(record)
        self._sync_drops(runner)

    def _audit_metrics(self, record: dict[str, Any]) -> None:
        """``--audit``: the running agreement with the final exit (and its interval), audits, the drift alarm."""
        a = self._audit
        if a is None:
            pc, r = self._pc, self.registry
            a = self._audit = {
                "agreement": pc.Gauge("edge_ee_audit_agreement", "Audit: estimated agreement of the answers given "
                                      "with the final exit (all frames; last 800 audits).", registry=r),
                "lower": pc.Gauge("edge_ee_audit_agreement_lower", "Audit: lower end of the agreement's "
                                  "interval.", registry=r),
                "upper": pc.Gauge("edge_ee_audit_agreement_upper", "Audit: upper end of the agreement's "
                                  "interval.", registry=r),
                "samples": pc.Counter("edge_ee_audit_samples", "Audit: frames answered early that were also "
                                      "run through the whole model.", registry=r),
                "disagreements": pc.Counter("edge_ee_audit_disagreements", "Audit: audited frames whose answer "
                                            "differed from the final exit's.", registry=r),
                "alarm": pc.Gauge("edge_ee_audit_drift_alarm", "Audit: 1 while the drift alarm is on (the "
                                  "disagreement with the final exit exceeds the target).", registry=r),
            }
        if record.get("audited"):
            a["samples"].inc()
            if record.get("audit_agree") is False:
                a["disagreements"].inc()
            for key, name in (("agreement", "audit_agreement"), ("lower", "audit_agreement_lower"),
                              ("upper", "audit_agreement_upper")):
                v = record.get(name)
                if isinstance(v, (int, float)):
                    a[key].set(v)
        a["alarm"].set(int(bool(record.get("drift_alarm"))))

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        self._sync_drops(runner)

    def _sync_drops(self, runner: Runner) -> None:
        with self._lock:
            d = int(getattr(runner.source, "dropped", 0) or 0)
            if d > self._seen_dropped:
                self.dropped_frames.inc(d - self._seen_dropped)
                self._seen_dropped = d
            t = runner.telemetry.dropped if runner.telemetry is not None else 0
            if t > self._seen_tel_dropped:
                self.telemetry_dropped.inc(t - self._seen_tel_dropped)
                self._seen_tel_dropped = t

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2.0)
