"""Wiring for ``edge-ee run``: profile lookup, energy and controller hooks, extra summary lines.

Energies are above the idle baseline throughout (the run's ``energy_mj``, the profile's stage, exit,
frontier and full-model energies); an energy budget is energy above idle per inference, a power
budget the average power of the device, idle included.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..calibration.select import Guarantee
from ..core.bundle import Bundle
from ..core.engine import Engine
from ..pipeline.runner import RunHook, Runner
from .settings import RunSettings, choose_thresholds

log = logging.getLogger("edge_ee.control")


def guarantee_note(g: Guarantee | dict[str, Any] | None) -> str:
    """One line on what the thresholds in force promise (a profile's guarantee dict or a manifest's record)."""
    if not g:
        return "no guarantee recorded (calibrated before guarantees): `edge-ee profile` selects thresholds with one"
    return "guarantee: " + (g if isinstance(g, Guarantee) else Guarantee.from_dict(g)).describe()


def make_run_hooks(bundle: Bundle, engine: Engine, settings: RunSettings, *, setpoint: float = 0.9,
                   echo: Callable[[str], None] = print) -> tuple[list[RunHook], dict[str, Any] | None]:
    """Sets the thresholds in force (explicit > device profile > bundle) and returns the hooks for a run
    (energy hook first: the controller reads its measurement; the profile comparison last: it reads the
    energy hook's summary figures) and the profile used."""
    from ..profiling.profile import find_profile

    explicit = settings.check_bundle(engine.num_stages)
    profile, ppath = find_profile(bundle, settings.profile_path, engine=engine)
    _apply_thresholds(engine, explicit, profile, ppath, settings.mode, echo)
    hooks: list[RunHook] = []
    energy = None
    if settings.measures_energy:
        from .energy_hook import EnergyHook

        energy = EnergyHook(settings.power_prefer, baseline_s=settings.power_baseline_s,
                            profile_power=(profile or {}).get("power"), profile_path=ppath)
        hooks.append(energy)
    if settings.controls_budget and engine.num_stages > 1:
        from .hook import ControllerHook

        hooks.append(ControllerHook(settings.budget, profile=profile, setpoint=setpoint,  # type: ignore[arg-type]
                                    fps=settings.fps, energy_hook=energy))
    if profile is not None:
        hooks.append(ProfileSummaryHook(profile, ppath))
    return hooks, profile


def _apply_thresholds(engine: Engine, explicit: list[float] | None, profile: dict[str, Any] | None,
                      ppath: Path | None, mode: str, echo: Callable[[str], None]) -> None:
    """Set the thresholds :func:`~edge_ee.control.settings.choose_thresholds` picks and say where they came from."""
    rule = engine.rules[0]
    th, source = choose_thresholds(explicit, profile, rule, engine.manifest.default_thresholds())
    engine.set_thresholds(th)
    if profile is not None and profile.get("rule") not in (None, rule):
        log.warning("profile %s was made for exit rule %r, this run uses %r: its thresholds are not used",
                    ppath, profile.get("rule"), rule)
    elif profile is not None and source == "explicit":
        echo(f"edge-ee: profile {ppath} found; --thresholds given, so its thresholds are not used")
    if source == "profile":
        echo(f"edge-ee: using profile {ppath}: thresholds {[round(t, 4) for t in th]}; "
             + guarantee_note(profile.get("guarantee")))  # type: ignore[union-attr]
    elif source == "bundle" and mode == "adaptive" and engine.num_stages > 1:
        echo("edge-ee: the bundle's thresholds; " + guarantee_note(engine.manifest.calibration.guarantee))


class ProfileSummaryHook(RunHook):
    """Adds the run's cost against the full model measured by ``edge-ee profile`` to the summary:
    ``latency_vs_full_model`` (mean engine time per inference / the profile's full-model latency, both
    without preprocessing) and, with energy measured, ``energy_vs_full_model`` (energy above idle per
    inference / the profile's full-model energy above idle), with ``full_model_latency_ms``,
    ``full_model_energy_mj``, ``full_model_energy_estimated`` and ``profile_path``."""

    def __init__(self, profile: dict[str, Any], path: Path | None = None) -> None:
        self.profile = profile
        self.path = path

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        full = self.profile.get("full_model") or {}
        summary["profile_path"] = None if self.path is None else str(self.path)
        lat, inf = full.get("latency_ms"), summary.get("infer_ms_mean")
        if isinstance(lat, (int, float)) and lat > 0 and inf is not None:
            summary["full_model_latency_ms"] = float(lat)
            summary["latency_vs_full_model"] = inf / lat
        en, e = full.get("energy_mj"), summary.get("energy_mj_per_inference")
        if isinstance(en, (int, float)) and en > 0 and e is not None:
            summary["full_model_energy_mj"] = float(en)
            summary["full_model_energy_estimated"] = bool((self.profile.get("power") or {}).get("estimated"))
            summary["energy_vs_full_model"] = e / en


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def format_extras(s: dict[str, Any]) -> str:
    """Summary lines for the power source, average power, energy per exit, latency and energy vs the full
    model (from the profile) and the controller. Every energy or power figure says "estimated" when
    it comes from the CPU-utilisation estimate."""
    est = " (estimated)" if s.get("energy_estimated") else ""
    lines = _power_lines(s, est) + _energy_lines(s, est) + _vs_full_lines(s)
    if s.get("controller"):
        lines.append(_controller_line(s["controller"]))
    return "\n".join(lines)


def _power_lines(s: dict[str, Any], est: str) -> list[str]:
    lines: list[str] = []
    pw = s.get("power")
    if pw:
        from .energy_hook import describe_power

        lines.append(f"power source: {describe_power(pw)}")
        if pw.get("failed_sources"):
            lines.append("power sources that failed during the run: " + "; ".join(pw["failed_sources"]))
    if s.get("mean_power_w") is not None:
        b = (s.get("controller") or {}).get("budget") or {}
        vs = f" (budget {b.get('text')})" if b.get("kind") == "power" else ""
        lines.append(f"average power{est}: {s['mean_power_w']:.3f} W over the run, idle included{vs}")
    return lines


def _energy_lines(s: dict[str, Any], est: str) -> list[str]:
    lines: list[str] = []
    per_exit = s.get("exit_energy_mj")
    if per_exit and any(v is not None for v in per_exit):
        lines.append(f"energy per exit above idle{est}: " + "  ".join(
            f"exit{k}: {_f(v)} mJ" for k, v in enumerate(per_exit) if v is not None))
    if s.get("energy_clamped_inferences") or s.get("energy_clamped"):
        what = [f"{s['energy_clamped_inferences']} inferences"] if s.get("energy_clamped_inferences") else []
        if s.get("energy_clamped"):
            what.append("the mean per inference")
        lines.append("energy below the idle baseline reported as 0 mJ: " + " and ".join(what)
                     + " (noise: the device drew less than the idle baseline, measured at a busier moment, or "
                       "inferences too short for the power source's update period)")
    if s.get("energy_extrapolated_inferences"):
        lines.append(f"energy of {s['energy_extrapolated_inferences']} inferences not covered by power samples "
                     "(the last reading was held)")
    return lines


def _vs_full_lines(s: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if s.get("latency_vs_full_model") is not None:
        lines.append(f"latency vs full model: inference mean {_f(s.get('infer_ms_mean'))} ms = "
                     f"{100 * s['latency_vs_full_model']:.1f}% of {s['full_model_latency_ms']:.3f} ms "
                     "(full model, measured by `edge-ee profile`)")
    if s.get("energy_vs_full_model") is not None:
        est_full = " (estimated)" if s.get("energy_estimated") or s.get("full_model_energy_estimated") else ""
        lines.append(f"energy vs full model{est_full}: {_f(s.get('energy_mj_per_inference'))} mJ above idle = "
                     f"{100 * s['energy_vs_full_model']:.1f}% of {s['full_model_energy_mj']:.3f} mJ "
                     "(full model, measured by `edge-ee profile`)")
    return lines


def _controller_line(c: dict[str, Any]) -> str:
    b = c["budget"]
    return (f"controller: budget {b['text']} ({b['kind']}), target {c['target']:.4g} {c['target_unit']}, "
            f"frontier from {c['frontier_source']} ({c['points']} points), final point {c['final_index']} "
            f"thresholds {[round(t, 4) for t in c['final_thresholds']]}, {c['moves']} moves, "
            f"slowdown x{c['slowdown']:.2f}"
            + (f", deadline misses {100 * c['miss_rate']:.2f}% (EWMA, target {100 * c['target_miss']:.1f}%),"
               f" guard's risk price {c['risk_price']:.3g}" if c.get("risk_price") is not None else "")
            + ("  [budget infeasible: see warning]" if c.get("infeasible_warning") else ""))
