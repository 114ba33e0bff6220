"""The TOML config: every run option is a key, precedence, errors (exit 8), rotation/disk-full via config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ee, records

from edge_ee.commands import run_command
from edge_ee.errors import ConfigError, ExitCode
from edge_ee.service import _click as click
from edge_ee.service.config import (
    SERVICE_DEFAULTS,
    _convert,
    _toml_value,
    _type_name,
    default_config_text,
    load_run_config,
    parse_toml,
    run_params,
    validate,
)

REPO = Path(__file__).resolve().parents[2]


def _sample(p) -> object:
    """A value the option accepts: its default, else a small value of its type."""
    kind = _type_name(p)
    d = None if callable(p.default) else p.default
    cands = [d] if d not in (None, "") else []
    cands += {"bool": [True], "int": [1, getattr(p, "min", None) or 1, 16000],
              "float": [1.0, float(getattr(p, "min", None) or 1.0)], "str": ["x"]}[kind]
    ctx = click.Context(run_command())
    for c in cands:
        try:
            if kind != "bool":
                _convert(p, c, ctx)
            return c
        except click.ClickException:
            continue
    raise AssertionError(f"no sample value for {p.name}")


def test_every_run_option_is_a_config_key(tmp_path: Path) -> None:
    """Derived from the command: options added to `run` later are accepted without touching the config code."""
    cmd = run_command()
    params = run_params(cmd)
    names = {p.name for p in cmd.params} - {"config"}
    assert set(params) == names and {"source", "thresholds", "log_max_mb", "log_keep", "metrics_port"} <= names
    f = tmp_path / "all.toml"
    f.write_text("".join(f"{n} = {_toml_value(_sample(p))}\n" for n, p in params.items()))
    got = load_run_config(f, cmd)
    assert set(got) == set(params)


def test_dashes_lists_and_types(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('max-frames = 3\nthresholds = [0.8, 0.9]\nlog_max_mb = 2\nquiet = true\nsource = "synthetic"\n')
    got = load_run_config(f, run_command())
    assert got == {"max_frames": 3, "thresholds": "0.8,0.9", "log_max_mb": 2.0, "quiet": True, "source": "synthetic"}


@pytest.mark.parametrize("text, needles", [
    ("max_frame = 3\n", ["unknown key 'max_frame'", "did you mean 'max_frames'"]),
    ('max_frames = "3"\n', ["'max_frames' must be an integer", "a string"]),
    ("max_frames = 0\n", ["'max_frames' = 0", "greater than or equal to 1"]),
    ("quiet = 1\n", ["'quiet' must be true or false"]),
    ("duration = true\n", ["'duration' must be a number"]),
    ("[run]\nsource = 'x'\n", ["unknown key 'run'"]),
    ("config = 'other.toml'\n", ["unknown key 'config'"]),
    ("max_frames = 3\nmax-frames = 4\n", ["given twice"]),
    ("source = [\n", ["not valid TOML"]),
])
def test_errors_name_key_and_file(tmp_path: Path, text: str, needles: list[str]) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_run_config(f, run_command())
    msg = str(e.value)
    assert str(f) in msg
    for n in needles:
        assert n in msg


def test_config_errors_exit_8(bundle: Path, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('source = "synthetic"\nlog_keep = "five"\n')
    r = ee("run", "--config", f, "--model", bundle)
    assert r.returncode == ExitCode.CONFIG, r.stderr
    assert "config error" in r.stderr and "log_keep" in r.stderr and str(f) in r.stderr
    assert "Traceback" not in r.stderr
    r = ee("run", "--config", tmp_path / "missing.toml", "--model", bundle)
    assert r.returncode == ExitCode.CONFIG and "does not exist" in r.stderr


def test_command_line_overrides_file(bundle: Path, tmp_path: Path) -> None:
    log, summ = tmp_path / "t.jsonl", tmp_path / "s.json"
    f = tmp_path / "c.toml"
    f.write_text(f'source = "synthetic"\nmodel = "{bundle}"\nmax_frames = 7\nthresholds = "0.0"\n'
                 f'log = "{log}"\nsummary_json = "{summ}"\nquiet = true\n')
    r = ee("run", "--config", f)
    assert r.returncode == 0, r.stderr
    assert json.loads(summ.read_text())["frames"] == 7
    assert {rec["exit"] for rec in records(log)} == {0}  # threshold 0: the first exit always answers
    log.unlink()
    r = ee("run", "--config", f, "-n", "3", "--mode", "full")
    assert r.returncode == 0, r.stderr
    assert json.loads(summ.read_text())["frames"] == 3
    assert {rec["exit"] for rec in records(log)} == {2}


def test_rotation_from_config(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    f = tmp_path / "c.toml"
    f.write_text(f'source = "synthetic"\nmodel = "{bundle}"\nmax_frames = 60\nlog = "{log}"\n'
                 'log_max_mb = 0.004\nlog_keep = 2\nquiet = true\n')
    r = ee("run", "--config", f)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in tmp_path.glob("t.jsonl*"))
    assert files == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
    for p in tmp_path.glob("t.jsonl*"):
        assert p.stat().st_size <= 4000
        assert all(json.loads(x) for x in p.read_text().splitlines())


def test_disk_full_end_to_end(bundle: Path, tmp_path: Path) -> None:
    """/dev/full: every write fails with ENOSPC; records are dropped and counted, inference goes on."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    summ = tmp_path / "s.json"
    r = ee("run", "--model", bundle, "-s", "synthetic", "-n", "12", "--log", "/dev/full", "--summary-json", summ, "-q")
    assert r.returncode == 0, r.stderr
    s = json.loads(summ.read_text())
    assert s["frames"] == 12 and s["telemetry_dropped"] == 12
    assert r.stderr.count("dropping records") == 1  # one warning, not one per record


def test_default_config_is_valid(tmp_path: Path) -> None:
    cmd = run_command()
    f = tmp_path / "d.toml"
    f.write_text(default_config_text(cmd))
    got = load_run_config(f, cmd)
    assert got["log"] == "/var/lib/edge-ee/telemetry.jsonl" and got["quiet"] is True and got["metrics_port"] > 0
    # the reference section lists every option (commented out)
    for name in run_params(cmd):
        assert f"\n# {name} = " in default_config_text(cmd)


def test_shipped_config_matches_the_generated_defaults() -> None:
    path = REPO / "systemd" / "edge-ee.toml"
    assert path.read_text().startswith(SERVICE_DEFAULTS)  # regenerate with `edge-ee service config`
    assert validate(parse_toml(path), run_command(), path)
