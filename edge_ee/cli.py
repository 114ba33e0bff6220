"""The ``edge-ee`` command line.

Exit codes (see :class:`edge_ee.errors.ExitCode`): 0 ok, 1 internal error, 2 usage, 3 bad bundle,
4 source error, 5 runtime error, 6 output error, 7 device not found, 8 config error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer

from . import __version__
from .budget import parse_budget
from .bundle import Bundle, load_bundle
from .calibration.select import Guarantee, parse_fraction
from .engine import Engine
from .errors import EdgeEEError, ExitCode, UsageError
from .service.config import config_option_callback
from .sessions import SessionConfig

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    no_args_is_help=True,
    help="edge-ee: early-exit inference on edge devices. Exit codes: 0 ok, 2 usage, 3 bad bundle, "
    "4 source error, 5 runtime error, 6 output error, 7 device not found, 8 config error.",
)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(e: EdgeEEError) -> None:
    typer.echo(f"edge-ee: {e.kind}: {e}", err=True)
    raise typer.Exit(int(e.exit_code))


def handle_errors(fn: F) -> F:
    """Turn EdgeEEError into one message on stderr and its exit code (no traceback); a reader that closed
    stdout (``edge-ee ... | head``) ends the command quietly with exit code 0."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeEEError as e:
            _fail(e)
        except BrokenPipeError:
            _stdout_closed()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edge-ee {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="edge-ee: %(levelname)s: %(message)s")


ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Bundle directory (default: the embedded one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _session_config(providers: str | None, threads: int) -> SessionConfig:
    return SessionConfig(providers=[p.strip() for p in providers.split(",") if p.strip()] if providers else None,
                         intra_op_threads=threads)


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


@app.command()
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


@app.command()
@handle_errors
def validate(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle directory to check.")],
    as_json: JsonOpt = False,
    data: Annotated[Path | None, typer.Option(help="Labelled images (one sub-folder per class): fail when the full "
                                              "model's accuracy through the bundle's preprocessing is far below the "
                                              "recorded one.")] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="With --data: images per class.")] = 20,
) -> None:
    """Fully check a bundle: manifest, paths, checksums, ONNX I/O chaining, and a test inference."""
    checks: list[str] = []
    b = load_bundle(bundle_dir)
    checks.append(f"manifest schema v{b.manifest.schema_version} parsed")
    checks.append(f"{len(b.manifest.files())} files present inside the bundle, sha256 verified")
    checks.append(f"input dtype {b.manifest.input.dtype} is what the first segment takes; "
                  f"{len(b.manifest.external_data)} external-data files, all listed and inside the bundle")
    eng = Engine(b)
    checks.append(f"{len(b.manifest.stages)} stages load in onnxruntime; inputs/outputs chain")
    from .errors import BundleError

    x_pre = _check_preprocessing(b, eng)
    checks.append(f"preprocessing ({b.manifest.input.preprocess.get('kind', 'none')}) turns a source frame into "
                  f"the model's input {list(x_pre.shape)} {x_pre.dtype}, finite values")
    rng = np.random.default_rng(0)
    x = rng.random(eng.input_shape, dtype=np.float32).astype(eng.input_dtype)
    for inp in (x, x_pre):
        for k in range(eng.num_stages):
            r = eng.infer(inp, mode="exit_at", exit_at=k)
            if not np.all(np.isfinite(r.probs)):
                raise BundleError(f"exit {k} produced non-finite outputs on a test input")
    r = eng.infer(x)
    checks.append(f"test inference through every exit ok (adaptive run answered at exit {r.exit_index})")
    if data is not None:
        from .validate_data import check_data, describe

        checks.append(describe(check_data(b, data, per_class)))
    if as_json:
        typer.echo(json.dumps({"bundle": str(bundle_dir), "ok": True, "checks": checks}, indent=2))
    else:
        for c in checks:
            typer.echo(f"ok  {c}")
        typer.echo(f"{bundle_dir}: valid")


def _check_preprocessing(b: Bundle, eng: Engine) -> np.ndarray:
    """The manifest's preprocessing applied to a synthetic source frame: the model's input, or BundleError."""
    from .errors import BundleError, InferenceError
    from .preprocess import make_preprocessor
    from .sources.synthetic import SyntheticSource

    frame = SyntheticSource(b.manifest.input, seed=0).read()
    try:
        x = make_preprocessor(b.manifest.input)(frame.data)  # type: ignore[union-attr]
    except (InferenceError, ValueError) as e:
        raise BundleError(f"input.preprocess does not produce the model's input: {e}",
                          "fix the preprocessing spec in the manifest (re-export the bundle)") from None
    if tuple(x.shape) != tuple(eng.input_shape) or x.dtype != eng.input_dtype:
        raise BundleError(f"input.preprocess gives {list(x.shape)} {x.dtype}; the model takes "
                          f"{list(eng.input_shape)} {eng.input_dtype}")
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise BundleError("input.preprocess gives non-finite values (inf/NaN) for a test frame",
                          "check scale, mean and std in the manifest")
    return x


