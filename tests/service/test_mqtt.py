"""--mqtt: URL checks, answers/events/status and Home Assistant discovery on a real mosquitto broker, and
the bad cases (broker unreachable, broker dropping the connection, bad URL, wildcard topic): a clear
message, inference goes on, telemetry whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import ee, popen, records, wait_for
from mqtt_broker import Broker, Subscriber, free_port

from edge_ee.errors import UsageError
from edge_ee.service.mqtt import MqttHook, discovery_messages, parse_mqtt_url

pytest.importorskip("paho.mqtt.client")


# ------------------------------------------------------------------------------------------ URL parsing
def test_url_defaults_and_options() -> None:
    t = parse_mqtt_url("mqtt://broker.local")
    assert (t.host, t.port, t.topic, t.tls, t.qos, t.queue, t.status_s) == ("broker.local", 1883, "edge-ee",
                                                                              False, 0, 1000, 10.0)
    assert t.discovery == "homeassistant" and t.node_id and t.client_id.startswith("edge-ee-")
    t = parse_mqtt_url("mqtts://user:se%40cret@10.0.0.2:8884/home/cam1/?status=2.5&queue=50&qos=1&discovery=off"
                       "&node=garage")
    assert (t.host, t.port, t.topic, t.tls, t.qos, t.queue, t.status_s) == ("10.0.0.2", 8884, "home/cam1", True, 1,
                                                                              50, 2.5)
    assert (t.username, t.password, t.discovery, t.node_id) == ("user", "se@cret", None, "garage")
    assert "se@cret" not in t.url and "secret" not in t.url and t.url == "mqtts://user@10.0.0.2:8884/home/cam1"
    assert parse_mqtt_url("mqtts://h").port == 8883
    assert parse_mqtt_url("mqtt://[::1]:1884/x").url == "mqtt://[::1]:1884/x"


@pytest.mark.parametrize(("url", "match"), [
    ("http://broker/x", "mqtt:// or mqtts://"),
    ("broker:1883/x", "mqtt:// or mqtts://"),
    ("mqtt:///x", "no broker host"),
    ("mqtt://h:99999/x", "port"),
    ("mqtt://h:abc/x", "port"),
    ("mqtt://h/home/+/cam", "wildcard"),
    ("mqtt://h/home/%23", "wildcard"),
    ("mqtt://h/home/#", "wildcard"),
    ("mqtt://h/$SYS/x", r"starts with '\$'"),
    ("mqtt://h/a//b", "empty level"),
    ("mqtt://h/x?colour=red", "unknown option 'colour'"),
    ("mqtt://h/x?qos=2", "bad option value"),
    ("mqtt://h/x?queue=0", "bad option value"),
    ("mqtt://h/x?status=-1", "bad option value"),
    ("mqtt://h/x?rate=fast", "bad option value"),
    ("mqtt://h/x?discovery=ha/+", "wildcard"),
    ("", "empty"),
])
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_mqtt_url(url)


def test_bad_url_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    r = ee("run", "-s", "synthetic", "-n", "3", "--mqtt", "mqtt://127.0.0.1:1883/cams/+/answer",
           "--log", tmp_path / "t.jsonl")
    assert r.returncode == 2, r.stderr
    assert "usage error" in r.stderr and "wildcard" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t.jsonl").exists()  # refused before anything ran


def test_missing_paho_is_a_usage_error(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    with pytest.raises(UsageError, match=r"edge-ee\[mqtt\]"):
        MqttHook(parse_mqtt_url("mqtt://127.0.0.1/x"))


def test_discovery_payloads_are_complete() -> None:
    t = parse_mqtt_url("mqtt://h/edge/kitchen?node=kitchen")
    msgs = dict(discovery_messages(t, {"name": "kws-dscnn-ee", "task": "keyword_spotting"}, ["yes", "no"]))
    assert "homeassistant/sensor/kitchen/answer/config" in msgs
    ev = msgs["homeassistant/event/kitchen/keyword/config"]
    assert ev["event_types"] == ["yes", "no"] and ev["state_topic"] == "edge/kitchen/event"
    ids = set()
    for topic, cfg in msgs.items():
        assert topic.startswith("homeassistant/") and topic.endswith("/config")
        for key in ("name", "unique_id", "state_topic", "device", "availability_topic"):
            assert cfg[key], (topic, key)
        assert cfg["state_topic"].startswith("edge/kitchen/")
        assert cfg["availability_topic"] == "edge/kitchen/available"
        assert cfg["device"]["identifiers"] == ["edge_ee_kitchen"]
        ids.add(cfg["unique_id"])
    assert len(ids) == len(msgs)  # unique ids are unique
    assert discovery_messages(parse_mqtt_url("mqtt://h/x?discovery=off"), {}, None) == []


# ------------------------------------------------------------------------------------------ real broker
@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def _json(msgs: list[bytes]) -> list[dict]:
    return [json.loads(m) for m in msgs]


def test_answers_status_availability_and_discovery(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, "t/cam/#", "homeassistant/#")
    log = tmp_path / "t.jsonl"
    try:
        r = ee("run", "-s", "sample", "-n", "40", "--fps", "100", "--json", "--log", log, "--power-source",
               "estimate", "--power-baseline", "0", "--mqtt", f"mqtt://127.0.0.1:{broker.port}/t/cam?status=0.1&node=n1")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)  # stdout is the JSON summary only
        assert summary["mqtt"]["published"] >= 41 and summary["mqtt"]["dropped"] == 0
        assert summary["mqtt"]["connects"] == 1 and summary["mqtt"]["url"] == f"mqtt://127.0.0.1:{broker.port}/t/cam"
        assert "mqtt: " in r.stderr  # the human summary went to stderr
        wait_for(lambda: any(json.loads(s)["state"] == "stopped" for s in sub.on("t/cam/status")), 10, "status")
        wait_for(lambda: sub.on("t/cam/available")[-1:] == [b"offline"], 10, "offline")
        answers = _json(sub.on("t/cam/answer"))
        assert [a["frame"] for a in answers] == list(range(40))  # all of them, in order
        tel = records(log)
        assert len(tel) == 40
        for a, rec in zip(answers, tel):
            assert (a["label"], a["exit"], a["confidence"], a["latency_ms"]) == (rec["label"], rec["exit"],
                                                                                 rec["confidence"], rec["total_ms"])
            assert a["truth"] == rec["truth"] and a["energy_estimated"] is True
            assert isinstance(a["energy_mj"], float)
        status = _json(sub.on("t/cam/status"))
        final = status[-1]
        assert final["state"] == "stopped" and final["frames"] == 40 and final["stop_reason"] == "max frames reached"
        assert sum(final["exits"]) == 40 and final["accuracy"] == summary["accuracy"]
        assert len(status) >= 2  # periodic ones while running (status=0.1 s at 100 fps), then the final one
        assert sub.on("t/cam/available")[0] == b"online"
        configs = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/")}
        assert "homeassistant/sensor/n1/answer/config" in configs
        assert configs["homeassistant/sensor/n1/latency/config"]["state_topic"] == "t/cam/answer"
        assert not any("/event/" in t for t in configs)  # no keyword entity for an image classifier
    finally:
        sub.close()
    # retained: a subscriber arriving later (Home Assistant starting) still gets discovery and availability
    late = Subscriber(broker.port, "t/cam/available", "homeassistant/#")
    try:
        wait_for(lambda: late.on("t/cam/available") and len(late.messages) >= 9, 10, "retained messages")
        assert late.on("t/cam/available") == [b"offline"]
        assert all(r for _, _, r in late.messages)
    finally:
        late.close()


def test_keyword_events_and_event_entity(broker: Broker) -> None:
    sub = Subscriber(broker.port, "kws/#", "homeassistant/#")
    try:
        r = ee("run", "-s", "sample:kws", "--json", "--power-source", "none", "--mqtt",
               f"mqtt://127.0.0.1:{broker.port}/kws?node=k1")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert "keyword '" in r.stderr  # keyword events go to stderr with --json
        wait_for(lambda: sub.on("kws/available")[-1:] == [b"offline"], 10, "offline")
        events = _json(sub.on("kws/event"))
        assert [e["keyword"] for e in events] == [d["keyword"] for d in summary["detections"]]
        assert events and all(e["event_type"] == e["keyword"] for e in events)
        cfg = json.loads(sub.on("homeassistant/event/k1/keyword/config")[0])
        assert set(e["keyword"] for e in events) <= set(cfg["event_types"])
    finally:
        sub.close()


def test_unreachable_broker_inference_goes_on(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    log = tmp_path / "t.jsonl"
    t0 = time.monotonic()
    r = ee("run", "-s", "synthetic", "-n", "200", "--json", "--log", log, "--power-source", "none",
           "--mqtt", f"mqtt://127.0.0.1:{port}/x?queue=20")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 60
    assert f"cannot connect to mqtt://127.0.0.1:{port}/x: Connection refused" in r.stderr
    assert "inference goes on" in r.stderr and "Traceback" not in r.stderr
    m = json.loads(r.stdout)["mqtt"]
    assert m["connects"] == 0 and m["published"] == 0
    assert m["queued"] == 20 and m["dropped"] == 200 + 1 - 20  # answers + final status, 20 kept
    assert len(records(log)) == 200


def test_unresolvable_host(tmp_path: Path) -> None:
    r = ee("run", "-s", "synthetic", "-n", "5", "--power-source", "none", "--mqtt", "mqtt://no-such-host.invalid/x")
    assert r.returncode == 0, r.stderr
    assert "cannot connect to mqtt://no-such-host.invalid:1883/x: cannot resolve the host name" in r.stderr
    assert "never connected" in r.stdout


def test_rate_limit_skips_answers_not_events_or_status(broker: Broker) -> None:
    sub = Subscriber(broker.port, "r/#")
    try:
        r = ee("run", "-s", "synthetic", "-n", "60", "--fps", "100", "--json", "--power-source", "none",
               "--mqtt", f"mqtt://127.0.0.1:{broker.port}/r?rate=4&discovery=off")
        assert r.returncode == 0, r.stderr
        m = json.loads(r.stdout)["mqtt"]
        wait_for(lambda: sub.on("r/status"), 10, "final status")
        answers = len(sub.on("r/answer"))
        assert 1 <= answers <= 6  # ~0.6 s at 4 answers per second (the first one at once)
        assert m["skipped_answers"] == 60 - answers and "answers skipped (rate limit)" in r.stderr
        assert json.loads(sub.on("r/status")[-1])["frames"] == 60
    finally:
        sub.close()


def test_broker_refusing_the_client(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    try:
        r = ee("run", "-s", "synthetic", "-n", "30", "--fps", "20", "--power-source", "none",
               "--mqtt", f"mqtt://user:pw@127.0.0.1:{b.port}/x")
    finally:
        b.stop()
    assert r.returncode == 0, r.stderr
    warnings = [x for x in r.stderr.splitlines() if "mqtt:" in x and "WARNING" in x]
    assert len(warnings) == 1 and "broker refused the connection: Not authorized" in warnings[0], r.stderr
    assert "pw" not in r.stderr.replace("pw@", "")  # the password is never shown
    assert "never connected: broker refused the connection: Not authorized" in r.stdout


def test_home_assistant_restart_gets_discovery_again(broker: Broker) -> None:
    sub = Subscriber(broker.port, "homeassistant/sensor/ha1/#")
    p = popen("run", "-s", "synthetic", "--fps", "20", "--duration", "6", "-q", "--power-source", "none",
              "--mqtt", f"mqtt://127.0.0.1:{broker.port}/ha?node=ha1")
    try:
        first = wait_for(lambda: len(sub.messages) >= 9 and len(sub.messages), 20, "discovery")
        time.sleep(0.5)
        sub.c.publish("homeassistant/status", "online")  # what Home Assistant says when it starts
        wait_for(lambda: len(sub.messages) >= 2 * first, 10, "discovery sent again")
    finally:
        p.terminate()
        p.communicate(timeout=30)
        sub.close()
    assert p.returncode == 0


def test_queue_is_bounded_and_put_never_blocks() -> None:
    hook = MqttHook(parse_mqtt_url(f"mqtt://127.0.0.1:{free_port()}/x?queue=100"))
    t0 = time.perf_counter()
    for i in range(20000):
        hook._put("answer", {"frame": i})
    dt = time.perf_counter() - t0
    assert hook.dropped == 20000 - 100 and hook.stats()["queued"] == 100
    assert dt < 5.0  # generous: a bounded deque append per message, no network


def test_broker_dropping_the_connection(broker: Broker, tmp_path: Path) -> None:
    """The broker dies mid-run and comes back on the same port: a warning, inference goes on, the hook
    reconnects (back-off from 1 s), answers flow again, the telemetry has every frame."""
    log = tmp_path / "t.jsonl"
    sub = Subscriber(broker.port, "d/#")
    p = popen("run", "-s", "synthetic", "--fps", "50", "--duration", "9", "--json", "--log", log, "--power-source",
              "none", "--mqtt", f"mqtt://127.0.0.1:{broker.port}/d?discovery=off")
    try:
        wait_for(lambda: len(sub.on("d/answer")) >= 20, 20, "answers before the drop")
        broker.stop()
        time.sleep(1.5)
        broker.start()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "connection lost" in err and "connected to" in err and "again" in err
    m = json.loads(out)["mqtt"]
    assert m["connects"] >= 2
    tel = records(log)
    assert [r["frame"] for r in tel] == list(range(len(tel))) and len(tel) > 200
    wait_for(lambda: sub.on("d/available")[-1:] == [b"offline"], 15, "offline after the run")
    frames = [json.loads(a)["frame"] for a in sub.on("d/answer")]
    assert frames == sorted(frames)  # in order; the ones sent while the broker was away are missing
    assert frames[-1] == tel[-1]["frame"]  # answers flow again after the reconnect, up to the last frame
    sub.close()
