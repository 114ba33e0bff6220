"""Wire the service hooks into a :class:`~edge_ee.pipeline.runner.Runner` for ``edge-ee run``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.bundle import Bundle
from ..pipeline.runner import RunHook, Runner
from . import _click as click
from .config import command_line_keys, run_params
from .mqtt import MqttTarget
from .reload import ReloadHook
from .sdnotify import Notifier, watchdog_usec


@dataclass
class ServiceHooks:
    reload: ReloadHook
    hooks: list[RunHook] = field(default_factory=list)
    metrics_url: str | None = None
    mqtt_url: str | None = None

    def request_reload(self, *_: Any) -> None:
        """SIGHUP handler: only sets a flag; the loop applies it before the next frame."""
        self.reload.request()

    def close(self) -> None:
        for h in self.hooks:
            close = getattr(h, "close", None)
            if close is not None:
                close()


def attach_service_hooks(runner: Runner, bundle: Bundle, config: Path | None = None,
                         metrics_port: int | None = None, metrics_addr: str = "127.0.0.1",
                         environ: dict[str, str] | None = None, mqtt: MqttTarget | None = None,
                         command: Any = None) -> ServiceHooks:
    """Add reload (always), systemd notification (when ``$NOTIFY_SOCKET`` is set), metrics (when a
    port is given) and MQTT (when a target is given) to ``runner``. Called inside the ``run`` command, so
    the click context tells which options came from the command line (they keep overriding the file on
    reload). Outside a click context, ``command`` (the click command of ``edge-ee run``,
    :func:`edge_ee.commands.run_command`) is needed for reload, and every setting counts as given."""
    env = os.environ if environ is None else environ
    ctx = click.current_context()
    if ctx is not None:
        command = ctx.command
        settings = {k: v for k, v in ctx.params.items() if k in run_params(command)}
        cli_keys = command_line_keys(ctx)
    elif command is not None:  # used programmatically: everything counts as given
        settings, cli_keys = {}, set()
    else:
        raise TypeError("attach_service_hooks outside the edge-ee command line needs command=run_command()")
    notifier = Notifier(env.get("NOTIFY_SOCKET", ""))
    reload = ReloadHook(command, config, settings, cli_keys, notifier if notifier.enabled else None)
    svc = ServiceHooks(reload=reload, hooks=[reload])
    runner.hooks.append(reload)  # its phase (settings) runs it first
    if notifier.enabled:
        from .watchdog import SystemdHook

        pacing = 1.0 / runner.config.fps if runner.config.fps else 0.0
        sd = SystemdHook(notifier, watchdog_usec(env), pacing_s=pacing)
        runner.hooks.append(sd)
        svc.hooks.append(sd)
    if metrics_port is not None:
        from .metrics import MetricsHook

        m = bundle.manifest
        mh = MetricsHook(metrics_port, metrics_addr, num_exits=m.num_exits,
                         bundle_info={"name": m.name, "task": m.task, "sha256": bundle.content_hash()[:16]})
        runner.hooks.append(mh)
        svc.hooks.append(mh)
        svc.metrics_url = mh.url
    if mqtt is not None:
        from .mqtt import MqttHook

        m = bundle.manifest
        mq = MqttHook(mqtt, bundle_info={"name": m.name, "task": m.task, "sha256": bundle.content_hash()[:16]},
                      labels=list(m.labels))
        runner.hooks.append(mq)
        svc.hooks.append(mq)
        svc.mqtt_url = mqtt.url
    return svc
