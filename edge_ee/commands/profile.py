"""``edge-ee profile``: measure this device and choose thresholds (the measurement itself lives in
:mod:`edge_ee.profiling`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..calibration.select import parse_fraction
from ..core.bundle import load_bundle
from ..core.engine import Engine
from ..errors import UsageError
from ..power.discovery import power_source_help
from ..sources import sources_help
from .app import JsonOpt, ModelOpt, _session_config, handle_errors


@handle_errors
def profile(
    source: Annotated[str, typer.Option("--source", "-s", help="Calibration data (any run source): "
                                        + sources_help())] = "",
    model: ModelOpt = None,
    labels: Annotated[str, typer.Option(help="auto: accuracy against the source's ground truth when every input "
                                             "has one, else agreement with the final exit; source: the source's "
                                             "ground truth (an error if it has none); none: agreement only; FILE: "
                                             "a text file with one class label (name or index) per line in "
                                             "frame order, # comments and blank lines ignored; profiling stops "
                                             "at its end.")
                      ] = "auto",
    target_drop: Annotated[str, typer.Option("--target-drop", help="Allowed accuracy (or agreement) drop vs the "
                                             "final exit for the chosen thresholds: 1% or 0.01.")] = "1%",
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Inputs to measure (after warm-up).")] = 500,
    warmup: Annotated[int, typer.Option(min=0, help="Inputs whose timings are discarded.")] = 20,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Profile JSON (default: profile.json beside the "
                                             "bundle if writable, else ~/.local/state/edge-ee/profiles/).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Where to save the PNG of the frontier (default: "
                                              "beside the profile, PROFILE.png, when matplotlib is installed).")
                    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Do not save the PNG plot.")] = False,
    power_source: Annotated[str, typer.Option("--power-source", help="As for run (none: latency only, no "
                                              "energies): " + power_source_help())] = "auto",
    power_baseline: Annotated[float, typer.Option(min=0.0, help="Seconds of idle power measured first.")] = 1.0,
    providers: Annotated[str | None, typer.Option(help="onnxruntime providers, e.g. cpu or cuda,cpu.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="intra-op threads per session.")] = 1,
    rule: Annotated[str | None, typer.Option(help="Exit rule to calibrate: max_softmax | entropy | confidence.")
                    ] = None,
    confidence: Annotated[str, typer.Option("--confidence", help="Probability that the drop on new frames like these "
                                            "stays within --target-drop (90% or 0.9); 'none': the point estimate, "
                                            "no guarantee.")] = "90%",
    as_json: JsonOpt = False,
) -> None:
    """Measure per-stage latency and energy on this device, build the accuracy/cost frontier, choose thresholds
    with a guarantee: P(drop on new frames like these > --target-drop) <= 1 - --confidence."""
    from ..control.settings import parse_power_source
    from ..profiling.measure import run_profile
    from ..profiling.profile import default_out, format_profile, plot_profile, write_profile
    from ..sources import open_source
    from ..sources.labelled import LabelledSource, peek

    if not source:
        raise UsageError("no --source given", "e.g. --source sample (labelled), --source images:DIR")
    parse_power_source(power_source)  # read as run reads it, before the bundle loads
    drop = parse_fraction("--target-drop", target_drop)
    conf = None if confidence.strip().lower() == "none" else parse_fraction("--confidence", confidence)
    want_plot = _want_plot(plot, no_plot)
    bundle = load_bundle(model)
    label_file = _label_file(labels, bundle.manifest.labels, frames, warmup)
    label_mode = labels if label_file is None else "source"
    engine = Engine(bundle, session=_session_config(providers, threads), rule=rule)
    src = open_source(source, bundle.manifest, {"strict": True})  # a skipped input would shift --labels FILE
    try:
        if label_file is not None:
            src = LabelledSource(src, label_file)
        elif labels == "source":  # fail now, not after the whole profiling run
            src = peek(src)
            if src.first is not None and src.first.meta.get("truth") is None:
                raise UsageError(
                    f"--labels source: {src.description} gives no ground truth (its first input has none)",
                    "use a labelled source (--source sample, images:DIR with one folder per class), or "
                    "--labels FILE (one class label per line, in frame order), or --labels auto / none")
        typer.echo(f"edge-ee: profiling {bundle.manifest.name} on {src.description}", err=True)
        prof = run_profile(engine, src, frames=frames, warmup=warmup, labels=label_mode, target_drop=drop,
                           confidence=conf, power_prefer=power_source, baseline_s=power_baseline,
                           progress=lambda m: typer.echo(f"edge-ee: {m}", err=True))
        if isinstance(src, LabelledSource) and src.source_ended:
            typer.echo(f"edge-ee: note: the source ended after {src.delivered} inputs, before the "
                       f"{len(src.labels)} labels of {labels} ran out: are they for this source?", err=True)
    finally:
        src.close()
    if label_file is not None:
        prof["labels_file"] = str(label_file.path)
    path = write_profile(prof, out or default_out(bundle))
    png = plot_profile(prof, plot if plot is not None else path.with_suffix(".png")) if want_plot else None
    if as_json:
        typer.echo(json.dumps(prof, indent=2))
    else:
        typer.echo(format_profile(prof))
        typer.echo(f"profile: {path}" + (f"\nplot: {png}" if png else ""))


def _want_plot(plot: Path | None, no_plot: bool) -> bool:
    """Whether to save the PNG: asked for, or by default when matplotlib is there."""
    if plot is not None and no_plot:
        raise UsageError("--plot and --no-plot contradict each other", "give one of them")
    if no_plot:
        return False
    if not _have_matplotlib():
        if plot is not None:
            raise UsageError("--plot needs matplotlib", "pip install matplotlib (or 'edge-ee[plot]'), or leave out "
                                                        "--plot")
        typer.echo("edge-ee: plot skipped: matplotlib not installed (pip install matplotlib)", err=True)
        return False
    return True


def _label_file(labels: str, classes: list[str], frames: int, warmup: int) -> Any:
    """``--labels FILE``: the file, every line checked up front (None for auto, source and none)."""
    from ..sources.labelled import read_label_file

    if labels in ("auto", "source", "none"):
        return None
    label_file = read_label_file(Path(labels), classes)
    if len(label_file) <= warmup:
        raise UsageError(f"--labels {labels}: {len(label_file)} labels, but the first {warmup} inputs are "
                         "warm-up (discarded)", "label more frames, or lower --warmup")
    if len(label_file) < warmup + frames:
        typer.echo(f"edge-ee: note: {labels} has {len(label_file)} labels: profiling stops there "
                   f"({warmup} warm-up + {len(label_file) - warmup} measured inputs instead of "
                   f"{warmup} + {frames})", err=True)
    return label_file


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
