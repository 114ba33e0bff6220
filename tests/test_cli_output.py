"""CLI output for scripts and pipes: run --json, a closed stdout pipe, readable `info`, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "edge_ee"]


def ee(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=180, **kw)


def test_run_json_is_one_object_on_stdout(tmp_path: Path) -> None:
    r = ee("run", "-s", "sample", "-n", "20", "--json", "--power-source", "none")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # the whole of stdout, nothing else
    assert summary["frames"] == 20 and summary["stop_reason"] == "max frames reached"
    assert "frames: 20" in r.stderr  # the human summary moved to stderr
    # NaN is not JSON: strict parsers must accept the output
    json.loads(r.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_summary_json_dash_means_stdout(tmp_path: Path) -> None:
    r = ee("run", "-s", "synthetic", "-n", "5", "--summary-json", "-", "--power-source", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 5
    assert not (tmp_path / "-").exists()


def test_keyword_events_go_to_stderr_with_json() -> None:
    r = ee("run", "-s", "sample:kws", "--json", "--power-source", "none")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["detections"]
    assert "keyword '" in r.stderr


def test_closed_stdout_pipe_is_a_clean_exit(tmp_path: Path) -> None:
    """`edge-ee run ... | head -1`: the run stops when the reader is gone; exit 0, no traceback, telemetry whole."""
    log = tmp_path / "t.jsonl"
    p = subprocess.Popen([*CLI, "run", "-s", "sample:kws", "--loop", "--power-source", "none", "--log", str(log),
                          "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    first = p.stdout.readline()  # one keyword event, then the reader goes away
    assert first.startswith("keyword ")
    p.stdout.close()
    err = p.stderr.read() if p.stderr else ""
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    lines = log.read_text().splitlines()
    assert lines and all(json.loads(x)["frame"] == i for i, x in enumerate(lines))


def test_shell_pipe_into_head(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = f"set -o pipefail; {sys.executable} -m edge_ee info | head -2"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and len(r.stdout.splitlines()) == 2


def test_info_producer_is_readable() -> None:
    r = ee("info")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = lines.index("producer:")
    prod = lines[i + 1:]
    assert prod and all(x.startswith("  ") for x in prod)
    assert all(len(x) < 200 for x in prod if "command:" not in x)  # no raw dict on one line
    assert not any("{'" in x for x in prod)
    assert any(x.strip().startswith("tool: edge-ee-export") for x in prod)
    if any("%" in x and float(x.split("%")[0].split()[-1]) > 100 for x in lines[:i] if "%" in x):
        assert any("of full" in x and "heads" in x for x in lines[:i])  # a figure over 100% is explained


def test_shell_completion_is_available() -> None:
    r = ee("--help", env={**os.environ, "COLUMNS": "200"})
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    r = ee("--show-completion", "bash", env={**os.environ, "SHELL": "/bin/bash"})
    assert r.returncode == 0 and "complete" in r.stdout
