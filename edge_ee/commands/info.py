"""``edge-ee info``: describe a bundle."""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from ..calibration.select import Guarantee
from ..core.bundle import Bundle, load_bundle
from .app import JsonOpt, ModelOpt, handle_errors


def describe(bundle: Bundle) -> dict[str, Any]:
    m = bundle.manifest
    cum = m.cumulative_macs()
    full = m.full_model_macs()
    stages = []
    for k, s in enumerate(m.stages):
        h = s.head
        stages.append({
            "index": k,
            "segment": s.segment.file,
            "segment_macs": s.segment.macs,
            "head": h.file if h else None,
            "head_kind": h.kind if h else None,
            "head_macs": h.macs if h else 0,
            "rule": h.rule if h and not h.is_final else None,
            "threshold": h.threshold if h and not h.is_final else None,
            "temperature": h.temperature if h else None,
            "cumulative_macs": cum[k],
            "cumulative_fraction_of_full": cum[k] / full if full else None,
            "stats": h.stats if h else {},
        })
    return {
        "path": str(bundle.path.resolve()),
        "embedded": bundle.is_embedded,
        "name": m.name,
        "task": m.task,
        "description": m.description,
        "schema_version": m.schema_version,
        "input": {"name": m.input.name, "shape": m.input.shape, "dtype": m.input.dtype,
                  "layout": m.input.layout, "preprocess": m.input.preprocess},
        "labels": m.labels,
        "full_model_macs": full,
        "stages": stages,
        "calibration": {k: v for k, v in m.calibration.to_dict().items() if k != "operating_points"},
        "operating_points": len(m.calibration.operating_points),
        "producer": m.producer,
    }


def _fmt_stat(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, float) and not math.isnan(v) else "-"


@handle_errors
def info(model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Describe a bundle: stages, MACs, exits, thresholds, labels."""
    d = describe(load_bundle(model))
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"bundle: {d['name']} ({d['task']}){'  [embedded default]' if d['embedded'] else ''}")
    typer.echo(f"path:   {d['path']}")
    if d["description"]:
        typer.echo(f"about:  {d['description']}")
    i = d["input"]
    typer.echo(f"input:  {i['name']} {i['shape']} {i['dtype']} {i['layout']}  "
               f"preprocess: {i['preprocess'].get('kind')}")
    typer.echo(f"labels: {', '.join(d['labels'])}")
    typer.echo(f"full model: {d['full_model_macs'] / 1e6:.3f} MMACs")
    typer.echo(f"{'exit':>4} {'segment MMACs':>14} {'head MMACs':>11} {'cum. MMACs':>11} {'of full':>8}"
               f" {'rule':>12} {'threshold':>9} {'val. acc':>9} {'exits':>7}")
    for s in d["stages"]:
        final = s["head_kind"] in ("final", None)
        thr = "-" if final else f"{s['threshold']:.4g}"
        typer.echo(
            f"{s['index']:>4} {s['segment_macs'] / 1e6:>14.4f} {s['head_macs'] / 1e6:>11.4f} "
            f"{s['cumulative_macs'] / 1e6:>11.4f} {100 * (s['cumulative_fraction_of_full'] or 0):>7.1f}% "
            f"{'final' if final else s['rule']:>12} {thr:>9} {_fmt_stat(s['stats'].get('accuracy')):>9} "
            f"{_fmt_stat(s['stats'].get('exit_fraction')):>7}"
        )
    if any((s["cumulative_fraction_of_full"] or 0) > 1 for s in d["stages"]):
        typer.echo("(of full: MACs up to that exit, the early-exit heads run on the way included, vs the model "
                   "without exits; over 100% = the heads' overhead when no exit is taken)")
    cal = d["calibration"]
    if cal:
        chosen = cal.get("chosen") or {}
        vals = {"full_accuracy": cal.get("full_accuracy"), "accuracy": chosen.get("accuracy"),
                "target_drop": cal.get("target_drop"), "macs_ratio": chosen.get("macs_ratio"),
                "oracle_macs_ratio": cal.get("oracle_macs_ratio")}
        typer.echo("calibration: " + ", ".join(f"{k}={v:.4g}" for k, v in vals.items() if isinstance(v, float)))
        g = cal.get("guarantee")
        typer.echo("guarantee: " + (Guarantee.from_dict(g).describe() if g else
                                    "none recorded (calibrated before guarantees; `edge-ee profile` makes one)"))
    if d["producer"]:
        typer.echo("producer:")
        for line in _readable_lines(d["producer"]):
            typer.echo("  " + line)


def _readable_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(_readable_value(x) for x in v) or "-"
    return str(v)


def _readable_lines(d: dict[str, Any], indent: str = "") -> list[str]:
    """A nested dict as ``key: value`` lines, sub-dicts indented, floats to 4 significant digits."""
    lines: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict) and v and all(not isinstance(x, dict | list) for x in v.values()):
            lines.append(f"{indent}{k}: " + ", ".join(f"{kk} {_readable_value(x)}" for kk, x in v.items()))
        elif isinstance(v, dict) and v:
            lines.append(f"{indent}{k}:")
            lines.extend(_readable_lines(v, indent + "  "))
        else:
            lines.append(f"{indent}{k}: {_readable_value(v)}")
    return lines
