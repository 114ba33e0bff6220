"""Detection smoothing on synthetic posterior sequences, scoring, and the KWS hook in a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_ee.pipeline.kws import KeywordDetector, KwsHook, is_keyword, score_detections

from .conftest import KWS_LABELS, tone, write_wav

HOP = 0.25


def post(label: str | None, p: float = 0.9) -> np.ndarray:
    """A posterior putting ``p`` on ``label`` (None: on silence) and the rest spread evenly."""
    k = KWS_LABELS.index(label or "silence")
    v = np.full(len(KWS_LABELS), (1 - p) / (len(KWS_LABELS) - 1))
    v[k] = p
    return v


def feed(det: KeywordDetector, seq: list[np.ndarray], t0: float = 1.0) -> list:
    out = []
    for i, p in enumerate(seq):
        d = det.update(t0 + i * HOP, p, exit_index=i % 3)
        if d:
            out.append(d)
    return out


def test_labels_that_are_not_keywords() -> None:
    assert not is_keyword("_silence_") and not is_keyword("unknown") and not is_keyword("_background_noise_")
    assert is_keyword("yes") and is_keyword("stop")


def test_one_word_seen_in_several_windows_gives_one_event() -> None:
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.75, suppress_s=1.0)
    seq = [post(None)] * 4 + [post("yes", 0.95)] * 8 + [post(None)] * 4  # the word stays 2 s in the windows
    evs = feed(det, seq)
    assert [e.keyword for e in evs] == ["yes"]
    # the 0.75 s average (3 windows) reaches 0.7 only when all three windows hold the word
    assert evs[0].time == 1.0 + 6 * HOP
    assert evs[0].confidence >= 0.7


def test_a_single_confident_window_is_averaged_away() -> None:
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.75)
    assert feed(det, [post(None)] * 4 + [post("go", 0.99)] + [post(None)] * 4) == []


def test_silence_and_unknown_never_fire() -> None:
    det = KeywordDetector(KWS_LABELS, threshold=0.5)
    assert feed(det, [post(None, 0.99)] * 10 + [post("unknown", 0.99)] * 10) == []


def test_suppression_and_rearming() -> None:
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.5, suppress_s=1.5)
    # "no" right after "yes" (within the suppression period) is suppressed; after it, a new word fires
    seq = [post("yes")] * 3 + [post("no")] * 2 + [post(None)] * 4 + [post("no")] * 3
    assert [e.keyword for e in feed(det, seq)] == ["yes", "no"]
    # the same keyword held for a long time fires once (must drop below the threshold to re-arm)
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.5, suppress_s=1.0)
    assert len(feed(det, [post("up")] * 40)) == 1
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.5, suppress_s=1.0)
    assert len(feed(det, ([post("up")] * 4 + [post(None)] * 4) * 3)) == 3


def test_detection_records_the_exit_of_the_window_that_fired() -> None:
    det = KeywordDetector(KWS_LABELS, threshold=0.7, average_s=0.25)
    d = det.update(3.0, post("left"), exit_index=1)
    assert d is not None and d.exit == 1 and d.keyword == "left" and d.time == 3.0


def test_scoring() -> None:
    truth = [{"keyword": "yes", "start": 1.0, "end": 1.5}, {"keyword": "no", "start": 4.0, "end": 4.4}]
    dets = [{"keyword": "yes", "time": 1.75, "confidence": 0.9, "exit": 0},
            {"keyword": "yes", "time": 2.5, "confidence": 0.9, "exit": 0},  # a repeat: false alarm
            {"keyword": "up", "time": 4.5, "confidence": 0.8, "exit": 2}]  # wrong word: false alarm + miss
    s = score_detections(dets, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 1)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == 0.5
    assert score_detections([], [])["f1"] == 1.0


def test_hook_adds_fields_events_and_summary() -> None:
    lines: list[str] = []
    hook = KwsHook(KWS_LABELS, threshold=0.6, average_s=0.5, truth=[{"keyword": "on", "start": 1.5, "end": 2.0}],
                   echo=lines.append)

    class R:
        def __init__(self, p, e):
            self.probs, self.exit_index = p, e

    class F:
        def __init__(self, t, i):
            self.meta, self.index = {"t_audio": t}, i

    recs = []
    for i, p in enumerate([post(None)] * 3 + [post("on")] * 3 + [post(None)] * 3):
        rec: dict = {}
        hook.on_result(None, F(1.0 + i * HOP, i), R(p, 1), rec)
        recs.append(rec)
    assert all({"t_audio", "kws_label", "kws_score", "detection"} <= set(r) for r in recs)
    fired = [r["detection"] for r in recs if r["detection"]]
    assert len(fired) == 1 and fired[0]["keyword"] == "on" and fired[0]["exit"] == 1
    assert lines and "'on'" in lines[0] and "exit 1" in lines[0]
    summary: dict = {}
    hook.on_stop(None, summary)
    assert summary["detections"][0]["keyword"] == "on" and summary["kws_score"]["f1"] == 1.0
    json.dumps(summary)


def test_cli_wav_end_to_end(kws_bundle: Path, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "k.wav", np.concatenate([tone(1.2), np.zeros(8000, np.float32), tone(1.0, freq=900)]))
    (tmp_path / "k.keywords.json").write_text(json.dumps({"keywords": [{"keyword": "yes", "start": 0.1,
                                                                        "end": 0.6}]}))
    log = tmp_path / "t.jsonl"
    summ = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--model", str(kws_bundle), "--source", f"wav:{wav}",
                        "--log", str(log), "--summary-json", str(summ), "-q", "--kws-threshold", "0.05",
                        "--kws-suppress", "500ms"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(recs) == 7  # 2.7 s, 250 ms hop: windows ending at 1.0 .. 2.5 s
    assert [x["t_audio"] for x in recs] == [1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5]
    assert all("detection" in x and "kws_label" in x for x in recs)
    s = json.loads(summ.read_text())
    n = sum(1 for x in recs if x["detection"])
    assert n >= 1 and len(s["detections"]) == n  # a random model over a low threshold fires
    assert "keywords detected" in r.stdout and "keyword detection vs ground truth" in r.stdout
    assert sum(1 for line in r.stdout.splitlines() if line.startswith("keyword '")) == n


def test_cli_audio_source_with_an_image_bundle_is_a_usage_error(image_bundle: Path, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "k.wav", tone(1.0))
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--model", str(image_bundle), "--source",
                        f"wav:{wav}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "delivers audio" in r.stderr and "Traceback" not in r.stderr


def test_cli_bad_wav_exit_code(kws_bundle: Path, tmp_path: Path) -> None:
    p = write_wav(tmp_path / "k8.wav", tone(1.0), width=1)
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--model", str(kws_bundle), "--source", f"wav:{p}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "8-bit" in r.stderr and "sox" in r.stderr and "Traceback" not in r.stderr


def test_shipped_kws_bundle_on_the_shipped_sample() -> None:
    from edge_ee.core.bundle import BUNDLES_DIR

    if not (BUNDLES_DIR / "kws" / "manifest.json").is_file():
        pytest.skip("the keyword-spotting bundle is not built in this checkout (export/make_bundles.sh)")
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--source", "sample:kws", "-q"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "keywords detected" in r.stdout and "keyword detection vs ground truth" in r.stdout


def test_shipped_babble_sample_runs_with_its_ground_truth() -> None:
    """``sample:kws-babble``: the shipped keywords in background speech, scored against its keywords.json."""
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--source", "sample:kws-babble", "--json",
                        "--power-source", "none"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["frames"] > 50 and s["kws_score"]["words"] > 0 and 0.0 <= s["kws_score"]["f1"] <= 1.0
    assert "keywords_babble.wav" in r.stderr and "Traceback" not in r.stderr
