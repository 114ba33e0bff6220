"""SIGHUP: re-read the config file and apply what can change without a restart.

The signal handler only sets a flag (:meth:`ReloadHook.request`); the hook applies it between frames
(in ``before_infer``), so the next inference uses the new settings. Applied live: ``thresholds``
(explicit, else those of the device profile, looked up and read again, else the bundle's),
``rule``, ``budget``, ``mode``/``exit_at``, ``quiet``, ``max_frames``, ``duration``. Other hooks that
define ``on_reload(runner, settings, changed) -> set[str]`` (e.g. the budget controller) get the new
settings too and return the keys they applied. Keys that still need a
restart are named in a warning. A bad file is logged as a warning and the old settings stay: a
running service never crashes on a reload.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..control.settings import RunSettings, choose_thresholds
from ..core.exit_rules import DEFAULT_RULE
from ..errors import EdgeEEError
from ..pipeline.runner import RunHook, Runner
from ..sources.base import Frame
from .config import effective_settings, load_run_config
from .sdnotify import Notifier

log = logging.getLogger("edge_ee.service")

LIVE_KEYS = frozenset({"thresholds", "profile", "rule", "budget", "mode", "exit_at", "quiet", "max_frames", "duration"})


def _norm(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else v


class ReloadHook(RunHook):
    phase = "settings"

    def __init__(self, command: Any, config_path: Path | None, settings: dict[str, Any], cli_keys: set[str],
                 notifier: Notifier | None = None) -> None:
        self.command = command
        self.config_path = config_path
        self.settings = dict(settings)  # the options in force
        self.cli_values = {k: v for k, v in settings.items() if k in cli_keys}
        self.notifier = notifier
        self._pending = False
        self._thresholds: list[float] = []
        self.profile_path: Path | None = None
        self.reloads = 0
        self.failures = 0

    def on_start(self, runner: Runner) -> None:
        self._thresholds = list(runner.engine.thresholds)

    def _profile(self, engine: Any, settings: RunSettings) -> tuple[dict[str, Any] | None, Path | None]:
        """The device profile (``edge-ee profile``), looked up and read again on each reload."""
        from ..profiling.profile import find_profile

        return find_profile(engine.bundle, settings.profile_path, engine=engine)  # an unreadable explicit one raises

    def request(self) -> None:
        """Safe to call from a signal handler: only sets a flag."""
        self._pending = True

    def before_infer(self, runner: Runner, frame: Frame) -> None:
        if self._pending:
            self._pending = False
            self.reload(runner)

    # ------------------------------------------------------------------ reload
    def reload(self, runner: Runner) -> bool:
        if self.notifier is not None:
            self.notifier.reloading()
        try:
            ok = self._reload(runner)
        finally:
            if self.notifier is not None:
                self.notifier.ready()
        return ok

    def _reload(self, runner: Runner) -> bool:
        where = str(self.config_path) if self.config_path else "(no --config file)"
        try:
            file_values = load_run_config(self.config_path, self.command) if self.config_path else {}
            new = effective_settings(self.command, file_values, self.cli_values)
            changed = {k for k in new if _norm(new[k]) != _norm(self.settings.get(k))}
            apply = self._plan(runner, new, changed)
        except EdgeEEError as e:
            self.failures += 1
            log.warning("reload (SIGHUP) of %s failed, keeping the previous settings: %s", where, e)
            return False
        except Exception as e:  # a running service must outlive any reload; the message names the bug
            self.failures += 1
            log.error("reload (SIGHUP) of %s failed with an internal error (%s: %s), keeping the previous "
                      "settings; please report it", where, type(e).__name__, e)
            return False
        for fn in apply:
            fn()
        applied = changed & LIVE_KEYS
        for h in runner.hooks:
            on_reload = getattr(h, "on_reload", None)
            if on_reload is None or h is self:
                continue
            try:
                applied |= set(on_reload(runner, dict(new), set(changed)) or ())
            except EdgeEEError as e:
                log.warning("reload (SIGHUP): %s: %s", type(h).__name__, e)
        self.settings = new
        self.reloads += 1
        restart = sorted(changed - applied)
        if restart:
            log.warning("reload (SIGHUP): %s changed in %s but need a restart to apply "
                        "(systemctl restart edge-ee)", ", ".join(restart), where)
        msg = ", ".join(f"{k}={new[k]!r}" for k in sorted(applied)) or "nothing changed"
        runner.status_stream.write(f"edge-ee: reloaded {where}: {msg}\n")
        runner.status_stream.flush()
        return True

    def _plan(self, runner: Runner, new: dict[str, Any], changed: set[str]) -> list[Any]:
        """Check every live change first (raising on any problem), then return the actions."""
        engine, cfg = runner.engine, runner.config
        s = RunSettings.from_options(new)  # the whole file checked as at start
        explicit = s.check_bundle(engine.num_stages)
        profile, ppath = (None, None) if explicit is not None else self._profile(engine, s)
        th, source = choose_thresholds(explicit, profile, engine.rules[0], engine.manifest.default_thresholds())
        if source == "profile":
            self.profile_path = ppath
        acts: list[Any] = []
        if "thresholds" in changed or th != self._thresholds:
            acts.append(lambda: (engine.set_thresholds(th), setattr(self, "_thresholds", list(th))))
        if "rule" in changed:
            acts.append(self._rule_action(engine, s.rule))
        if "budget" in changed:
            runner.check_budget(s.budget)
            acts.append(lambda: setattr(cfg, "budget", s.budget))
        if changed & {"mode", "exit_at"}:
            acts.append(lambda: (setattr(cfg, "mode", s.mode), setattr(cfg, "exit_at", s.exit_at)))
        if "quiet" in changed:
            acts.append(lambda: setattr(cfg, "status", not s.quiet))
        if "max_frames" in changed:
            acts.append(lambda: setattr(cfg, "max_frames", s.max_frames))
        if "duration" in changed:
            acts.append(lambda: setattr(cfg, "duration_s", s.duration_s))
        return acts

    @staticmethod
    def _rule_action(engine: Any, rule: str | None) -> Any:
        """Check a new exit rule now; the returned action applies it (None: each head's own rule)."""
        if rule is None:
            defaults = [h.rule if h else DEFAULT_RULE for h in engine.heads]
            return lambda: setattr(engine, "rules", defaults)
        old_rules = list(engine.rules)
        engine.set_rule(rule)  # validates; undone here, applied with the rest
        engine.rules = old_rules
        return lambda: engine.set_rule(rule)
