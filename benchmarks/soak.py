"""Soak test of the service path: `edge-ee run` for N minutes with everything a service turns on.

The run uses a config file (like the unit does), telemetry with rotation, the Prometheus endpoint
(scraped every sample), and sd_notify with a watchdog (a local datagram socket stands in for systemd).
After a warm-up, the child's RSS, open file descriptors and threads are sampled every few seconds.

Checks (exit code 1 if one fails):
- RSS growth after warm-up (last sample minus first, and the least-squares slope) within --rss-limit-mb;
- no file-descriptor growth after warm-up;
- every record accounted for: frames in the summary == lines in the log files + telemetry drops,
  every line valid JSON, frame numbers 0..N-1 each exactly once;
- the watchdog was pinged all along and READY / STOPPING were sent.

Usage: python benchmarks/soak.py [--minutes 30] [--fps 100] [--source synthetic] [--update-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"


class NotifyListener(threading.Thread):
    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.5)
        self.counts: dict[str, int] = {}
        self.ping_times: list[float] = []
        self.last_status = ""
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                msg = self.sock.recv(4096).decode()
            except (TimeoutError, OSError):
                continue
            for f in msg.split("\n"):
                key = f.split("=", 1)[0]
                self.counts[key] = self.counts.get(key, 0) + 1
                if f == "WATCHDOG=1":
                    self.ping_times.append(time.monotonic())
                elif f.startswith("STATUS="):
                    self.last_status = f[7:]


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r"^(edge_ee_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 3600 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=100.0, help="pace of the loop (a camera runs at 30)")
    ap.add_argument("--source", default="synthetic", help="synthetic, video:FILE (looped) ...")
    ap.add_argument("--model", default=None, help="bundle directory (default: the embedded one)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds before sampling (default 10%%, <= 60 s)")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--rss-limit-mb", type=float, default=5.0, help="allowed RSS growth after warm-up")
    ap.add_argument("--log-max-mb", type=float, default=16.0)
    ap.add_argument("--log-keep", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--update-docs", action="store_true", help=f"write the result into {DOCS.relative_to(REPO)}")
    ap.add_argument("--docs-from", type=Path, default=None, help="only re-render the docs from a saved result JSON")
    a = ap.parse_args()
    if a.docs_from is not None:
        write_docs(json.loads(a.docs_from.read_text()))
        return 0

    duration = a.minutes * 60
    warmup = a.warmup if a.warmup is not None else min(60.0, 0.1 * duration)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="edge-ee-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    log, summ, cfg = work / "soak.jsonl", work / "summary.json", work / "soak.toml"
    lines = [f'source = "{a.source}"', f"fps = {a.fps}", f"duration = {duration}", f'log = "{log}"',
             f"log_max_mb = {a.log_max_mb}", f"log_keep = {a.log_keep}", f'summary_json = "{summ}"',
             "quiet = true", "metrics_port = 0", "loop = true"]
    if a.model:
        lines.append(f'model = "{a.model}"')
    cfg.write_text("\n".join(lines) + "\n")
    capacity = a.log_max_mb * (a.log_keep + 1)
    expect_mb = a.fps * duration * 700 / 1e6
    if expect_mb > 0.9 * capacity:
        print(f"warning: ~{expect_mb:.0f} MB of telemetry may exceed the rotation capacity ({capacity:.0f} MB); "
              "the oldest files would be deleted and records could not be accounted for", file=sys.stderr)

    sock_path = str(Path(tempfile.mkdtemp(prefix="eesoak")) / "n")
    notify = NotifyListener(sock_path)
    notify.start()
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "edge_ee", "run", "--config", str(cfg)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url: list[str] = []
    err_lines: list[str] = []

    def read_err() -> None:
        for line in p.stderr:  # type: ignore[union-attr]
            err_lines.append(line)
            if "metrics at " in line:
                url.append(line.split("metrics at ", 1)[1].strip())

    threading.Thread(target=read_err, daemon=True).start()
    proc = psutil.Process(p.pid)
    samples: list[dict[str, float]] = []
    scrapes = 0
    next_sample = t0 + warmup
    print(f"soak: {a.minutes:g} min, {a.source} at {a.fps:g} fps, warm-up {warmup:.0f} s, workdir {work}",
          file=sys.stderr)
    while p.poll() is None:
        time.sleep(0.2)
        now = time.monotonic()
        if now < next_sample:
            continue
        next_sample += a.sample_every
        try:  # sample first, then scrape: the scrape's connection is long closed at the next sample
            mem = proc.memory_info()
            samples.append({"t": now - t0, "rss_mb": mem.rss / 2**20, "fds": proc.num_fds(),
                            "threads": proc.num_threads()})
            if url:
                scrape(url[0])
                scrapes += 1
        except (psutil.NoSuchProcess, OSError):
            break
    out, _ = p.communicate(timeout=60)
    wall = time.monotonic() - t0
    time.sleep(0.5)
    notify.done.set()

    # ---- accounting
    summary = json.loads(summ.read_text()) if summ.exists() else {}
    files = sorted(work.glob("soak.jsonl*"))
    n_lines, bad, frames_seen = 0, 0, set()
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for raw in fh:
                n_lines += 1
                try:
                    frames_seen.add(json.loads(raw)["frame"])
                except (ValueError, KeyError):
                    bad += 1
    frames = int(summary.get("frames", -1))
    dropped = int(summary.get("telemetry_dropped", 0))
    accounted = frames == n_lines + dropped and bad == 0 and len(frames_seen) == n_lines \
        and (not frames_seen or max(frames_seen) == n_lines - 1 + dropped)

    rss = [s["rss_mb"] for s in samples]
    fds = [s["fds"] for s in samples]
    thr = [s["threads"] for s in samples]
    growth = rss[-1] - rss[0] if rss else float("nan")
    slope = slope_per_hour([s["t"] for s in samples], rss)
    gaps = [b - a_ for a_, b in zip(notify.ping_times, notify.ping_times[1:])]
    checks = {
        "exit code 0": p.returncode == 0,
        f"RSS growth after warm-up <= {a.rss_limit_mb:g} MB": bool(rss) and growth <= a.rss_limit_mb,
        "no fd growth after warm-up": bool(fds) and max(fds) <= fds[0],
        "every record accounted for": accounted,
        "READY, STOPPING sent; watchdog pinged throughout (max gap < 2 s)":
            notify.counts.get("READY", 0) >= 1 and notify.counts.get("STOPPING", 0) == 1
            and bool(gaps) and max(gaps) < 2.0,
    }
    res = {
        "minutes_requested": a.minutes, "wall_s": round(wall, 1), "source": a.source, "fps_target": a.fps,
        "frames": frames, "fps": round(frames / summary["wall_s"], 1) if summary.get("wall_s") else None,
        "log_files": len(files), "log_lines": n_lines, "telemetry_dropped": dropped, "bad_lines": bad,
        "samples": len(samples), "scrapes": scrapes, "warmup_s": warmup, "log_max_mb": a.log_max_mb,
        "rss_mb_first": round(rss[0], 1) if rss else None, "rss_mb_max": round(max(rss), 1) if rss else None,
        "rss_mb_last": round(rss[-1], 1) if rss else None, "rss_growth_mb": round(growth, 2),
        "rss_slope_mb_per_h": round(slope, 2), "fds_min": min(fds, default=None), "fds_max": max(fds, default=None),
        "threads_min": min(thr, default=None), "threads_max": max(thr, default=None),
        "watchdog_pings": notify.counts.get("WATCHDOG", 0), "max_ping_gap_s": round(max(gaps), 2) if gaps else None,
        "status_messages": notify.counts.get("STATUS", 0), "latency_p50_ms": summary.get("latency_ms", {}).get("p50"),
        "latency_p99_ms": summary.get("latency_ms", {}).get("p99"),
        "checks": checks, "ok": all(checks.values()),
    }
    print(json.dumps(res, indent=2, default=str))
    if p.returncode != 0:
        print("".join(err_lines[-20:]), file=sys.stderr)
    if a.update_docs:
        write_docs(res)
    return 0 if res["ok"] else 1


def write_docs(r: dict) -> None:
    mins = r["wall_s"] / 60
    p50, p99 = r.get("latency_p50_ms"), r.get("latency_p99_ms")
    rotated = f"reached: {r['log_files']} files" if r["log_files"] > 1 else "not reached in this run"
    lat = f"{p50:.3f} / {p99:.3f} ms" if isinstance(p50, float) and isinstance(p99, float) else "n/a"
    body = [
        START,
        "## Soak (service path)",
        "",
        f"`python benchmarks/soak.py --minutes {r['minutes_requested']:g} --fps {r['fps_target']:g} --update-docs`: "
        f"**{mins:.1f} minutes actually run** (the target in issue 6 is 30 minutes; run it with the default "
        "`--minutes 30` on the device). `edge-ee run --config` with telemetry rotation at "
        f"{r['log_max_mb']:g} MB ({rotated}), the Prometheus endpoint "
        "scraped every sample, sd_notify with a 2 s watchdog; RSS/fds/threads sampled every 5 s after a "
        f"{r['warmup_s']:.0f} s warm-up ({r['samples']} samples).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| source, pace | {r['source']}, {r['fps_target']:g} fps target, {r['fps']} fps achieved |",
        f"| frames (summary) | {r['frames']} |",
        f"| log lines + dropped | {r['log_lines']} + {r['telemetry_dropped']} in {r['log_files']} files; "
        f"{r['bad_lines']} invalid |",
        f"| RSS after warm-up: first / max / last | {r['rss_mb_first']} / {r['rss_mb_max']} / {r['rss_mb_last']} MB |",
        f"| RSS growth, slope | {r['rss_growth_mb']:+.2f} MB, {r['rss_slope_mb_per_h']:+.2f} MB/h |",
        f"| open fds min / max | {r['fds_min']} / {r['fds_max']} |",
        f"| threads min / max | {r['threads_min']} / {r['threads_max']} |",
        f"| watchdog pings, max gap | {r['watchdog_pings']}, {r['max_ping_gap_s']} s |",
        f"| metrics scrapes | {r['scrapes']} |",
        f"| latency p50 / p99 | {lat} |",
        "",
        "| check | result |",
        "|---|---|",
        *[f"| {k} | {'pass' if v else '**FAIL**'} |" for k, v in r["checks"].items()],
        "",
        "Machine: " + _machine() + ".",
        END,
    ]
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    block = "\n".join(body)
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(text)
    print(f"updated {DOCS}", file=sys.stderr)


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
