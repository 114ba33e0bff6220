"""MQTT output as a :class:`~edge_ee.pipeline.runner.RunHook` (``--mqtt mqtt://HOST:PORT/TOPIC``), with Home
Assistant MQTT discovery.

Topics under the base topic ``T`` (Frigate-style):

* ``T/available``: ``online`` / ``offline``, retained; ``offline`` is also the broker's last will, so a
  crashed or unplugged device shows as unavailable;
* ``T/answer``: one JSON object per inference (label, confidence, exit, latency, energy, ...);
* ``T/event``: one JSON object per keyword detection (``event_type`` = the keyword, for Home
  Assistant's ``event`` entities);
* ``T/status``: every ``status`` seconds (and once at the end) the run's figures so far;
* ``<discovery prefix>/<component>/<node_id>/<object_id>/config``: retained Home Assistant discovery
  messages, sent on every (re)connect and when Home Assistant announces itself on
  ``<prefix>/status``, so sensors appear without YAML.

Publishing never blocks inference: ``on_result`` only appends to a bounded queue (the oldest message
is dropped and counted when it is full, e.g. while the broker is unreachable); a publisher thread
encodes and hands messages to paho-mqtt, whose own network thread connects, reconnects with
exponential back-off (1 s doubling to 60 s) and writes to the socket. Connection problems are
warnings naming the broker and the reason; the run goes on and its telemetry is unaffected.

URL form, parsed and checked once by :func:`parse_mqtt_url` (a bad one is a usage error, exit 2):
``mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT][/BASE/TOPIC][?OPTION=VALUE&...]`` with options
``status`` (seconds between status messages, default 10; 0: only at the end), ``queue`` (messages
held while the broker is slow or away, default 1000), ``qos`` (0 or 1 for answers, events and
status; default 0), ``rate`` (at most this many answers per second, the others skipped and counted;
default 0: every answer), ``discovery`` (Home Assistant discovery prefix, default ``homeassistant``;
``off`` to send none), ``node`` (node id in discovery topics and unique ids, default derived from
the host name and topic) and ``client_id``. The base topic defaults to ``edge-ee``; wildcards
(``+``, ``#``), empty levels and a leading ``$`` are refused.

paho-mqtt (2.x) is imported only when ``--mqtt`` is given (extra ``edge-ee[mqtt]``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from .. import __version__
from ..errors import UsageError
from ..pipeline.runner import RunHook, Runner
from ..sources.base import Frame

log = logging.getLogger("edge_ee.mqtt")

DEFAULT_TOPIC = "edge-ee"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
OPTIONS = ("status", "queue", "qos", "rate", "discovery", "node", "client_id")
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
FLUSH_TIMEOUT_S = 2.0  # at the end of a run: how long queued messages may take to reach a connected broker


@dataclass(frozen=True)
class MqttTarget:
    """A parsed ``--mqtt`` URL."""

    host: str
    port: int
    topic: str  # base topic, no trailing slash
    tls: bool = False
    username: str | None = None
    password: str | None = None
    status_s: float = 10.0
    queue: int = 1000
    qos: int = 0
    rate: float = 0.0  # answers per second at most (0: every answer)
    discovery: str | None = "homeassistant"
    node_id: str = ""
    client_id: str = ""

    @property
    def url(self) -> str:
        """The URL without the password (for messages and the summary)."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}/{self.topic}"


