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
from ..core.budget import Budget
from ..core.bundle import Bundle
from ..core.engine import Engine
from ..errors import UsageError
from ..pipeline.runner import RunHook, Runner

log = logging.getLogger("edge_ee.control")


def guarantee_note(g: Guarantee | dict[str, Any] | None) -> str:
    """One line on what the thresholds in force promise (a profile's guarantee dict or a manifest's record)."""
    if not g:
        return "no guarantee recorded (calibrated before guarantees): `edge-ee profile` selects thresholds with one"
    return "guarantee: " + (g if isinstance(g, Guarantee) else Guarantee.from_dict(g)).describe()


def make_run_hooks(bundle: Bundle, engine: Engine, budget: Budget | None, *, mode: str = "adaptive",
                   controller: bool = True, power_source: str | None = None, power_baseline_s: float | None = None,
                   profile_path: Path | None = None, thresholds_given: bool = False, fps: float | None = None,
                   setpoint: float = 0.9, echo: Callable[[str], None] = print,
                   ) -> tuple[list[RunHook], dict[str, Any] | None]:
    """Hooks for a run (energy hook first: the controller reads its measurement; the profile comparison
    last: it reads the energy hook's summary figures) and the profile used."""
    from ..profiling.profile import find_profile

    profile, ppath = find_profile(bundle, profile_path, engine=engine)
    noted = thresholds_given
    if profile is not None:
        chosen = profile.get("chosen") or {}
        th = chosen.get("thresholds")
        rule_ok = profile.get("rule") in (None, engine.rules[0])
        if not rule_ok:
            log.warning("profile %s was made for exit rule %r, this run uses %r: its thresholds are not used",
                        ppath, profile.get("rule"), engine.rules[0])
        elif thresholds_given:
            echo(f"edge-ee: profile {ppath} found; --thresholds given, so its thresholds are not used")
        elif isinstance(th, list) and len(th) == engine.num_stages - 1:
            engine.set_thresholds([float(t) for t in th])
            echo(f"edge-ee: using profile {ppath}: thresholds {[round(float(t), 4) for t in th]}; "
                 + guarantee_note(profile.get("guarantee")))
            noted = True
    if not noted and mode == "adaptive" and engine.num_stages > 1:
        echo("edge-ee: the bundle's thresholds; " + guarantee_note(bundle.manifest.calibration.guarantee))
    from ..power import parse_prefer

    kind = budget.kind if budget is not None else None
    power = parse_prefer(power_source)
    wants_energy = kind in ("energy", "power") or (power_source is not None and not power.off)
    if kind in ("energy", "power"):
        if power.off:
            raise UsageError(f"a {kind} budget ({budget.text}) needs a power source; "  # type: ignore[union-attr]
                             "--power-source none switches it off")
        if mode != "adaptive" or not controller:
            raise UsageError(f"a {kind} budget ({budget.text}) is met by the controller: "  # type: ignore[union-attr]
                             "it needs --mode adaptive and --controller")
    hooks: list[RunHook] = []
    energy = None
    if wants_energy:
        from .energy_hook import EnergyHook

        energy = EnergyHook(power.spec, baseline_s=power_baseline_s,
                            profile_power=(profile or {}).get("power"), profile_path=ppath)
        hooks.append(energy)
    if budget is not None and controller and mode == "adaptive" and engine.num_stages > 1:
        from .hook import ControllerHook

        hooks.append(ControllerHook(budget, profile=profile, setpoint=setpoint, fps=fps, energy_hook=energy))
    if profile is not None:
        hooks.append(ProfileSummaryHook(profile, ppath))
    return hooks, profile


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
    lines: list[str] = []
    est = " (estimated)" if s.get("energy_estimated") else ""
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
    if s.get("latency_vs_full_model") is not None:
        lines.append(f"latency vs full model: inference mean {_f(s.get('infer_ms_mean'))} ms = "
                     f"{100 * s['latency_vs_full_model']:.1f}% of {s['full_model_latency_ms']:.3f} ms "
                     "(full model, measured by `edge-ee profile`)")
    if s.get("energy_vs_full_model") is not None:
        est_full = " (estimated)" if s.get("energy_estimated") or s.get("full_model_energy_estimated") else ""
        lines.append(f"energy vs full model{est_full}: {_f(s.get('energy_mj_per_inference'))} mJ above idle = "
                     f"{100 * s['energy_vs_full_model']:.1f}% of {s['full_model_energy_mj']:.3f} mJ "
                     "(full model, measured by `edge-ee profile`)")
    c = s.get("controller")
    if c:
        b = c["budget"]
        lines.append(f"controller: budget {b['text']} ({b['kind']}), target {c['target']:.4g} {c['target_unit']}, "
                     f"frontier from {c['frontier_source']} ({c['points']} points), final point {c['final_index']} "
                     f"thresholds {[round(t, 4) for t in c['final_thresholds']]}, {c['moves']} moves, "
                     f"slowdown x{c['slowdown']:.2f}"
                     + (f", deadline misses {100 * c['miss_rate']:.2f}% (EWMA, target {100 * c['target_miss']:.1f}%),"
                        f" guard's risk price {c['risk_price']:.3g}" if c.get("risk_price") is not None else "")
                     + ("  [budget infeasible: see warning]" if c.get("infeasible_warning") else ""))
    return "\n".join(lines)