def _parse_thresholds(text: str | None, n: int) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--thresholds {text!r}: give comma-separated numbers, one per early exit") from None
    if not all(math.isfinite(v) for v in vals):  # a NaN threshold silently disables its exit
        raise UsageError(f"--thresholds {text!r}: every threshold must be a finite number")
    if len(vals) == 1 and n > 1:  # one value: the same threshold for every early exit (documented in --help)
        vals = vals * n
    if len(vals) != n:
        raise UsageError(f"--thresholds has {len(vals)} values; this bundle has {n} early exits")
    return vals


def _check_finite(no_nan: dict[str, float | None], finite: dict[str, float | None]) -> None:
    """NaN is never a valid option value (every comparison with it is false); some options also need a
    finite one (an infinite rotation size or idle measurement)."""
    for name, v in {**no_nan, **finite}.items():
        if v is not None and (math.isnan(v) or (name in finite and math.isinf(v))):
            raise UsageError(f"{name} {v}: give a finite number")


@app.command()
@handle_errors
def run(
    source: Annotated[str, typer.Option("--source", "-s", help="synthetic | images:DIR_OR_GLOB | video:FILE | sample | "
                                        "camera[:N|:/dev/videoN] | csi[:N] | gst:PIPELINE | rtsp://URL | "
                                        "mic[:DEVICE] | wav:FILE | - (raw PCM on stdin)")] = "",
    model: ModelOpt = None,
    budget: Annotated[str | None, typer.Option(
        help="Budget: latency per inference (20ms, 500us, 0.1s), energy above idle per inference (50mJ) or "
             "average power, idle included (2.5W).")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", "-n", min=1, help="Stop after N frames.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.0, help="Stop after S seconds.")] = None,
    log: Annotated[Path | None, typer.Option("--log", help="Append one JSON line per inference to FILE.jsonl.")] = None,
    log_max_mb: Annotated[float, typer.Option(min=0.0, help="Rotate the log at this size (0: never).")] = 0.0,
    log_keep: Annotated[int, typer.Option(min=1, help="Rotated log files to keep.")] = 5,
    mode: Annotated[str, typer.Option(help="adaptive | full (never exit early) | exit-at")] = "adaptive",
    exit_at: Annotated[int | None, typer.Option("--exit-at", help="With --mode exit-at: the exit to use.")] = None,
    thresholds: Annotated[str | None, typer.Option(help="Comma-separated thresholds, one per early exit (one "
                                                   "value: the same for every early exit).")] = None,
    rule: Annotated[str | None, typer.Option(help="Exit rule: max_softmax | entropy | confidence.")] = None,
    providers: Annotated[str | None, typer.Option(help="onnxruntime providers, e.g. cpu or cuda,cpu.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="intra-op threads per session.")] = 1,
    fps: Annotated[float | None, typer.Option(min=0.01, help="Pace the loop to at most N frames per second.")] = None,
    loop: Annotated[bool, typer.Option(help="Loop images/video sources forever.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Images: stop at the first unreadable image (default: "
                                         "skip it, warn and count it as a dropped frame).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live status line.")] = False,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file "
                                                                   "(-: stdout, as --json).")] = None,
    hop: Annotated[str, typer.Option(help="Audio: hop between 1 s windows (250ms, 0.5s).")] = "250ms",
    audio_rate: Annotated[int | None, typer.Option("--audio-rate", min=1000, help="Audio: sample rate of mic / "
                                                   "stdin input (default: the model's); resampled.")] = None,
    reconnect_timeout: Annotated[float, typer.Option("--reconnect-timeout", min=0.0, help="Cameras: keep "
                                                     "reconnecting for S seconds without frames before giving "
                                                     "up.")] = 30.0,
    kws_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keyword spotting: smoothed posterior "
                                                 "needed for a detection.")] = 0.7,
    kws_average: Annotated[str, typer.Option(help="Keyword spotting: average posteriors over this much "
                                             "audio (750ms).")] = "750ms",
    kws_suppress: Annotated[str, typer.Option(help="Keyword spotting: no new detection for this long after "
                                              "one (1s).")] = "1s",
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", is_eager=True, callback=config_option_callback,
        help="TOML file of run options (keys = option names); command-line options override it; "
             "SIGHUP reloads it.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Serve Prometheus metrics on this port (0: any free port).")] = None,
    metrics_addr: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
    mqtt: Annotated[str | None, typer.Option(
        "--mqtt", help="Publish answers, keyword events and status to an MQTT broker, with Home Assistant "
                       "discovery: mqtt://HOST:PORT/TOPIC (mqtts:// for TLS, USER:PASS@HOST, options "
                       "?status=10&queue=1000&qos=0&rate=0&discovery=homeassistant|off; needs the mqtt extra).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout (human "
                                                         "text goes to stderr).")] = False,
    controller: Annotated[bool, typer.Option("--controller/--no-controller",
                                             help="With --budget: move the thresholds along the accuracy/cost "
                                                  "frontier to track the budget (latency: the deadline guard "
                                                  "alone with --no-controller).")] = True,
    power_source: Annotated[str, typer.Option(
        "--power-source", help="Energy per inference and per stage, power source and rail in every telemetry "
                               "line: auto (default: the first readable sensor; without one, an ESTIMATE from "
                               "CPU utilisation, labelled estimated wherever it shows), jetson[:RAIL], "
                               "tegrastats, pi5, hwmon[:NAME], rapl, estimate[:PRESET|idle=W,core=W], or none "
                               "(no energy measurement).")] = "auto",
    power_baseline: Annotated[float | None, typer.Option(
        min=0.0, help="Seconds of idle power measured at start (subtracted: energy is reported above idle). "
                      "Default: the idle baseline of a matching device profile made with the same power source, "
                      "else 1 s.")] = None,
    profile: Annotated[Path | None, typer.Option(
        "--profile", help="Device profile from `edge-ee profile` (default: a matching one beside the bundle or "
                          "in ~/.local/state/edge-ee/profiles).")] = None,
    audit: Annotated[str | None, typer.Option(
        help="Audit this share of the frames answered early (2% or 0.02): also run the whole model on them, "
             "estimate the agreement with the final exit (telemetry, summary, metrics; the work counts in the "
             "reported cost) and raise a drift alarm when the disagreement exceeds the target.")] = None,
    audit_target: Annotated[str | None, typer.Option(
        "--audit-target", help="With --audit: largest acceptable disagreement with the final exit (1% or 0.01; "
                               "default: the device profile's or the bundle's target drop).")] = None,
    recalibrate: Annotated[bool, typer.Option(
        help="With --audit: on a drift alarm, re-select the thresholds without labels on the audited frames "
             "and move to the safe point (logged).")] = False,
) -> None:
    """Run the model on a stream, exiting early when confident, and print a summary."""
    from .runner import RunConfig, Runner
    from .sources import open_source
    from .stats import format_summary
    from .telemetry import TelemetryWriter

    if not source:
        raise UsageError("no --source given", "e.g. --source synthetic, --source images:DIR, --source video:FILE")
    _check_finite({"--duration": duration, "--fps": fps, "--reconnect-timeout": reconnect_timeout,
                   "--kws-threshold": kws_threshold},
                  {"--log-max-mb": log_max_mb, "--power-baseline": power_baseline})
    modes = {"adaptive": "adaptive", "full": "full", "exit-at": "exit_at", "exit_at": "exit_at"}
    if mode not in modes:
        raise UsageError(f"--mode {mode!r}: use adaptive, full or exit-at")
    if modes[mode] == "exit_at" and exit_at is None:
        raise UsageError("--mode exit-at needs --exit-at K")
    b = parse_budget(budget)
    audit_fraction = _check_audit(audit, audit_target, recalibrate, modes[mode], b, controller)
    from .service.mqtt import parse_mqtt_url

    mqtt_target = parse_mqtt_url(mqtt) if mqtt is not None else None
    if summary_json is not None and str(summary_json) == "-":  # the usual "-" = stdout
        as_json, summary_json = True, None
    out = functools.partial(typer.echo, err=as_json)  # human-readable results: stderr when stdout is JSON
    from .sources import source_task
    from .streams import check_source_fits, format_stream_summary, parse_seconds, stream_hooks

    stream_opts = {"loop": loop, "strict": strict, "hop_s": parse_seconds(hop, "--hop"), "audio_rate": audio_rate,
                   "reconnect_timeout_s": reconnect_timeout, "kws_threshold": kws_threshold,
                   "kws_average_s": parse_seconds(kws_average, "--kws-average"),
                   "kws_suppress_s": parse_seconds(kws_suppress, "--kws-suppress")}
    if as_json:
        stream_opts["echo"] = lambda line: typer.echo(line, err=True)  # keyword events
    bundle = load_bundle(model, task=source_task(source))
    engine = Engine(bundle, session=_session_config(providers, threads), rule=rule)
    th = _parse_thresholds(thresholds, engine.num_stages - 1)
    if th is not None:
        engine.set_thresholds(th)
    if modes[mode] == "exit_at" and not 0 <= exit_at < engine.num_stages:  # type: ignore[operator]
        raise UsageError(f"--exit-at {exit_at}: this bundle has exits 0..{engine.num_stages - 1}")
    from .control.setup import format_extras, make_run_hooks
    from .service.attach import attach_service_hooks

    with contextlib.ExitStack() as cleanup:  # closes whatever was opened, in reverse order, on any exit
        src = open_source(source, bundle.manifest, stream_opts)
        cleanup.callback(src.close)
        check_source_fits(src, bundle.manifest)
        telemetry = TelemetryWriter(log, max_bytes=int(log_max_mb * 1e6), keep=log_keep) if log else None
        if telemetry is not None:
            cleanup.callback(telemetry.close)
        cfg = RunConfig(budget=b, max_frames=max_frames, duration_s=duration, mode=modes[mode],  # type: ignore[arg-type]
                        exit_at=exit_at, fps=fps, status=not quiet,
                        status_interval_s=0.5 if sys.stderr.isatty() else 10.0)
        hooks, _prof = make_run_hooks(bundle, engine, b, mode=modes[mode], controller=controller,
                                      power_source=power_source, power_baseline_s=power_baseline,
                                      profile_path=profile, thresholds_given=th is not None, fps=fps,
                                      echo=lambda m: typer.echo(m, err=True))
        if audit_fraction is not None:
            hooks.insert(0, _audit_hook(bundle, _prof, audit_fraction, audit_target, recalibrate))
        runner = Runner(engine, src, cfg, telemetry=telemetry, hooks=hooks)
        runner.hooks.extend(stream_hooks(src, bundle.manifest, stream_opts))
        svc = attach_service_hooks(runner, bundle, config=config, metrics_port=metrics_port,
                                   metrics_addr=metrics_addr, mqtt=mqtt_target)
        cleanup.callback(svc.close)
        if svc.metrics_url:
            typer.echo(f"edge-ee: metrics at {svc.metrics_url}", err=True)
        if svc.mqtt_url:
            typer.echo(f"edge-ee: mqtt to {svc.mqtt_url}", err=True)

        def _on_signal(signum: int, _frame: Any) -> None:
            runner.stop(signal.Signals(signum).name)

        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, svc.request_reload)  # reload between frames
        cleanup.callback(lambda: [signal.signal(s, h) for s, h in old.items()])
        typer.echo(f"edge-ee: running {bundle.manifest.name} on {src.description}"
                   + (f", budget {b.text}" if b else ""), err=True)
        try:
            summary = runner.run()
        except EdgeEEError:
            typer.echo("edge-ee: stopped by an error; work done so far:\n" + format_summary(runner.stats.summary()),
                       err=True)
            raise
    from .calibration.audit import format_audit
    from .service.mqtt import format_mqtt_summary

    out(format_summary(summary))
    for extra in (format_extras(summary), format_stream_summary(summary), format_mqtt_summary(summary),
                  format_audit(summary)):
        if extra:
            out(extra)
    if as_json:
        typer.echo(json.dumps(_nan_to_none(summary), default=float))
    if summary_json is not None:
        try:
            summary_json.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        except OSError as e:
            from .errors import OutputError

            raise OutputError(f"cannot write {summary_json}: {e.strerror}") from e


