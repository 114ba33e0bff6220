"""Run settings: the options of a run resolved and checked once, before anything heavy starts.

:class:`RunSettings` holds what ``edge-ee run`` was asked to do. :meth:`RunSettings.from_options` builds it
from the option values (command line over config file over default: click, and on SIGHUP
:func:`edge_ee.service.config.effective_settings`, merge them); constructing it parses and checks the
budget, the mode, the thresholds and the power source together, so a bad combination is refused before
the bundle loads or the source opens. The CLI, the run set-up (``control/setup.py``) and the SIGHUP reload
(``service/reload.py``) all take it. What depends on the bundle or the device profile is resolved by
:func:`choose_thresholds`, the one place for the threshold precedence: explicit > device profile > bundle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..calibration.select import parse_fraction
from ..core.budget import Budget, parse_budget
from ..core.engine import Mode
from ..errors import UsageError
from ..pipeline.runner import RunConfig
from ..power.discovery import parse_prefer

MODES: dict[str, Mode] = {"adaptive": "adaptive", "full": "full", "exit-at": "exit_at", "exit_at": "exit_at"}
ThresholdSource = Literal["explicit", "profile", "bundle"]


def parse_mode(mode: str) -> Mode:
    """``adaptive | full | exit-at`` (``exit_at`` accepted too)."""
    m = MODES.get(mode)
    if m is None:
        raise UsageError(f"--mode {mode!r}: use adaptive, full or exit-at")
    return m


def _threshold_values(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--thresholds {text!r}: give comma-separated numbers, one per early exit") from None
    if not all(math.isfinite(v) for v in vals):  # a NaN threshold silently disables its exit
        raise UsageError(f"--thresholds {text!r}: every threshold must be a finite number")
    return vals


def parse_thresholds(text: str | None, n: int) -> list[float] | None:
    """``"0.8,0.9"`` -> one threshold per early exit (``n`` of them); one value stands for every exit."""
    if text is None:
        return None
    vals = _threshold_values(text)
    if len(vals) == 1 and n > 1:  # one value: the same threshold for every early exit (documented in --help)
        vals = vals * n
    if len(vals) != n:
        raise UsageError(f"--thresholds has {len(vals)} values; this bundle has {n} early exits")
    return vals


def parse_power_source(text: str | None) -> str | None:
    """``--power-source``, read once by :func:`edge_ee.power.discovery.parse_prefer` (which knows the back
    ends) and normalised: None (not asked for: measured only when a budget needs energy), ``"none"`` (never
    measured), ``"auto"`` or ``kind[:detail]`` of a registered back end."""
    if text is None:
        return None
    pref = parse_prefer(text)  # an unknown kind or a bad detail: UsageError naming the choices
    return "none" if pref.off else (pref.spec or "auto")


@dataclass(frozen=True)
class RunSettings:
    """What a run does, checked as a whole on construction. ``thresholds`` is the text as given: its count
    is checked against the bundle by :meth:`explicit_thresholds`. ``power_source`` is as
    :func:`parse_power_source` returns it."""

    budget: Budget | None = None
    mode: Mode = "adaptive"
    exit_at: int | None = None
    thresholds: str | None = None
    rule: str | None = None
    controller: bool = True
    power_source: str | None = None
    power_baseline_s: float | None = None
    profile_path: Path | None = None
    fps: float | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    quiet: bool = False
    audit: float | None = None  # share of the early answers audited (``--audit``)
    audit_target: float | None = None  # ``--audit-target`` (None: the profile's or the bundle's target drop)
    recalibrate: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_mode(self.mode))
        object.__setattr__(self, "power_source", parse_power_source(self.power_source))
        if self.mode == "exit_at" and self.exit_at is None:
            raise UsageError("--mode exit-at needs --exit-at K")
        if self.thresholds is not None:
            _threshold_values(self.thresholds)
        self._check_budget()
        self._check_audit()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunSettings:
        """From option values keyed by the ``run`` option names (``budget`` as text, ``mode``, ``exit_at``,
        ``thresholds``, ``rule``, ``controller``, ``power_source``, ``power_baseline``, ``profile``, ``fps``,
        ``max_frames``, ``duration``, ``quiet``); a missing key takes the library default."""
        o = options.get
        profile, audit, target = o("profile"), o("audit"), o("audit_target")
        if audit is not None:
            from ..calibration.audit import parse_audit_fraction

            audit = parse_audit_fraction(audit)
        return cls(budget=parse_budget(o("budget")), mode=o("mode") or "adaptive",  # type: ignore[arg-type]
                   exit_at=o("exit_at"), thresholds=o("thresholds"), rule=o("rule"),
                   controller=bool(o("controller", True)), power_source=o("power_source"),
                   power_baseline_s=o("power_baseline"), profile_path=None if profile is None else Path(profile),
                   fps=o("fps"), max_frames=o("max_frames"), duration_s=o("duration"), quiet=bool(o("quiet", False)),
                   audit=audit, audit_target=None if target is None else parse_fraction("--audit-target", target),
                   recalibrate=bool(o("recalibrate", False)))

    def _check_budget(self) -> None:
        """An energy or power budget is met by the controller from measured energy: it needs a power source,
        adaptive mode and the controller (a latency budget works without them: the deadline guard alone)."""
        b = self.budget
        if b is None or b.kind == "latency":
            return
        if self.power_source == "none":
            raise UsageError(f"a {b.kind} budget ({b.text}) needs a power source; --power-source none switches it off")
        if self.mode != "adaptive" or not self.controller:
            raise UsageError(f"a {b.kind} budget ({b.text}) is met by the controller: it needs --mode adaptive and "
                             "--controller")

    def _check_audit(self) -> None:
        """The audit options together: ``--audit-target`` and ``--recalibrate`` need ``--audit``, which needs
        early answers; recalibrating needs adaptive mode and thresholds that no controller moves."""
        if self.audit is None:
            for given, opt in ((self.audit_target is not None, "--audit-target"), (self.recalibrate, "--recalibrate")):
                if given:
                    raise UsageError(f"{opt} needs --audit", "e.g. --audit 2%")
            return
        if self.mode == "full":
            raise UsageError("--audit with --mode full: every frame already runs the whole model, there is "
                             "nothing to audit", "leave out --audit, or use --mode adaptive")
        if self.recalibrate and self.mode != "adaptive":
            raise UsageError(f"--recalibrate with --mode {self.mode.replace('_', '-')}: thresholds only matter in "
                             "adaptive mode", "use --mode adaptive, or leave out --recalibrate")
        if self.recalibrate and self.budget is not None and self.controller:
            raise UsageError("--recalibrate with --budget: the budget controller sets the thresholds",
                             "use --no-controller (the deadline guard alone), or leave out --recalibrate")

    def check_bundle(self, num_stages: int) -> list[float] | None:
        """What needs the bundle: ``exit_at`` within its exits, one threshold per early exit. Returns the
        explicit thresholds (None when not given)."""
        if self.mode == "exit_at" and not 0 <= self.exit_at < num_stages:  # type: ignore[operator]
            raise UsageError(f"--exit-at {self.exit_at}: this bundle has exits 0..{num_stages - 1}")
        return parse_thresholds(self.thresholds, num_stages - 1)

    def run_config(self, status_interval_s: float = 0.5) -> RunConfig:
        """The runner's config (the part a SIGHUP reload changes in place)."""
        return RunConfig(budget=self.budget, max_frames=self.max_frames, duration_s=self.duration_s, mode=self.mode,
                         exit_at=self.exit_at, fps=self.fps, status=not self.quiet,
                         status_interval_s=status_interval_s)

    @property
    def measures_energy(self) -> bool:
        """For an energy or power budget, and whenever a power source is asked for (``auto`` included)."""
        kind = self.budget.kind if self.budget is not None else None
        return kind in ("energy", "power") or self.power_source not in (None, "none")

    @property
    def power_prefer(self) -> str | None:
        """The power source for discovery: None lets it choose."""
        return None if self.power_source in (None, "auto", "none") else self.power_source

    @property
    def controls_budget(self) -> bool:
        """The budget controller runs (it also needs a bundle with more than one stage)."""
        return self.budget is not None and self.controller and self.mode == "adaptive"


def profile_thresholds(profile: Mapping[str, Any] | None, rule: str, early_exits: int) -> list[float] | None:
    """The thresholds a device profile chose, when it was made for ``rule`` and fits the bundle."""
    if profile is None or profile.get("rule") not in (None, rule):
        return None
    th = (profile.get("chosen") or {}).get("thresholds")
    if not isinstance(th, list) or len(th) != early_exits:
        return None
    return [float(t) for t in th]


def choose_thresholds(explicit: list[float] | None, profile: Mapping[str, Any] | None, rule: str,
                      bundle_default: list[float]) -> tuple[list[float], ThresholdSource]:
    """The threshold precedence, in one place: explicit (``--thresholds`` or the config file) > the device
    profile's (made for the rule in force, one per early exit) > the bundle's."""
    if explicit is not None:
        return explicit, "explicit"
    th = profile_thresholds(profile, rule, len(bundle_default))
    if th is not None:
        return th, "profile"
    return list(bundle_default), "bundle"
