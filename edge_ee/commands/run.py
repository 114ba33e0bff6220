"""``edge-ee run``: the model on a stream, with budget, hooks and services."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.bundle import load_bundle
from ..core.engine import Engine
from ..errors import EdgeEEError, UsageError
from ..power.discovery import power_source_help
from ..service.config import config_option_callback
from ..sources import sources_help
from .app import ModelOpt, _check_finite, _nan_to_none, _session_config, handle_errors

if TYPE_CHECKING:
    from ..control.settings import RunSettings


@handle_errors
def run(
    source: Annotated[str, typer.Option("--source", "-s", help=sources_help())] = "",
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
                               "line; auto (the default) takes the first readable sensor, without one an ESTIMATE "
                               "from CPU utilisation, labelled estimated wherever it shows: "
                               + power_source_help())] = "auto",
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
    from ..control.settings import RunSettings
    from ..pipeline.streams import parse_seconds

    if not source:
        raise UsageError("no --source given", "e.g. --source synthetic, --source images:DIR, --source video:FILE")
    _check_finite({"--duration": duration, "--fps": fps, "--reconnect-timeout": reconnect_timeout,
                   "--kws-threshold": kws_threshold},
                  {"--log-max-mb": log_max_mb, "--power-baseline": power_baseline})
    settings = RunSettings.from_options({
        "budget": budget, "mode": mode, "exit_at": exit_at, "thresholds": thresholds, "rule": rule,
        "controller": controller, "power_source": power_source, "power_baseline": power_baseline,
        "profile": profile, "fps": fps, "max_frames": max_frames, "duration": duration, "quiet": quiet,
        "audit": audit, "audit_target": audit_target, "recalibrate": recalibrate})
    from ..service.mqtt import parse_mqtt_url

    mqtt_target = parse_mqtt_url(mqtt) if mqtt is not None else None
    if summary_json is not None and str(summary_json) == "-":  # the usual "-" = stdout
        as_json, summary_json = True, None
    stream_opts = {"loop": loop, "strict": strict, "hop_s": parse_seconds(hop, "--hop"), "audio_rate": audio_rate,
                   "reconnect_timeout_s": reconnect_timeout, "kws_threshold": kws_threshold,
                   "kws_average_s": parse_seconds(kws_average, "--kws-average"),
                   "kws_suppress_s": parse_seconds(kws_suppress, "--kws-suppress")}
    if as_json:
        stream_opts["echo"] = lambda line: typer.echo(line, err=True)  # keyword events
    summary = _run(settings, source=source, model=model, session=_session_config(providers, threads),
                   stream_opts=stream_opts, log=log, log_max_mb=log_max_mb, log_keep=log_keep,
                   service={"config": config, "metrics_port": metrics_port, "metrics_addr": metrics_addr,
                            "mqtt": mqtt_target})
    _report(summary, as_json, summary_json)


def _run(settings: RunSettings, *, source: str, model: Path | None, session: Any, stream_opts: dict[str, Any],
         log: Path | None, log_max_mb: float, log_keep: int, service: dict[str, Any]) -> dict[str, Any]:
    """Load, open, wire the hooks and run; every resource opened is closed on the way out."""
    from ..control.setup import make_run_hooks
    from ..pipeline.runner import Runner
    from ..pipeline.stats import format_summary
    from ..pipeline.streams import check_source_fits, stream_hooks
    from ..pipeline.telemetry import TelemetryWriter
    from ..service.attach import attach_service_hooks
    from ..sources import open_source, source_task

    bundle = load_bundle(model, task=source_task(source))
    engine = Engine(bundle, session=session, rule=settings.rule)
    settings.check_bundle(engine.num_stages)
    with contextlib.ExitStack() as cleanup:  # closes whatever was opened, in reverse order, on any exit
        src = open_source(source, bundle.manifest, stream_opts)
        cleanup.callback(src.close)
        check_source_fits(src, bundle.manifest)
        telemetry = TelemetryWriter(log, max_bytes=int(log_max_mb * 1e6), keep=log_keep) if log else None
        if telemetry is not None:
            cleanup.callback(telemetry.close)
        echo = functools.partial(typer.echo, err=True)
        hooks, prof = make_run_hooks(bundle, engine, settings, echo=echo)
        if settings.audit is not None:
            hooks.append(_audit_hook(bundle, prof, settings))
        runner = Runner(engine, src, settings.run_config(status_interval_s=0.5 if sys.stderr.isatty() else 10.0),
                        telemetry=telemetry, hooks=hooks)
        runner.hooks.extend(stream_hooks(src, bundle.manifest, stream_opts))
        svc = attach_service_hooks(runner, bundle, **service)
        cleanup.callback(svc.close)
        if svc.metrics_url:
            echo(f"edge-ee: metrics at {svc.metrics_url}")
        if svc.mqtt_url:
            echo(f"edge-ee: mqtt to {svc.mqtt_url}")

        def _on_signal(signum: int, _frame: Any) -> None:
            runner.stop(signal.Signals(signum).name)

        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, svc.request_reload)  # reload between frames
        cleanup.callback(lambda: [signal.signal(s, h) for s, h in old.items()])
        b = settings.budget
        echo(f"edge-ee: running {bundle.manifest.name} on {src.description}" + (f", budget {b.text}" if b else ""))
        try:
            return runner.run()
        except EdgeEEError:
            echo("edge-ee: stopped by an error; work done so far:\n" + format_summary(runner.stats.summary()))
            raise


def _report(summary: dict[str, Any], as_json: bool, summary_json: Path | None) -> None:
    """The summary: human-readable lines (stderr when stdout is JSON), JSON on stdout, JSON file."""
    from ..calibration.audit import format_audit
    from ..control.setup import format_extras
    from ..pipeline.stats import format_summary
    from ..pipeline.streams import format_stream_summary
    from ..service.mqtt import format_mqtt_summary

    out = functools.partial(typer.echo, err=as_json)
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
            from ..errors import OutputError

            raise OutputError(f"cannot write {summary_json}: {e.strerror}") from e


def _audit_hook(bundle: Any, profile: dict[str, Any] | None, settings: RunSettings) -> Any:
    from ..calibration.audit import AuditHook, AuditSettings, default_target

    fraction, recalibrate = settings.audit, settings.recalibrate
    assert fraction is not None
    if settings.audit_target is not None:
        t, where = settings.audit_target, "--audit-target"
    else:
        t, where = default_target(bundle.manifest, profile)
    typer.echo(f"edge-ee: auditing {100 * fraction:.3g}% of the frames answered early; drift alarm above "
               f"{100 * t:.3g}% disagreement with the final exit ({where})"
               + (", recalibrating on an alarm" if recalibrate else ""), err=True)
    return AuditHook(AuditSettings(fraction=fraction, target=t, target_source=where, recalibrate=recalibrate))