def _node_id(text: str) -> str:
    """Home Assistant node ids and unique ids: [a-zA-Z0-9_-] only."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_") or "edge_ee"


def _check_topic(topic: str, what: str, url: str) -> None:
    if "+" in topic or "#" in topic:
        raise UsageError(f"--mqtt {url!r}: {what} {topic!r} contains a wildcard (+ or #); a publish topic "
                         "cannot have wildcards", "give a plain topic, e.g. mqtt://broker:1883/edge-ee/cam1")
    if topic.startswith("$"):
        raise UsageError(f"--mqtt {url!r}: {what} {topic!r} starts with '$' (reserved for the broker, e.g. $SYS)",
                         "give a topic that does not start with $")
    if any(not level for level in topic.split("/")) or "\x00" in topic:
        raise UsageError(f"--mqtt {url!r}: {what} {topic!r} has an empty level (// or a leading /)",
                         "e.g. mqtt://broker:1883/edge-ee/cam1")
    if len(topic.encode()) > 32000:
        raise UsageError(f"--mqtt {url!r}: {what} is too long", "use a shorter topic")


_HINT = "e.g. --mqtt mqtt://127.0.0.1:1883/edge-ee (options: ?status=10&queue=1000&qos=0&discovery=off)"
# numeric URL options: MqttTarget field, parser, valid range
_NUMERIC: dict[str, tuple[str, Callable[[str], float], Callable[[float], bool]]] = {
    "status": ("status_s", lambda v: float(v.removesuffix("s")), lambda x: math.isfinite(x) and x >= 0),
    "queue": ("queue", int, lambda x: x >= 1),
    "qos": ("qos", int, lambda x: x in (0, 1)),
    "rate": ("rate", float, lambda x: math.isfinite(x) and x >= 0),
}


def _broker(text: str, u: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port (None: the scheme's default) of the URL, checked."""
    scheme = u.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UsageError(f"--mqtt {text!r}: the URL must start with mqtt:// or mqtts:// (TLS)", _HINT)
    try:
        port = u.port
    except ValueError:
        raise UsageError(f"--mqtt {text!r}: the port is not a number between 1 and 65535", _HINT) from None
    if port == 0:
        raise UsageError(f"--mqtt {text!r}: port 0 is not a broker port", _HINT)
    host = u.hostname
    if not host:
        raise UsageError(f"--mqtt {text!r}: no broker host", _HINT)
    return scheme, host, port


def _query(text: str, u: SplitResult) -> dict[str, str]:
    """The options after '?', every key known."""
    try:
        # '+' stays '+' (a wildcard to refuse), not the form encoding of a space
        pairs = parse_qsl(u.query.replace("+", "%2B"), keep_blank_values=True, strict_parsing=bool(u.query))
    except ValueError:
        raise UsageError(f"--mqtt {text!r}: cannot read the options after '?'", _HINT) from None
    opts: dict[str, str] = {}
    for k, v in pairs:
        if k not in OPTIONS:
            raise UsageError(f"--mqtt {text!r}: unknown option {k!r}", "options: " + ", ".join(OPTIONS))
        opts[k] = v
    return opts


