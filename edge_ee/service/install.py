"""``edge-ee service install`` / ``edge-ee service config``: the systemd unit and the default config.

The unit text is generated here (``render_unit``) so an installed ``edge-ee`` can write it without the
repository; ``systemd/edge-ee.service`` in the repository is this text with ``/usr/local/bin/edge-ee``.
"""

from __future__ import annotations

import grp
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import OutputError, UsageError

UNIT_NAME = "edge-ee.service"
CONFIG_PATH = "/etc/edge-ee/edge-ee.toml"
DEFAULT_EXEC = "/usr/local/bin/edge-ee"
GROUPS = ("video", "audio", "render")
# Jetson GPU / video-converter / DLA nodes (absent elsewhere: systemd then logs a harmless notice)
JETSON_NODES = ("/dev/nvmap", "/dev/nvhost-ctrl", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-gpu", "/dev/nvhost-as-gpu",
                "/dev/nvhost-prof-gpu", "/dev/nvhost-dbg-gpu", "/dev/nvhost-tsg-gpu", "/dev/nvhost-vic",
                "/dev/nvhost-nvdec", "/dev/nvhost-msenc", "/dev/nvhost-nvdla0", "/dev/nvhost-nvdla1",
                "/dev/nvhost-ctxsw-gpu", "/dev/nvhost-sched-gpu")

UNIT_TEMPLATE = """\
# edge-ee: early-exit inference as a systemd service.
# Installed by `edge-ee service install` (see systemd/README.md in the edge-ee sources);
# settings live in {config}; `systemctl reload edge-ee` (SIGHUP) re-reads it.
[Unit]
Description=edge-ee early-exit inference
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} run --config {config}
ExecReload=/bin/kill -HUP $MAINPID
# the loop pings the watchdog only while frames flow: a hung camera or inference gets restarted
WatchdogSec=30
TimeoutStartSec=120
TimeoutStopSec=20
Restart=on-failure
RestartSec=5
EnvironmentFile=-/etc/default/edge-ee
Environment=PYTHONUNBUFFERED=1

{user}SupplementaryGroups={groups}
StateDirectory=edge-ee
WorkingDirectory=%S/edge-ee

# Hardening that still lets the service open cameras, microphones and the Jetson GPU.
# Not PrivateDevices=yes: it would hide /dev/video*, /dev/snd and /dev/nv*.
ProtectSystem=strict
ProtectHome=yes
# Jetson CSI cameras (nvarguscamerasrc) talk to nvargus-daemon through /tmp/argus_socket:
# set PrivateTmp=no for them.
PrivateTmp=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-alsa rw
# Raspberry Pi: vcgencmd (PMIC power readings) uses /dev/vcio
DeviceAllow=/dev/vcio rw
{jetson}
[Install]
WantedBy=multi-user.target
"""


def default_exec() -> str:
    """The ``edge-ee`` next to the running interpreter (a venv's bin/), else ``python -m edge_ee``."""
    here = Path(sys.executable).parent / "edge-ee"
    if here.is_file():
        return str(here)
    return f"{sys.executable} -m edge_ee"


def render_unit(exec_start: str = DEFAULT_EXEC, user: str | None = None, groups: tuple[str, ...] = GROUPS,
                config: str = CONFIG_PATH) -> str:
    who = f"User={user}\n" if user else "DynamicUser=yes\n"
    jetson = "# NVIDIA Jetson (CUDA / TensorRT, nvvidconv, DLA)\n" + "".join(
        f"DeviceAllow={n} rw\n" for n in JETSON_NODES)
    return UNIT_TEMPLATE.format(exec_start=exec_start, config=config, user=who, groups=" ".join(groups),
                                jetson=jetson)


def _existing_groups(groups: tuple[str, ...]) -> tuple[list[str], list[str]]:
    have, missing = [], []
    for g in groups:
        try:
            grp.getgrnam(g)
            have.append(g)
        except KeyError:
            missing.append(g)
    return have, missing


service_app = typer.Typer(help="Run edge-ee as a systemd service: install the unit and a default config.",
                          no_args_is_help=True)


@service_app.command("config")
def config_cmd() -> None:
    """Print the default service config (every `run` option is a key; see the generated reference)."""
    from .config import default_config_text

    typer.echo(default_config_text(), nl=False)


@service_app.command("install")
def install(
    prefix: Annotated[Path, typer.Option(help="Install under this root (stage a device image, or test).")] = Path("/"),
    user: Annotated[str | None, typer.Option(
        help="Run as this existing user instead of a DynamicUser (needs access to the model files).")] = None,
    exec_path: Annotated[str | None, typer.Option(
        "--exec", help="edge-ee executable for ExecStart (default: the one next to this Python).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be written; write nothing.")] = False,
) -> None:
    """Write /etc/systemd/system/edge-ee.service and /etc/edge-ee/edge-ee.toml (an existing config is kept),
    then print the systemctl commands to enable it."""
    from .config import default_config_text

    exe = exec_path or default_exec()
    if not exe.split()[0].startswith("/"):
        raise UsageError(f"--exec {exe!r}: systemd needs an absolute path", "e.g. --exec /opt/edge-ee/bin/edge-ee")
    groups: tuple[str, ...] = GROUPS
    notes: list[str] = []
    if prefix == Path("/"):
        have, missing = _existing_groups(GROUPS)
        if missing:
            groups = tuple(have)
            notes.append(f"group(s) {', '.join(missing)} do not exist here: left out of SupplementaryGroups "
                         "(systemd refuses to start with unknown groups)")
    if exe.startswith(("/home/", "/root/")) and not user:
        notes.append(f"{exe} is under /home or /root, which ProtectHome=yes hides from the service: install "
                     "edge-ee in /opt (python3 -m venv /opt/edge-ee && /opt/edge-ee/bin/pip install "
                     "'edge-ee[metrics]') and pass --exec /opt/edge-ee/bin/edge-ee")
    unit = render_unit(exe, user=user, groups=groups)
    unit_path = prefix / "etc/systemd/system" / UNIT_NAME
    cfg_path = prefix / CONFIG_PATH.lstrip("/")
    cfg_text = default_config_text()
    keep_cfg = cfg_path.exists()
    if dry_run:
        typer.echo(f"# would write {unit_path}:\n{unit}")
        if keep_cfg:
            typer.echo(f"# {cfg_path} exists: would keep it unchanged\n")
        else:
            typer.echo(f"# would write {cfg_path}:\n{cfg_text}")
    else:
        try:
            unit_path.parent.mkdir(parents=True, exist_ok=True)
            unit_path.write_text(unit)
            typer.echo(f"wrote {unit_path}")
            if keep_cfg:
                typer.echo(f"kept existing {cfg_path}")
            else:
                cfg_path.parent.mkdir(parents=True, exist_ok=True)
                cfg_path.write_text(cfg_text)
                typer.echo(f"wrote {cfg_path}")
        except OSError as e:
            raise OutputError(f"cannot write {e.filename}: {e.strerror}",
                              "run with sudo, or --prefix DIR to stage the files elsewhere") from None
    for n in notes:
        typer.echo(f"note: {n}", err=True)
    typer.echo("\nnext:\n"
               f"  edit {CONFIG_PATH} (source, model, budget)\n"
               "  sudo systemctl daemon-reload\n"
               "  sudo systemctl enable --now edge-ee\n"
               "  systemctl status edge-ee          # STATUS= line: frames, exits, latency\n"
               "  journalctl -u edge-ee -f\n"
               "  sudo systemctl reload edge-ee     # after editing the config (SIGHUP)")
