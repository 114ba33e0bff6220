"""Every attack of issue 13, run as an outsider would: the real ``edge-ee`` in a subprocess.

For each case: the exit code (and the one expected), whether a traceback was printed, and for runs that
write telemetry the records lost (frames in the summary minus whole JSON lines in the log files). Exit
code 1 when any case has a traceback, an unexpected exit code or a lost record.

Usage: python benchmarks/hardening_cases.py   (needs the dev extra: onnx builds the test bundles)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
from factory import build_bundle, edit_manifest, png_header  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
CLI = [sys.executable, "-m", "edge_ee"]
RESULTS: list[dict] = []


def run(*args: object, stdin: object = subprocess.DEVNULL, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV,
                          stdin=stdin, **kw)


def lines_in(log: Path) -> int:
    n = 0
    for f in sorted(log.parent.glob(log.name + "*")):
        for x in f.read_text().splitlines():
            json.loads(x)  # a broken line raises: never whole
            n += 1
    return n


def frames_in(out: str) -> int:
    m = re.search(r"frames: (\d+)", out)
    return int(m.group(1)) if m else 0


def record(case: str, expect: int, r: subprocess.CompletedProcess | None = None, code: int | None = None,
           text: str = "", lost: int | None = None) -> None:
    if r is not None:
        code, text = r.returncode, r.stdout + r.stderr
    RESULTS.append({"case": case, "exit": code, "expected": expect, "tracebacks": text.count("Traceback"),
                    "lost": lost, "ok": code == expect and "Traceback" not in text and not lost})


def fresh(tmp: Path, name: str) -> Path:
    return build_bundle(tmp / name, preprocess={"kind": "image", "color": "gray", "size": [28, 28],
                                                "scale": 1 / 255.0, "mean": [0.0], "std": [1.0]})


def sighup_case(tmp: Path, bundle: Path, name: str, bad: bytes) -> None:
    log = tmp / f"{name}.jsonl"
    cfg = tmp / f"{name}.toml"
    cfg.write_text(f'source = "synthetic"\nmodel = "{bundle}"\nfps = 100.0\nlog = "{log}"\nquiet = true\n')
    p = subprocess.Popen([*CLI, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    while not log.exists() or lines_in(log) < 5:
        time.sleep(0.05)
    cfg.write_bytes(bad)
    p.send_signal(signal.SIGHUP)
    n = lines_in(log)
    while lines_in(log) < n + 20 and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    record(f"SIGHUP with {name} config (service keeps running)", 0, code=p.returncode, text=out + err,
           lost=frames_in(out) - lines_in(log))


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ee-harden-"))
    onnx = __import__("onnx")
    cv2 = __import__("cv2")
    b = fresh(tmp, "b")
    true_bin = Path(shutil.which("true") or "/bin/true")

    # 1. config files
    sighup_case(tmp, b, "binary", true_bin.read_bytes())
    sighup_case(tmp, b, "nested", b"a = " + b"[" * 200_000 + b"]" * 200_000)
    record("--config /bin/true at start-up", 8, run("run", "-s", "synthetic", "-n", 2, "--config", true_bin))
    nested = tmp / "nested.toml"
    nested.write_bytes(b"a = " + b"[" * 200_000 + b"]" * 200_000)
    record("nested config at start-up", 8, run("run", "-s", "synthetic", "-n", 2, "--config", nested))

    # 2, 3. external data
    e = fresh(tmp, "ext")
    m = onnx.load(str(e / "segment1.onnx"))
    onnx.save(m, str(e / "segment1.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    from edge_ee.core.manifest import read_manifest, write_manifest

    man = read_manifest(e)
    man.external_data = [{"file": "weights.bin", "sha256": ""}]
    write_manifest(man, e)
    record("external data listed in the manifest: validate", 0, run("validate", e))
    w = e / "weights.bin"
    w.write_bytes(bytes(16) + w.read_bytes()[16:])
    record("external weights.bin overwritten: validate", 3, run("validate", e))
    m = onnx.load(str(e / "segment1.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../../../etc/passwd"
    onnx.save(m, str(e / "segment1.onnx"))
    write_manifest(read_manifest(e), e)
    record("external data ../../../etc/passwd: validate", 3, run("validate", e))

    # 4. rotation
    log = tmp / "rot.jsonl"
    record("--log-max-mb -1", 2, run("run", "--model", b, "-s", "synthetic", "-n", 50, "--log", log,
                                     "--log-max-mb", -1))
    r = run("run", "--model", b, "-s", "synthetic", "-n", 50, "--log", log, "-q")
    record("50 records, no rotation", 0, r, lost=frames_in(r.stdout) - lines_in(log))

    # 5, 6, 7. manifests
    def bad_bundle(case: str, mutate, expect: int = 3, cmd: str = "validate") -> None:
        d = fresh(tmp, re.sub(r"\W+", "_", case))
        if isinstance(mutate, (bytes, str)):
            (d / "manifest.json").write_bytes(mutate if isinstance(mutate, bytes) else mutate.encode())
        elif callable(mutate):
            edit_manifest(d, mutate)
        t = time.monotonic()
        r = run(cmd, d) if cmd == "validate" else run("run", "--model", d, "-s", "synthetic", "-n", 2,
                                                      "--budget", "5ms")
        record(case + f" ({time.monotonic() - t:.1f} s)", expect, r)

    bad_bundle("manifest nested 200,000 levels", "[" * 200_000 + "]" * 200_000)
    bad_bundle("NUL byte in a manifest file name", lambda d: d["stages"][0]["segment"].update(file="a\x00b.onnx"))
    bad_bundle('preprocess.size "abc"', lambda d: d["input"]["preprocess"].update(size="abc"))
    bad_bundle("preprocess.size [100000, 100000]", lambda d: d["input"]["preprocess"].update(size=[100000, 100000]))
    bad_bundle("macs 10**400", lambda d: d["stages"][0]["segment"].update(macs=10**400))
    bad_bundle("calibration.operating_points [1,2,3] with --budget",
               lambda d: d.setdefault("calibration", {}).update(operating_points=[1, 2, 3]), cmd="run")
    bad_bundle("preprocess.std [0]", lambda d: d["input"]["preprocess"].update(std=[0]))
    bad_bundle("schema_version true", lambda d: d.update(schema_version=True))
    bad_bundle("input dtype uint8, model takes float32", lambda d: d["input"].update(dtype="uint8"))
    bad_bundle("10,000 stages", lambda d: d.update(stages=[d["stages"][0]] * 10_000))
    big = fresh(tmp, "big")
    with open(big / "manifest.json", "wb") as f:
        f.truncate(300 << 20)  # 300 MB (sparse)
    t = time.monotonic()
    r = run("validate", big)
    record(f"300 MB manifest ({time.monotonic() - t:.1f} s)", 3, r)
    record("--config /dev/zero", 8, run("run", "-s", "synthetic", "-n", 2, "--config", "/dev/zero"))

    # 5, 12. sources
    record("--source synthetic:-1", 2, run("run", "-s", "synthetic:-1", "-n", 2))
    r = subprocess.run([*CLI, "run", "-s", "-", "-n", "2"], capture_output=True, text=True, timeout=120, env=ENV,
                       stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
    record("--source - with stdin closed", 4, r)
    wav = tmp / "t.wav"
    wav.write_bytes((REPO / "edge_ee/samples/keyword_spotting/keywords.wav").read_bytes()[:30])
    record("truncated WAV header", 4, run("run", "-s", f"wav:{wav}", "-n", 2))
    record("video:/dev/zero", 4, run("run", "--model", b, "-s", "video:/dev/zero", "-n", 2))
    record("video:DIR", 4, run("run", "--model", b, "-s", f"video:{tmp}", "-n", 2))
    v = tmp / "v.avi"
    vw = cv2.VideoWriter(str(v), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    rng = np.random.default_rng(0)
    for _ in range(60):
        vw.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    vw.release()
    v.write_bytes(v.read_bytes()[: v.stat().st_size // 3])
    r = run("run", "--model", b, "-s", f"video:{v}", "-q")
    record("truncated video (warns)", 0, r, lost=0 if "truncated" in r.stderr else 1)
    imgs = tmp / "imgs"
    imgs.mkdir()
    img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    for i in range(5):
        cv2.imwrite(str(imgs / f"ok{i}.png"), img)
    cv2.imwrite(str(tmp / "full.jpg"), img)
    (imgs / "trunc.jpg").write_bytes((tmp / "full.jpg").read_bytes()[:200])
    (imgs / "huge60000.png").write_bytes(png_header(60000, 60000))
    (imgs / "big20000.png").write_bytes(png_header(20000, 20000))
    log = tmp / "imgs.jsonl"
    r = run("run", "--model", b, "-s", f"images:{imgs}", "--log", log, "-q")
    record("folder with truncated JPEG, 60000^2 and 20000^2 PNGs (skipped, counted)", 0, r,
           lost=frames_in(r.stdout) - lines_in(log))
    p = subprocess.Popen([*CLI, "run", "--model", str(b), "-s", "synthetic", "-q"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    record("SIGTERM 0.3 s after start", 0, code=p.returncode, text=out + err)

    # 8. thresholds
    record("--thresholds nan,nan", 2, run("run", "--model", b, "-s", "synthetic", "-n", 2, "--thresholds", "nan,nan"))

    # 9. metrics
    p = subprocess.Popen([*CLI, "run", "--model", str(b), "-s", "synthetic", "--fps", "20", "-q",
                          "--metrics-port", "0", "--metrics-addr", "0.0.0.0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    port = None
    head = ""
    while port is None:
        line = p.stderr.readline()
        head += line
        mm = re.search(r":(\d+)/metrics", line)
        port = int(mm.group(1)) if mm else None
    reqs = [b"\x00\xff" * 50, b"GET /metrics HTTP/9.9\r\n\r\n", b"GET " + b"A" * 70000 + b" HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"\r\n\r\n", b"GET"]
    for i in range(256):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(reqs[i % len(reqs)])
        s.settimeout(0.2)
        try:
            s.recv(64)
        except OSError:
            pass
        s.close()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    record("256 malformed metrics requests", 0, code=p.returncode, text=out + err)
    record("--metrics-addr 0.0.0.0 warns", 0, code=0 if "every network interface" in head + err else 99)

    # 10. install
    pfx = tmp / "pfx"
    record("service install --user with a newline", 2, run("service", "install", "--prefix", pfx, "--user",
                                                           "bob\nExecStartPre=/bin/sh"))
    record("service install --exec with a newline", 2, run("service", "install", "--prefix", pfx, "--exec",
                                                           "/opt/x\nUser=root"))
    record("service install --user root", 2, run("service", "install", "--prefix", pfx, "--user", "root"))

    # 11. unit exposure
    analyze = shutil.which("systemd-analyze")
    exposure = None
    if analyze:
        r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(REPO / "systemd/edge-ee.service")],
                           capture_output=True, text=True, timeout=60)
        mm = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
        exposure = float(mm.group(1)) if mm else None

    width = max(len(x["case"]) for x in RESULTS)
    print(f"{'case':<{width}}  exit  expected  tracebacks  lost records")
    for x in RESULTS:
        lost = "-" if x["lost"] is None else x["lost"]
        print(f"{x['case']:<{width}}  {x['exit']!s:>4}  {x['expected']:>8}  {x['tracebacks']:>10}  {lost!s:>12}"
              + ("" if x["ok"] else "   <-- FAIL"))
    tb = sum(x["tracebacks"] for x in RESULTS)
    lost_total = sum(x["lost"] or 0 for x in RESULTS)
    bad = [x for x in RESULTS if not x["ok"]]
    print(f"\n{len(RESULTS)} cases: {tb} tracebacks, {lost_total} lost records, {len(bad)} unexpected outcomes; "
          f"systemd-analyze security exposure of systemd/edge-ee.service: {exposure}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bad or (exposure is not None and exposure > 2.0) else 0


if __name__ == "__main__":
    sys.exit(main())
