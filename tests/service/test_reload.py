"""SIGHUP: new thresholds/budget from the config file take effect on the next frame; a bad file is logged
and the old settings kept; keys that need a restart are named."""

from __future__ import annotations

import io
import signal
import threading
from pathlib import Path

from helpers import NotifySocket, popen, records, wait_for

from edge_ee.commands import run_command
from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.service.config import run_params
from edge_ee.service.reload import ReloadHook
from edge_ee.sources import open_source


def test_sighup_reloads_thresholds(bundle: Path, tmp_path: Path, notify_socket: NotifySocket) -> None:
    log = tmp_path / "t.jsonl"
    cfg = tmp_path / "c.toml"
    base = f'source = "synthetic"\nmodel = "{bundle}"\nfps = 100.0\nlog = "{log}"\nquiet = true\n'
    cfg.write_text(base + "thresholds = [0.99, 0.98]\n")
    p = popen("run", "--config", cfg, env={"NOTIFY_SOCKET": notify_socket.path})
    try:
        wait_for(lambda: len(records(log)) >= 3, what="first records")
        assert records(log)[-1]["thresholds"] == [0.99, 0.98]
        cfg.write_text(base + "thresholds = [0.05, 0.04]\nbudget = \"50ms\"\n")
        p.send_signal(signal.SIGHUP)
        new = wait_for(lambda: [r for r in records(log) if r["thresholds"] == [0.05, 0.04]], what="new thresholds")
        assert new[0]["budget"] == "50ms"
        first = new[0]["frame"]
        assert all(r["thresholds"] == [0.05, 0.04] for r in records(log) if r["frame"] >= first)  # and stay
        # a broken file: warning, old settings kept, still running
        cfg.write_text(base + "thresholds = [0.05, 0.04\n")
        p.send_signal(signal.SIGHUP)
        n = len(records(log))
        wait_for(lambda: len(records(log)) > n + 20, what="frames after a bad reload")
        assert p.poll() is None
        assert records(log)[-1]["thresholds"] == [0.05, 0.04]
        # a key that needs a restart: named in a warning, the rest applied
        cfg.write_text(base.replace("fps = 100.0", "fps = 50.0") + "thresholds = [0.5, 0.5]\n")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: records(log)[-1]["thresholds"] == [0.5, 0.5], what="third reload")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "not valid TOML" in err and "keeping the previous settings" in err
    assert "fps changed" in err and "need a restart" in err
    assert err.count("edge-ee: reloaded") == 2
    notify_socket.collect(0.1)
    fields = notify_socket.fields()
    assert fields.count("RELOADING=1") == 3 and fields.count("READY=1") == 4  # start + after each reload


def _hook(runner: Runner, cfg: Path | None, settings: dict, cli: set[str] = frozenset()) -> ReloadHook:
    cmd = run_command()
    full = {n: (p.default if not callable(p.default) else None) for n, p in run_params(cmd).items()}
    full.update(settings)
    h = ReloadHook(cmd, cfg, full, set(cli))
    runner.hooks.insert(0, h)
    h.on_start(runner)
    return h


def test_reload_in_process_budget_mode_and_cli_precedence(bundle: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle)
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False),
                    status_stream=io.StringIO())
    cfg = tmp_path / "c.toml"
    cfg.write_text('source = "synthetic"\nbudget = "20ms"\nmode = "full"\nthresholds = "0.3"\n')
    # thresholds were given on the command line: the file's value must not win on reload
    h = _hook(runner, cfg, {"source": "synthetic", "thresholds": "0.7"}, cli={"thresholds"})
    runner.engine.set_thresholds([0.7, 0.7])
    h._thresholds = [0.7, 0.7]
    assert h.reload(runner)
    assert runner.config.budget is not None and runner.config.budget.text == "20ms"
    assert runner.config.mode == "full"
    assert runner.engine.thresholds == [0.7, 0.7]
    # the next frame runs with the new budget and mode
    r = runner.process(runner.source.read())
    assert r.exit_index == 2
    # an infeasible change (exit-at without exit_at) is refused as a whole
    cfg.write_text('source = "synthetic"\nbudget = "5ms"\nmode = "exit-at"\n')
    assert not h.reload(runner)
    assert runner.config.budget.text == "20ms" and runner.config.mode == "full"
    # an energy budget needs the controller: refused, old settings kept
    cfg.write_text('source = "synthetic"\nbudget = "50mJ"\n')
    assert not h.reload(runner) and runner.config.budget.text == "20ms"
    # removing keys returns to the defaults
    cfg.write_text('source = "synthetic"\n')
    assert h.reload(runner)
    assert runner.config.budget is None and runner.config.mode == "adaptive"


def test_reload_flag_applies_on_next_frame_only(bundle: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle)
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False, max_frames=1),
                    status_stream=io.StringIO())
    cfg = tmp_path / "c.toml"
    cfg.write_text('source = "synthetic"\nthresholds = [0.1, 0.2]\n')
    h = _hook(runner, cfg, {"source": "synthetic"})
    h.request()  # as the SIGHUP handler does: nothing changes yet
    assert runner.engine.thresholds != [0.1, 0.2]
    seen: list = []

    class Spy(ReloadHook.__mro__[1]):  # a plain RunHook
        def on_result(self, runner, frame, result, record) -> None:
            seen.append(record["thresholds"])

    runner.hooks.append(Spy())
    t = threading.Thread(target=runner.run)
    t.start()
    t.join(30)
    assert seen == [[0.1, 0.2]]
