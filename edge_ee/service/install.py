"""``edge-ee service install`` / ``edge-ee service config``: the systemd unit and the default config.

The unit text is generated here (``render_unit``) so an installed ``edge-ee`` can write it without the
repository; ``systemd/edge-ee.service`` in the repository is this text with ``/usr/local/bin/edge-ee``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import OutputError, UsageError
from . import _click as click

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
# usage, bundle and config errors (exit 2, 3, 8) need an edit, not a restart loop
RestartPreventExitStatus=2 3 8
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
PrivateMounts=yes
# /proc: other processes hidden; not ProcSubset=pid, the CPU-utilisation power estimate reads /proc/stat
ProtectProc=invisible
UMask=0027
# sd_notify (AF_UNIX), metrics/RTSP/MQTT (AF_INET*), address lookups (AF_NETLINK)
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# a filtered call fails with EPERM (onnxruntime copes) instead of killing the process
SystemCallErrorNumber=EPERM
# onnxruntime's CPU kernels are precompiled (no JIT). A Jetson CUDA/TensorRT provider that fails to
# start under it needs MemoryDenyWriteExecute=no in a drop-in (systemctl edit edge-ee).
MemoryDenyWriteExecute=yes
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


UNIT_MODE = 0o644  # systemd reads units as root; world-readable like every unit
CONFIG_MODE = 0o644  # DynamicUser=yes has no fixed uid/gid to grant: the file must be world-readable
USER_CONFIG_MODE = 0o640  # --user NAME: root-owned, readable by NAME's group only
# systemd's own rule for user names; anything else could inject directives into the unit
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,30}$")
# characters allowed in --exec: a path and plain arguments (no newline, quotes, $ or % specifiers)
_EXEC_RE = re.compile(r"^[A-Za-z0-9 _./+@:=,-]+$")


def _host_groups(prefix: Path) -> set[str] | None:
    """Group names on the target: this machine for prefix /, else the staged image's etc/group (None
    when it has none: the groups cannot be checked)."""
    if prefix == Path("/"):
        return {g.gr_name for g in grp.getgrall()}
    f = prefix / "etc/group"
    try:
        return {line.split(":", 1)[0] for line in f.read_text().splitlines() if line and not line.startswith("#")}
    except OSError:
        return None


def _existing_groups(groups: tuple[str, ...], prefix: Path = Path("/")) -> tuple[list[str], list[str]]:
    known = _host_groups(prefix)
    if known is None:
        return list(groups), []
    return [g for g in groups if g in known], [g for g in groups if g not in known]


def check_install_args(user: str | None, exe: str) -> None:
    """Refuse values that would break or widen the unit (UsageError, exit 2)."""
    if user is not None:
        if not _USER_RE.match(user):
            raise UsageError(f"--user {user!r} is not a valid user name",
                             "letters, digits, _ and -, at most 31 characters, not starting with a digit or -")
        uid = None
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(user).pw_uid
        if user == "root" or uid == 0:
            raise UsageError(f"--user {user}: the service must not run as root (uid 0)",
                             "leave out --user (a DynamicUser with only the camera/audio/GPU groups), or "
                             "name an unprivileged account")
    if not _EXEC_RE.match(exe):
        raise UsageError(f"--exec {exe!r}: only a path and plain arguments are allowed in ExecStart "
                         "(letters, digits, space and _ . / + @ : = , -)",
                         "install edge-ee under a plain path, e.g. /opt/edge-ee/bin/edge-ee")
    if not exe.split()[0].startswith("/"):
        raise UsageError(f"--exec {exe!r}: systemd needs an absolute path", "e.g. --exec /opt/edge-ee/bin/edge-ee")


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` with exactly ``mode`` (not subject to the umask), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _run_command() -> Any:
    """The click command of ``edge-ee run``, a sibling of this command group under the ``edge-ee`` root."""
    root = click.current_context().find_root()  # type: ignore[union-attr]
    return root.command.commands["run"]


service_app = typer.Typer(help="Run edge-ee as a systemd service: install the unit and a default config.",
                          no_args_is_help=True)


@service_app.command("config")
def config_cmd() -> None:
    """Print the default service config (every `run` option is a key; see the generated reference)."""
    from .config import default_config_text

    typer.echo(default_config_text(_run_command()), nl=False)


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
    check_install_args(user, exe)
    groups: tuple[str, ...] = GROUPS
    notes: list[str] = []
    have, missing = _existing_groups(GROUPS, prefix)
    if missing:
        groups = tuple(have)
        where = "here" if prefix == Path("/") else f"in {prefix / 'etc/group'}"
        notes.append(f"group(s) {', '.join(missing)} do not exist {where}: left out of SupplementaryGroups "
                     "(systemd refuses to start with unknown groups)")
    elif prefix != Path("/") and _host_groups(prefix) is None:
        notes.append(f"{prefix / 'etc/group'} not found: SupplementaryGroups={' '.join(GROUPS)} is written "
                     "unchecked; every group must exist on the device or the service will not start")
    if exe.startswith(("/home/", "/root/")) and not user:
        notes.append(f"{exe} is under /home or /root, which ProtectHome=yes hides from the service: install "
                     "edge-ee in /opt (python3 -m venv /opt/edge-ee && /opt/edge-ee/bin/pip install "
                     "'edge-ee[metrics]') and pass --exec /opt/edge-ee/bin/edge-ee")
    unit = render_unit(exe, user=user, groups=groups)
    unit_path = prefix / "etc/systemd/system" / UNIT_NAME
    cfg_path = prefix / CONFIG_PATH.lstrip("/")
    cfg_text = default_config_text(_run_command())
    keep_cfg = cfg_path.exists()
    cfg_mode = USER_CONFIG_MODE if user else CONFIG_MODE
    if dry_run:
        typer.echo(f"# would write {unit_path} (mode {UNIT_MODE:o}):\n{unit}")
        if keep_cfg:
            typer.echo(f"# {cfg_path} exists: would keep it unchanged\n")
        else:
            typer.echo(f"# would write {cfg_path} (mode {cfg_mode:o}):\n{cfg_text}")
    else:
        try:
            unit_path.parent.mkdir(parents=True, exist_ok=True)
            _write(unit_path, unit, UNIT_MODE)
            typer.echo(f"wrote {unit_path} (mode {UNIT_MODE:o})")
            if keep_cfg:
                typer.echo(f"kept existing {cfg_path}")
            else:
                cfg_path.parent.mkdir(parents=True, exist_ok=True)
                _write(cfg_path, cfg_text, cfg_mode)
                if user and prefix == Path("/") and os.geteuid() == 0:
                    with contextlib.suppress(KeyError):  # root:USER's group, so only that account reads it
                        os.chown(cfg_path, 0, pwd.getpwnam(user).pw_gid)
                typer.echo(f"wrote {cfg_path} (mode {cfg_mode:o}"
                           + (f", group of {user}" if user else ", readable by the dynamic service user") + ")")
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