def _check_audit(audit: str | None, target: str | None, recalibrate: bool, mode: str, budget: Any,
                 controller: bool) -> float | None:
    """The audited share of early answers (None: no audit), after checking the audit options together."""
    if audit is None:
        for given, opt in ((target is not None, "--audit-target"), (recalibrate, "--recalibrate")):
            if given:
                raise UsageError(f"{opt} needs --audit", "e.g. --audit 2%")
        return None
    from .calibration.audit import parse_audit_fraction

    fraction = parse_audit_fraction(audit)
    if target is not None:
        parse_fraction("--audit-target", target)
    if mode == "full":
        raise UsageError("--audit with --mode full: every frame already runs the whole model, there is nothing "
                         "to audit", "leave out --audit, or use --mode adaptive")
    if recalibrate and mode != "adaptive":
        raise UsageError(f"--recalibrate with --mode {mode.replace('_', '-')}: thresholds only matter in adaptive mode",
                         "use --mode adaptive, or leave out --recalibrate")
    if recalibrate and budget is not None and controller:
        raise UsageError("--recalibrate with --budget: the budget controller sets the thresholds",
                         "use --no-controller (the deadline guard alone), or leave out --recalibrate")
    return fraction


def _audit_hook(bundle: Any, profile: dict[str, Any] | None, fraction: float, target: str | None,
                recalibrate: bool) -> Any:
    from .calibration.audit import AuditHook, AuditSettings, default_target

    if target is not None:
        t, where = parse_fraction("--audit-target", target), "--audit-target"
    else:
        t, where = default_target(bundle.manifest, profile)
    typer.echo(f"edge-ee: auditing {100 * fraction:.3g}% of the frames answered early; drift alarm above "
               f"{100 * t:.3g}% disagreement with the final exit ({where})"
               + (", recalibrating on an alarm" if recalibrate else ""), err=True)
    return AuditHook(AuditSettings(fraction=fraction, target=t, target_source=where, recalibrate=recalibrate))


