"""``edge-ee profile``: on-target calibration of a bundle.

The measurement is :func:`edge_ee.profiling.measure.run_profile`; this module keeps the profile's identity,
storage, lookup and report. On the device, one pass per input runs every segment and every head
(``Engine.infer_all_exits``):

* latency of each segment and head (warm-up discarded; mean, p50, p95, p99) and its energy from the
  power sampler: the energy **above the idle baseline** measured at start (``*_energy_mj``), with the
  total including idle power beside it (``*_energy_total_mj``); "estimated" when no sensor. The time
  windows are recorded during profiling and integrated once power samples cover them (a final wait
  for one more sample), so no window is extrapolated from a stale reading;
* the latency that decides (the frontier's, each exit's ``adaptive_ms`` and the full model's) is measured on the
  calls ``run`` makes: every stage through ``Engine.infer`` (one call per stage when the bundle has merged stage
  graphs) and ``mode="full"`` (one call when it has the one-graph full model), not as the sum of separate
  segment and head calls, which would overstate both;
* every exit's answer on the calibration data: accuracy against the source's ground truth (e.g.
  ``--source sample``), or without labels the agreement with the final exit (the usual case on a
  device: no labels needed);
* the accuracy (or agreement) vs latency/energy frontier of threshold vectors for the exit rule in
  force, and the cheapest point within ``--target-drop`` of the final exit.

Profile schema 2 (``edge-ee-profile/2``; schema 1 stored total energies, idle included, and is
refused with a message to re-create it):

* ``stages[k]``: ``segment_ms``/``head_ms`` percentiles; ``segment_energy_mj``, ``head_energy_mj`` and
  ``energy_mj`` (segment + head), above idle; ``energy_total_mj`` (segment + head, idle included);
* ``exits[k]``: accuracy/agreement, ``adaptive_ms`` and ``adaptive_energy_mj`` (every stage up to k,
  above idle; ``adaptive_energy_total_mj`` idle included), ``exit_at_ms`` and ``exit_at_energy_mj``;
* ``frontier`` points and ``chosen``: ``latency_ms``, ``energy_mj`` (above idle), quality, exit fractions;
* ``full_model``: ``latency_ms``, ``latency_p99_ms``, ``energy_mj`` (above idle), ``energy_total_mj``;
* ``power``: source, rail, ``estimated``, ``baseline_w`` (the idle baseline), ``extrapolated_windows``.

The profile is JSON keyed by device (board, CPU, cores, arch, power mode, onnxruntime version and
providers) and by the bundle's content hash. ``edge-ee run`` picks a matching profile up (beside the
bundle, or in ``~/.local/state/edge-ee/profiles/``) for its thresholds and the controller's frontier,
and ignores, with a warning, one made on another device or for another bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..calibration.select import Guarantee
from ..core.bundle import Bundle
from ..errors import ConfigError, OutputError, UsageError

log = logging.getLogger("edge_ee.profile")

SCHEMA = "edge-ee-profile/2"
OLD_SCHEMAS = {"edge-ee-profile/1": "its energies include idle power, and its per-stage energies could come "
                                    "from a stale power reading"}
PROFILE_NAME = "profile.json"
IDENTITY_KEYS = ("board", "cpu", "cores", "machine", "power_mode", "onnxruntime", "providers", "threads")


# ---- identity and storage --------------------------------------------------------------------------
def device_identity(engine: Any = None) -> dict[str, Any]:
    """The identity a profile is keyed on; with ``engine``, its providers in use and intra-op threads."""
    from ..device import device_identity as ident
    from ..device import engine_session_facts

    d = ident(*engine_session_facts(engine)) if engine is not None else ident()
    return {k: d.get(k) for k in IDENTITY_KEYS}


def device_key(identity: dict[str, Any]) -> str:
    blob = json.dumps({k: identity.get(k) for k in IDENTITY_KEYS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-ee" / "profiles"


def candidate_paths(bundle: Bundle) -> list[Path]:
    """Where ``run`` looks for a profile: beside the bundle (not for the embedded one), then the state dir."""
    out = [] if bundle.is_embedded else [bundle.path / PROFILE_NAME]
    out.append(state_dir() / f"{bundle.content_hash()[:16]}.json")
    return out


def default_out(bundle: Bundle) -> Path:
    """Beside the bundle when that directory is writable (and not the embedded one inside the
    package), else the per-user state directory keyed by the bundle hash."""
    if not bundle.is_embedded and os.access(bundle.path, os.W_OK):
        return bundle.path / PROFILE_NAME
    return state_dir() / f"{bundle.content_hash()[:16]}.json"


def write_profile(profile: dict[str, Any], path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(profile, indent=2) + "\n")
        tmp.replace(path)
    except OSError as e:
        raise OutputError(f"cannot write the profile {path}: {e.strerror or e}",
                          "pass --out FILE somewhere writable") from e
    return path


def read_profile(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read profile {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"profile {path} is not valid JSON: {e}") from e
    if isinstance(d, dict) and d.get("schema") in OLD_SCHEMAS:
        raise ConfigError(f"profile {path} has the old schema {d['schema']} ({OLD_SCHEMAS[d['schema']]}); this "
                          f"edge-ee reads {SCHEMA}", "re-create it with `edge-ee profile`")
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not an edge-ee profile (schema {d.get('schema') if isinstance(d, dict) else '?'}"
                          f", expected {SCHEMA})", "re-create it with `edge-ee profile`")
    for key in ("device", "bundle", "frontier", "chosen"):
        if key not in d:
            raise ConfigError(f"profile {path} lacks {key!r}", "re-create it with `edge-ee profile`")
    return d


def mismatch(profile: dict[str, Any], bundle: Bundle, identity: dict[str, Any] | None = None) -> list[str]:
    """Why the profile does not belong to this bundle on this device (empty: it does)."""
    out = []
    want = bundle.content_hash()
    have = (profile.get("bundle") or {}).get("hash")
    if have != want:
        out.append(f"it was made for another bundle (hash {str(have)[:12]}..., this bundle {want[:12]}...)")
    ident = identity if identity is not None else device_identity()
    pdev = profile.get("device") or {}
    diff = [k for k in IDENTITY_KEYS if pdev.get(k) != ident.get(k)]
    if diff:
        out.append("it was made on another device or software stack ("
                   + "; ".join(f"{k}: {pdev.get(k)!r} here {ident.get(k)!r}" for k in diff) + ")")
    return out


def find_profile(bundle: Bundle, explicit: Path | None = None, warn: Callable[[str], None] | None = None,
                 engine: Any = None) -> tuple[dict[str, Any] | None, Path | None]:
    """The matching profile for ``bundle`` on this device (and ``engine``'s providers and threads, when
    given), or (None, None). An explicit path that cannot be read raises ConfigError; a profile for
    another bundle/device is ignored with a warning."""
    if warn is None:
        def warn(msg: str) -> None:
            log.warning("%s", msg)
    paths = [explicit] if explicit is not None else [p for p in candidate_paths(bundle) if p.is_file()]
    ident: dict[str, Any] | None = None
    for p in paths:
        try:
            prof = read_profile(p)
        except ConfigError as e:
            if explicit is not None:
                raise
            warn(f"ignoring profile: {e}")
            continue
        if ident is None:
            ident = device_identity(engine)
        why = mismatch(prof, bundle, ident)
        if why:
            warn(f"ignoring profile {p}: " + "; ".join(why) + ". Re-run `edge-ee profile` on this device.")
            continue
        return prof, p
    return None, None


def format_profile(p: dict[str, Any]) -> str:
    from ..control.energy_hook import describe_power

    pw = p["power"]
    est = " (ESTIMATED)" if pw["estimated"] else ""
    est_c = ", ESTIMATED" if pw["estimated"] else ""
    qm = p["quality_metric"].replace("_", " ")
    lines = [f"profile of {p['bundle']['name']} on {p['device'].get('board') or p['device'].get('cpu')} "
             f"({p['measured_inputs']} inputs measured, {p['warmup_discarded']} warm-up discarded)",
             "power: " + (describe_power({**pw, "kind": pw.get("source")}) if pw.get("source")
                          else "not measured (--power-source none)")]
    lines.append(f"{'stage':>5} {'seg p50':>8} {'seg p99':>8} {'head p50':>8} {'head p99':>8} {'seg mJ':>8} "
                 f"{'head mJ':>8} {'accuracy' if qm == 'accuracy' else 'agrees w/ final':>15}"
                 f"   (ms; mJ above idle{est_c})")
    for k, (s, e) in enumerate(zip(p["stages"], p["exits"])):
        h = s["head_ms"] or {}
        q = e["accuracy"] if e["accuracy"] is not None else e["agreement"]
        lines.append(f"{k:>5} {s['segment_ms']['p50']:>8.4f} {s['segment_ms']['p99']:>8.4f} "
                     f"{_f(h.get('p50')):>8} {_f(h.get('p99')):>8} {_f(s.get('segment_energy_mj')):>8} "
                     f"{_f(s.get('head_energy_mj')):>8} {100 * q:>14.2f}%")
    f = p["full_model"]
    fe = "" if f["energy_mj"] is None else f", {f['energy_mj']:.4f} mJ above idle"
    if f.get("energy_total_mj") is not None:
        fe += f", {f['energy_total_mj']:.4f} mJ with idle power"
    fe += est if fe else ""
    lines.append(f"full model: {f['latency_ms']:.4f} ms mean{fe}")
    if pw.get("extrapolated_windows"):
        lines.append(f"warning: {pw['extrapolated_windows']} time windows were not covered by power samples")
    if p["chosen"]:
        lines.append(_chosen_line(p, qm, est))
    g = p.get("guarantee")
    if g:
        lines.append("guarantee: " + Guarantee.from_dict(g).describe())
    elif p.get("frontier"):
        lines.append("guarantee: none (point estimate: the cheapest point meeting the target on these frames; "
                     "it can miss the target on new data)")
    lines.append(f"frontier: {len(p['frontier'])} operating points")
    return "\n".join(lines)


def _chosen_line(p: dict[str, Any], qm: str, est: str) -> str:
    c = p["chosen"]
    ce = "" if c.get("energy_mj") is None else f", {c['energy_mj']:.4f} mJ above idle{est}"
    q = c.get("accuracy") if c.get("accuracy") is not None else c.get("agreement", 0.0)
    how = (f"{qm} drop <= {100 * p['target_drop']:.2g} pp at {100 * p['confidence']:.3g}% confidence"
           if p.get("guarantee") else f"{qm} within {100 * p['target_drop']:.2g} pp of the final exit here")
    return (f"chosen ({how}): thresholds {[round(t, 4) for t in c['thresholds']]} -> {qm} {100 * q:.2f}%, "
            f"{c['latency_ms']:.4f} ms{ce}, exits {[round(x, 3) for x in c['exit_fractions']]}")


def _f(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def plot_profile(p: dict[str, Any], path: Path) -> Path:
    """PNG: quality vs latency (and vs energy) along the frontier, chosen point marked. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise UsageError("--plot needs matplotlib", "pip install 'edge-ee[plot]'") from e
    front = p["frontier"]
    qk = "accuracy" if p["quality_metric"] == "accuracy" else "agreement"
    est = " (estimated)" if p["power"]["estimated"] else ""
    has_e = all(pt.get("energy_mj") is not None for pt in front) and front
    fig, axes = plt.subplots(1, 2 if has_e else 1, figsize=(11 if has_e else 6, 4.2), squeeze=False)
    for ax, key, xl in [(axes[0][0], "latency_ms", "mean latency per inference [ms]")] + (
            [(axes[0][1], "energy_mj", f"energy per inference above idle [mJ]{est}")] if has_e else []):
        xs = [pt[key] for pt in front]
        ys = [100 * pt[qk] for pt in front]
        ax.plot(xs, ys, "o-", ms=3, label="frontier (threshold vectors)")
        c = p.get("chosen")
        if c and c.get(key) is not None:
            ax.plot([c[key]], [100 * c[qk]], "r*", ms=14, label="chosen")
        full = p["full_model"]
        fx = full["latency_ms"] if key == "latency_ms" else full.get("energy_mj")
        if fx is not None:
            ax.axvline(fx, color="grey", ls="--", lw=1, label="full model")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"{qk} [%]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{p['bundle']['name']} on {p['device'].get('board') or p['device'].get('cpu')}", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise OutputError(f"cannot write the plot {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path