def _numeric_options(text: str, opts: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for key, (field, parse, ok) in _NUMERIC.items():
            if key in opts:
                v = parse(opts[key])
                if not ok(v):
                    raise ValueError
                out[field] = v
    except ValueError:
        raise UsageError(f"--mqtt {text!r}: bad option value",
                         "status=SECONDS (>= 0), queue=N (>= 1), qos=0 or 1, rate=ANSWERS_PER_SECOND (>= 0)") from None
    return out


def _discovery(text: str, opts: dict[str, str]) -> str | None:
    """The Home Assistant discovery prefix (None: off)."""
    d = opts.get("discovery", "homeassistant").strip("/")
    if d.lower() in ("off", "no", "none", "false", "0", ""):
        return None
    _check_topic(d, "discovery prefix", text)
    return d


def parse_mqtt_url(text: str) -> MqttTarget:
    """Parse and check ``mqtt[s]://[USER[:PASS]@]HOST[:PORT][/TOPIC][?opts]``; raise UsageError (exit 2)."""
    if not text or not text.strip():
        raise UsageError("--mqtt is empty", _HINT)
    u = urlsplit(text.strip())
    scheme, host, port = _broker(text, u)
    if "#" in text:  # urlsplit would take it for a fragment
        raise UsageError(f"--mqtt {text!r}: '#' is a wildcard; a publish topic cannot have wildcards", _HINT)
    topic = unquote(u.path).strip("/") if u.path not in ("", "/") else DEFAULT_TOPIC
    _check_topic(topic, "topic", text)
    opts = _query(text, u)
    numeric = _numeric_options(text, opts)
    node = _node_id(opts.get("node") or f"{socket.gethostname()}_{topic}")
    return MqttTarget(host=host, port=port or DEFAULT_PORTS[scheme], topic=topic, tls=scheme == "mqtts",
                      username=unquote(u.username) if u.username else None,
                      password=unquote(u.password) if u.password is not None else None,
                      discovery=_discovery(text, opts), node_id=node,
                      client_id=opts.get("client_id") or f"edge-ee-{node}"[:64], **numeric)


def _import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise UsageError("--mqtt needs the paho-mqtt package (2.x), which is not installed",
                         "pip install 'edge-ee[mqtt]' (or drop mqtt from the config)") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise UsageError("--mqtt needs paho-mqtt 2.x; an older version is installed", "pip install 'paho-mqtt>=2'")
    return mqtt


def _describe_error(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host name ({e.strerror or e})"
    if isinstance(e, TimeoutError | socket.timeout):
        return "connection timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def discovery_messages(t: MqttTarget, bundle: dict[str, Any], keywords: list[str] | None) -> list[tuple[str, dict]]:
    """Home Assistant discovery configs: (topic, payload) pairs, published retained."""
    if t.discovery is None:
        return []
    base = t.topic
    device = {"identifiers": [f"edge_ee_{t.node_id}"], "name": f"edge-ee {t.topic}",
              "model": f"{bundle.get('name', '?')} ({bundle.get('task', '?')})", "manufacturer": "edge-ee",
              "sw_version": __version__}
    common = {"availability_topic": f"{base}/available", "payload_available": "online",
              "payload_not_available": "offline", "device": device}

    def sensor(obj: str, name: str, topic: str, template: str, **extra: Any) -> tuple[str, dict]:
        cfg = {"name": name, "unique_id": f"edge_ee_{t.node_id}_{obj}", "state_topic": f"{base}/{topic}",
               "value_template": template, **common, **extra}
        return f"{t.discovery}/sensor/{t.node_id}/{obj}/config", cfg

    out = [
        sensor("answer", "Answer", "answer", "{{ value_json.label }}", icon="mdi:eye",
               json_attributes_topic=f"{base}/answer"),
        sensor("confidence", "Confidence", "answer", "{{ (value_json.confidence * 100) | round(1) }}",
               unit_of_measurement="%", state_class="measurement"),
        sensor("exit", "Exit taken", "answer", "{{ value_json.exit }}", state_class="measurement",
               icon="mdi:exit-run"),
        sensor("latency", "Latency", "answer", "{{ value_json.latency_ms }}", unit_of_measurement="ms",
               device_class="duration", state_class="measurement"),
        sensor("energy", "Energy per inference above idle", "answer", "{{ value_json.energy_mj }}",
               unit_of_measurement="mJ", state_class="measurement", icon="mdi:lightning-bolt"),
        sensor("fps", "Inferences per second", "status", "{{ value_json.fps }}", unit_of_measurement="1/s",
               state_class="measurement"),
        sensor("frames", "Inferences", "status", "{{ value_json.frames }}", state_class="total_increasing"),
        sensor("macs_saved", "Compute saved", "status", "{{ value_json.macs_saved_pct }}", unit_of_measurement="%",
               state_class="measurement", icon="mdi:speedometer"),
        sensor("mqtt_dropped", "MQTT messages dropped", "status", "{{ value_json.mqtt.dropped }}",
               state_class="total_increasing", entity_category="diagnostic"),
    ]
    if keywords:
        obj = "keyword"
        out.append((f"{t.discovery}/event/{t.node_id}/{obj}/config",
                    {"name": "Keyword", "unique_id": f"edge_ee_{t.node_id}_{obj}", "state_topic": f"{base}/event",
                     "event_types": list(keywords), "icon": "mdi:microphone-message", **common}))
    return out


class MqttHook(RunHook):
    """Publishes answers, keyword events and status; see the module docstring."""

    def __init__(self, target: MqttTarget, bundle_info: dict[str, Any] | None = None,
                 labels: list[str] | None = None) -> None:
        self.mqtt = _import_paho()
        self.target = target
        self.bundle_info = dict(bundle_info or {})
        task = self.bundle_info.get("task")
        if task == "keyword_spotting" and labels:
            from ..pipeline.kws import is_keyword

            self.keywords: list[str] | None = [lab for lab in labels if is_keyword(lab)]
        else:
            self.keywords = None
        self._q: deque[tuple[str, Any, bool, int]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self.published = 0
        self.dropped = 0
        self.skipped = 0  # answers left out by the rate limit
        self._next_answer = -math.inf
        self.connects = 0
        self.connection_errors = 0
        self.last_error: str | None = None
        self._connected = False
        self._warned = False
        self._refused = False
        self._inflight = 0  # from the queue, handed to paho, not yet written to the socket (or acknowledged)
        self._sys_mids: set[int] = set()  # message ids of availability and discovery messages (network thread)
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._closed = False
        self._next_status = math.inf
        self._t0 = time.monotonic()
        self._last_frames = 0
        self._last_status_t = self._t0

    # ------------------------------------------------------------------ connection
    def _make_client(self) -> Any:
        mqtt = self.mqtt
        hook = self

        class _Client(mqtt.Client):  # type: ignore[misc,name-defined]
            def reconnect(self) -> Any:  # keeps the reason a connection attempt failed (paho drops it)
                try:
                    return super().reconnect()
                except OSError as e:
                    hook.last_error = _describe_error(e)
                    raise

        t = self.target
        c = _Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=t.client_id,
                    protocol=mqtt.MQTTv311)
        if t.username:
            c.username_pw_set(t.username, t.password)
        if t.tls:
            c.tls_set()
        c.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        c.connect_timeout = 5.0
        c.will_set(f"{t.topic}/available", "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _warn(self, msg: str) -> None:
        log.warning("mqtt: %s", msg)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self.connection_errors += 1
            self.last_error = f"broker refused the connection: {reason_code}"
            self._refused = True  # the broker closes the socket next: that is not news
            if not self._warned:
                self._warned = True
                self._warn(f"{self.target.url}: {self.last_error} (check user name, password and the broker's "
                           f"access rules); retrying with back-off ({RECONNECT_MIN_S}-{RECONNECT_MAX_S} s); "
                           "inference goes on")
            return
        self._refused = False
        self.connects += 1
        if self._warned:
            log.warning("mqtt: connected to %s again", self.target.url)
            self._warned = False
        t = self.target
        # availability and discovery first, straight to paho (they are few, retained, and must not be dropped)
        self._sys_mids.add(client.publish(f"{t.topic}/available", "online", qos=1, retain=True).mid)
        if t.discovery is not None:
            client.subscribe(f"{t.discovery}/status", qos=0)
            self._publish_discovery(client)
        with self._cond:
            self._connected = True
            self._inflight = 0  # paho discards what it had not written before the reconnect
            self._cond.notify_all()

    def _publish_discovery(self, client: Any) -> None:
        for topic, cfg in discovery_messages(self.target, self.bundle_info, self.keywords):
            self._sys_mids.add(client.publish(topic, json.dumps(cfg, separators=(",", ":")), qos=1, retain=True).mid)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # Home Assistant publishes "online" on <prefix>/status when it starts: send discovery again
        if self.target.discovery is not None and msg.topic == f"{self.target.discovery}/status" \
                and msg.payload.strip().lower() == b"online":
            self._publish_discovery(client)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.connection_errors += 1
        if not self._warned:
            self._warned = True
            self._warn(f"cannot connect to {self.target.url}: {self.last_error or 'connection failed'}; retrying "
                       f"with back-off ({RECONNECT_MIN_S}-{RECONNECT_MAX_S} s); inference goes on, up to "
                       f"{self.target.queue} messages wait (oldest dropped)")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._connected = False
        if self._stop or self._refused:
            return
        self.connection_errors += 1
        self.last_error = f"connection lost: {reason_code}"
        if not self._warned:
            self._warned = True
            self._warn(f"{self.target.url}: connection lost ({reason_code}); reconnecting with back-off "
                       f"({RECONNECT_MIN_S}-{RECONNECT_MAX_S} s); inference goes on")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if mid in self._sys_mids:  # availability and discovery: not from the queue
            self._sys_mids.discard(mid)
            return
        with self._cond:
            if self._inflight > 0:
                self._inflight -= 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ queue
    def _put(self, subtopic: str, payload: Any, retain: bool = False) -> None:
        """Non-blocking: the oldest message makes room when the queue is full (counted as dropped)."""
        with self._cond:
            if len(self._q) >= self.target.queue:
                self._q.popleft()
                self.dropped += 1
            self._q.append((f"{self.target.topic}/{subtopic}", payload, retain, self.target.qos))
            self._cond.notify()

    def _publisher(self) -> None:
        mqtt = self.mqtt
        ok = mqtt.MQTT_ERR_SUCCESS
        limit = self.target.queue  # messages handed to paho but not yet on the wire
        while True:
            with self._cond:
                while not self._stop and not (self._q and self._connected and self._inflight < limit):
                    self._cond.wait(0.5)
                if not (self._q and self._connected):
                    if self._stop:
                        return
                    continue
                batch = []
                while self._q and self._inflight + len(batch) < limit:
                    batch.append(self._q.popleft())
                self._inflight += len(batch)
            for i, (topic, payload, retain, qos) in enumerate(batch):
                data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"),
                                                                           default=_json_default)
                try:
                    rc = self._client.publish(topic, data, qos=qos, retain=retain).rc
                except Exception as e:  # a closed socket mid-publish and the like: count, never raise
                    rc, self.last_error = None, str(e)
                if rc == ok:
                    self.published += 1
                    continue
                with self._cond:
                    self._inflight = max(0, self._inflight - (len(batch) - i))
                    if rc == mqtt.MQTT_ERR_NO_CONN:  # connection lost: put the rest back, in order
                        self._connected = False  # until on_connect; on_disconnect may not have run yet
                        for m in reversed(batch[i:]):
                            self._q.appendleft(m)
                        while len(self._q) > self.target.queue:
                            self._q.popleft()
                            self.dropped += 1
                    else:
                        self.dropped += 1
                        for m in reversed(batch[i + 1:]):
                            self._q.appendleft(m)
                break

    # ------------------------------------------------------------------ hook
    def on_start(self, runner: Runner) -> None:
        if self._client is not None:
            return
        self._t0 = self._last_status_t = time.monotonic()
        self._next_status = self._t0 + self.target.status_s if self.target.status_s > 0 else math.inf
        self._client = self._make_client()
        self._client.connect_async(self.target.host, self.target.port, keepalive=30)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._publisher, name="edge-ee-mqtt", daemon=True)
        self._thread.start()

    def on_result(self, runner: Runner, frame: Frame, result: Any, record: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.target.rate > 0 and now < self._next_answer:
            self.skipped += 1
        else:
            if self.target.rate > 0:
                self._next_answer = now + 1.0 / self.target.rate
            self._answer(record)
        det = record.get("detection")
        if det:
            self._put("event", {"event_type": det.get("keyword"), **det})
        if now >= self._next_status:
            self._next_status = now + self.target.status_s
            self._put("status", self._status(runner, now, "running"))

    def _answer(self, record: dict[str, Any]) -> None:
        msg = {"ts": record.get("ts"), "frame": record.get("frame"), "label": record.get("label"),
               "confidence": record.get("confidence"), "exit": record.get("exit"),
               "latency_ms": record.get("total_ms"), "e2e_ms": record.get("e2e_ms"),
               "energy_mj": record.get("energy_mj"), "energy_estimated": record.get("energy_estimated"),
               "deadline_met": record.get("deadline_met")}
        if "truth" in record:
            msg["truth"] = record["truth"]
            msg["correct"] = record.get("correct")
        self._put("answer", msg)

    def _status(self, runner: Runner, now: float, state: str, summary: dict[str, Any] | None = None) -> dict:
        s = summary if summary is not None else runner.stats.summary()
        frames = s.get("frames", 0)
        dt = now - self._last_status_t
        fps = (frames - self._last_frames) / dt if dt > 0 else None
        self._last_frames, self._last_status_t = frames, now
        lat = s.get("latency_ms") or {}
        saved = s.get("macs_saved")
        out = {"ts": time.time(), "state": state, "uptime_s": round(now - self._t0, 3), "frames": frames,
               "fps": None if fps is None else round(fps, 3), "exits": s.get("exits"),
               "latency_ms": {"p50": lat.get("p50"), "p99": lat.get("p99")},
               "macs_saved_pct": None if saved is None else round(100 * saved, 2),
               "accuracy": s.get("accuracy"), "energy_mj_per_inference": s.get("energy_mj_per_inference"),
               "energy_estimated": s.get("energy_estimated"), "deadline_hit_rate": s.get("deadline_hit_rate"),
               "dropped_frames": getattr(runner.source, "dropped", 0) or s.get("dropped_frames", 0),
               "bundle": self.bundle_info.get("name"),
               "mqtt": {"published": self.published, "dropped": self.dropped, "skipped": self.skipped,
                        "connects": self.connects}}
        if state == "stopped":
            out["stop_reason"] = s.get("stop_reason")
        return out

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        if self._client is None:
            return
        self._put("status", self._status(runner, time.monotonic(), "stopped", summary))
        self.flush(FLUSH_TIMEOUT_S)
        summary["mqtt"] = self.stats()

    def flush(self, timeout: float) -> bool:
        """Wait (while connected, at most ``timeout`` s) until every queued message is on the wire."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._connected and (self._q or self._inflight > 0):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return not self._q

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._q)
        return {"url": self.target.url, "published": self.published, "dropped": self.dropped,
                "skipped_answers": self.skipped, "queued": queued,
                "connected": self._connected, "connects": self.connects,
                "connection_errors": self.connection_errors, "last_error": self.last_error}

    def close(self) -> None:
        """Say ``offline`` (retained), disconnect and stop both threads; bounded in time even when the broker
        is unreachable."""
        if self._closed or self._client is None:
            return
        self._closed = True
        c = self._client
        if self._connected:
            try:
                c.publish(f"{self.target.topic}/available", "offline", qos=1, retain=True).wait_for_publish(1.0)
            except Exception as e:  # the connection went away meanwhile
                log.debug("mqtt: offline message not sent: %s", e)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        try:
            c.disconnect()
        except Exception as e:  # pragma: no cover - paho raises only on misuse
            log.debug("mqtt: disconnect: %s", e)
        # loop_stop joins paho's thread, which may sit in a connect attempt (connect_timeout): do not wait longer
        stopper = threading.Thread(target=c.loop_stop, name="edge-ee-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(c.connect_timeout + 1.0)
        if self._thread is not None:
            self._thread.join(1.0)


def _json_default(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def format_mqtt_summary(summary: dict[str, Any]) -> str:
    m = summary.get("mqtt")
    if not m:
        return ""
    line = f"mqtt: {m['published']} messages published to {m['url']}, {m['dropped']} dropped"
    if m.get("skipped_answers"):
        line += f", {m['skipped_answers']} answers skipped (rate limit)"
    if m.get("queued"):
        line += f", {m['queued']} not sent"
    if not m.get("connects"):
        line += f" (never connected: {m.get('last_error') or 'broker unreachable'})"
    elif m.get("connection_errors"):
        line += f" ({m['connects']} connections, last problem: {m.get('last_error')})"
    return line