@app.command()
@handle_errors
def profile(
    source: Annotated[str, typer.Option("--source", "-s", help="Calibration data: sample, images:DIR, "
                                        "synthetic, video:FILE ... (any run source).")] = "",
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
    power_source: Annotated[str, typer.Option("--power-source", help="auto (default: the first readable sensor, "
                                              "else the CPU-utilisation estimate), jetson[:RAIL], tegrastats, "
                                              "pi5, hwmon[:NAME], rapl, estimate[:PRESET] ...")] = "auto",
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
    from .profile import default_out, format_profile, plot_profile, run_profile, write_profile
    from .sources import open_source
    from .sources.labelled import LabelFile, LabelledSource, peek, read_label_file

    if not source:
        raise UsageError("no --source given", "e.g. --source sample (labelled), --source images:DIR")
    drop = parse_fraction("--target-drop", target_drop)
    conf = None if confidence.strip().lower() == "none" else parse_fraction("--confidence", confidence)
    if plot is not None and no_plot:
        raise UsageError("--plot and --no-plot contradict each other", "give one of them")
    want_plot = not no_plot
    if want_plot and not _have_matplotlib():
        if plot is not None:
            raise UsageError("--plot needs matplotlib", "pip install matplotlib (or 'edge-ee[plot]'), or leave out "
                                                        "--plot")
        typer.echo("edge-ee: plot skipped: matplotlib not installed (pip install matplotlib)", err=True)
        want_plot = False
    bundle = load_bundle(model)
    label_file: LabelFile | None = None
    label_mode = labels
    if labels not in ("auto", "source", "none"):
        label_file = read_label_file(Path(labels), bundle.manifest.labels)  # every line checked up front
        label_mode = "source"
        if len(label_file) <= warmup:
            raise UsageError(f"--labels {labels}: {len(label_file)} labels, but the first {warmup} inputs are "
                             "warm-up (discarded)", "label more frames, or lower --warmup")
        if len(label_file) < warmup + frames:
            typer.echo(f"edge-ee: note: {labels} has {len(label_file)} labels: profiling stops there "
                       f"({warmup} warm-up + {len(label_file) - warmup} measured inputs instead of "
                       f"{warmup} + {frames})", err=True)
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
    png: Path | None = None
    if want_plot:
        png = plot_profile(prof, plot if plot is not None else path.with_suffix(".png"))
    if as_json:
        typer.echo(json.dumps(prof, indent=2))
    else:
        typer.echo(format_profile(prof))
        typer.echo(f"profile: {path}" + (f"\nplot: {png}" if png else ""))


def _nan_to_none(obj: Any) -> Any:
    """NaN/inf are not JSON: null instead (``--json`` output must parse everywhere)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@app.command()
@handle_errors
def doctor(as_json: JsonOpt = False) -> None:
    """This device: board, CPU, power sensors (rail, units, readable or why not), cameras, audio, onnxruntime."""
    from .device import doctor_report, format_doctor

    r = doctor_report()
    typer.echo(json.dumps(r, indent=2, default=str) if as_json else format_doctor(r))


def _add_service_commands() -> None:
    from .service.install import service_app

    app.add_typer(service_app, name="service")


_add_service_commands()


def _stdout_closed() -> None:
    """The reader of stdout went away: point stdout at /dev/null so the interpreter's final flush does not
    fail again (and print a BrokenPipeError) on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


def main() -> None:
    try:
        app()
    except EdgeEEError as e:  # errors raised outside a command body
        typer.echo(f"edge-ee: {e.kind}: {e}", err=True)
        sys.exit(int(e.exit_code))
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_closed()


__all__ = ["app", "main", "ExitCode"]
