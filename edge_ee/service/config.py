"""The TOML config file for ``edge-ee run --config FILE``.

The accepted keys are *derived from the run command's own parameters*, so every ``run`` option (also
ones added later) is a config key with the same name, type and range checks: ``max_frames = 100`` or
``max-frames = 100`` is ``--max-frames 100``. Values are checked against the option's click type
(bool for flags, int, float, string/path/choice; a list is accepted where the option takes
comma-separated values, e.g. ``thresholds = [0.8, 0.9]``) and then go through the same conversion
as the command line. Precedence: command line > config file > built-in default; this uses click's
``default_map``, so the command body sees ordinary parameter values.

Problems raise :class:`~edge_ee.errors.ConfigError` (exit code 8) naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
import reprlib
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import _click as click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: parameters of ``run`` that cannot appear in a config file
NOT_IN_CONFIG = frozenset({"config"})


def run_params(command: Any) -> dict[str, Any]:
    """name -> click parameter for every option of ``command`` that may appear in a config file."""
    return {p.name: p for p in command.params
            if p.name and p.name not in NOT_IN_CONFIG and getattr(p, "expose_value", True)}


def _type_name(param: Any) -> str:
    """bool / int / float / str: the TOML type an option takes (typer >= 0.2x or classic click types)."""
    td = getattr(param, "type_descriptor", None)
    if td is not None:  # recent typer: the Python annotation, Optional stripped
        ann = td.annotation
        return {bool: "bool", int: "int", float: "float"}.get(ann, "str")
    t = getattr(param, "type", None)
    name = getattr(t, "name", "") or ""
    if getattr(param, "is_flag", False) or name == "boolean":
        return "bool"
    if name in ("integer", "integer range"):
        return "int"
    if name in ("float", "float range"):
        return "float"
    return "str"


def _convert(param: Any, value: Any, ctx: Any) -> Any:
    """The option's own conversion and checks (ranges, choices); raises click.ClickException."""
    if hasattr(param, "get_runtime_param"):  # recent typer
        return param.get_runtime_param().coerce(value, param=param, ctx=ctx)
    return param.type_cast_value(ctx, value)


_TOML_TYPE = {"bool": "true or false", "int": "an integer", "float": "a number (not nan)", "str": "a string"}


def _check_scalar(kind: str, value: Any) -> Any:
    """The value if it has the TOML type the option needs, else raise TypeError."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
    elif isinstance(value, str):
        return value
    elif isinstance(value, list) and value and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool)
            and not (isinstance(v, float) and not math.isfinite(v)) for v in value):
        return ",".join(str(v) for v in value)  # options that take comma-separated values
    raise TypeError(_TOML_TYPE[kind]
                    + (" (or a list of finite values, for comma-separated values)" if kind == "str" else ""))


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _short(value: Any) -> str:
    """repr of a config value for a message: bounded in depth and length (a file may nest 100,000 levels)."""
    return _REPR.repr(value)


def _what(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


#: config files larger than this are refused (a real one is a few KiB); /dev/zero or a log given by mistake
#: must not be read into memory
MAX_CONFIG_BYTES = 1 << 20
#: tables/arrays nested deeper than this are refused before the TOML parser recurses into them
MAX_CONFIG_NESTING = 32


def _read_limited(path: Path) -> bytes:
    """At most MAX_CONFIG_BYTES + 1 bytes of ``path`` (a regular file only: no devices, FIFOs, directories)."""
    import os
    import stat

    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"config file {path} is not a regular file",
                              "give a TOML file with --config, e.g. /etc/edge-ee/edge-ee.toml")
        return f.read(MAX_CONFIG_BYTES + 1)


def _nesting(text: str) -> int:
    """Upper bound of the nesting depth of a TOML text: brackets/braces, plus the dots of a dotted key or
    table header on one line (tomllib's time grows with the square of a dotted key's length). Strings are
    not skipped: that can only over-estimate, and the limit is far above any real run config."""
    depth = best = 0
    for line in text.splitlines():
        head = line.split("=", 1)[0] if "=" in line else (line if line.lstrip().startswith("[") else "")
        best = max(best, depth + head.count("."))
        for c in line:
            if c in "[{":
                depth += 1
                best = max(best, depth)
            elif c in "]}":
                depth = max(0, depth - 1)
    return best


def parse_toml(path: Path) -> dict[str, Any]:
    """The parsed document; every way a file can be unusable is a ConfigError naming it (never a traceback)."""
    fix = "give a TOML file with --config (`edge-ee service config` prints a default one)"
    try:
        raw = _read_limited(path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist",
                          "give an existing file with --config, e.g. /etc/edge-ee/edge-ee.toml "
                          "(`edge-ee service config` prints a default one)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", fix) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}",
                          "check the path and its permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 10} KiB", fix)
    if b"\0" in raw:
        raise ConfigError(f"config file {path} is binary (it contains NUL bytes), not TOML", fix)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}), not TOML", fix) from None
    if _nesting(text) > MAX_CONFIG_NESTING:
        raise ConfigError(f"config file {path} nests arrays or tables deeper than {MAX_CONFIG_NESTING} levels",
                          "a run config is flat: key = value lines") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", "fix the syntax (see https://toml.io)") from None
    except (RecursionError, ValueError, MemoryError) as e:
        raise ConfigError(f"{path}: not usable TOML ({type(e).__name__})", fix) from None


def validate(data: dict[str, Any], command: Any, path: Path | str = "<config>",
             ctx: Any | None = None) -> dict[str, Any]:
    """Check ``data`` (a parsed TOML document) against ``command``'s options; return name -> value.

    Keys may use dashes or underscores. Unknown keys, tables, wrong types and out-of-range values raise
    ConfigError naming the key and the file.
    """
    params = run_params(command)
    out: dict[str, Any] = {}
    if ctx is None:
        ctx = click.Context(command)
    for key, value in data.items():
        name = key.replace("-", "_")
        p = params.get(name)
        if p is None:
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}",
                              hint + "keys are the long options of `edge-ee run` ("
                              + ", ".join(sorted(params)) + ")")
        if name in out:
            raise ConfigError(f"{path}: {key!r} is given twice (as {name!r} and with dashes)", "keep one")
        kind = _type_name(p)
        try:
            if getattr(p, "multiple", False):
                if not isinstance(value, list):
                    raise TypeError("a list")
                checked: Any = [_check_scalar(kind, v) for v in value]
            else:
                checked = _check_scalar(kind, value)
        except TypeError as e:
            raise ConfigError(f"{path}: {key!r} must be {e}, not {_what(value)} ({_short(value)})",
                              f"see `edge-ee run --help` for --{name.replace('_', '-')}") from None
        try:  # the option's own checks (ranges, choices, ...)
            if kind != "bool":
                _convert(p, checked, ctx)
        except click.ClickException as e:
            raise ConfigError(f"{path}: {key!r} = {_short(value)}: {e.format_message()}",
                              f"see `edge-ee run --help` for --{name.replace('_', '-')}") from None
        out[name] = checked
    return out


def load_run_config(path: Path | str, command: Any, ctx: Any | None = None) -> dict[str, Any]:
    """Read and check a config file for ``command`` (the click command of ``edge-ee run``)."""
    path = Path(path)
    return validate(parse_toml(path), command, path, ctx)


def config_option_callback(ctx: Any, param: Any, value: Path | None) -> Path | None:
    """Callback of the eager ``--config`` option: the file's values become click's ``default_map``,
    so options given on the command line still win."""
    if value is not None and not getattr(ctx, "resilient_parsing", False):
        values = load_run_config(value, ctx.command, ctx)
        ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def command_line_keys(ctx: Any) -> set[str]:
    """Options of the current command that were given on the command line (they override the file)."""
    out = set()
    for p in ctx.command.params:
        src = ctx.get_parameter_source(p.name) if p.name else None
        if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            out.add(p.name)
    return out


def effective_settings(command: Any, file_values: dict[str, Any], cli_values: dict[str, Any]) -> dict[str, Any]:
    """What the options would be now: command line > file > default (used on SIGHUP)."""
    out: dict[str, Any] = {}
    for name, p in run_params(command).items():
        if name in cli_values:
            out[name] = cli_values[name]
        elif name in file_values:
            out[name] = file_values[name]
        else:
            d = p.default
            out[name] = d() if callable(d) else d
    return out


# ---------------------------------------------------------------------------------------- default file
SERVICE_DEFAULTS = '''\
# edge-ee service configuration, read by `edge-ee run --config /etc/edge-ee/edge-ee.toml`.
#
# Keys are the long options of `edge-ee run` (max_frames or max-frames); options given on the
# command line (ExecStart=) override this file. `systemctl reload edge-ee` (SIGHUP) re-reads it:
# thresholds, rule, budget, mode/exit_at, quiet, max_frames and duration apply from the next frame;
# other keys need `systemctl restart edge-ee`. A bad file on reload is logged and the old settings kept.
# Relative paths are relative to the working directory: /var/lib/edge-ee for the service.

# The input. Replace the placeholder with your camera/microphone/video, e.g. "video:/data/clip.mp4".
source = "synthetic"
fps = 10.0                 # pace the loop (a placeholder source would otherwise use a whole core)

# model = "/opt/edge-ee/bundles/my_bundle"   # default: the embedded bundle
# budget = "20ms"
# thresholds = [0.8, 0.9]

# Telemetry: one JSON line per inference, rotated at log_max_mb, log_keep old files kept.
log = "/var/lib/edge-ee/telemetry.jsonl"
log_max_mb = 50.0
log_keep = 5

quiet = true               # no status lines in the journal; `systemctl status edge-ee` shows STATUS=
metrics_port = 9631        # Prometheus metrics on http://127.0.0.1:9631/metrics
metrics_addr = "127.0.0.1"
'''


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def option_reference(command: Any) -> str:
    """Commented list of every run option (generated, so it cannot miss one)."""
    lines = ["", "# ---- every option of `edge-ee run` (generated from the command; uncomment to use) ----"]
    for name, p in sorted(run_params(command).items()):
        d = p.default
        d = None if callable(d) else d
        val = _toml_value(d) if d not in (None, "") else {"bool": "false", "int": "0", "float": "0.0",
                                                            "str": '""'}[_type_name(p)]
        help_text = " ".join((getattr(p, "help", None) or "").split())
        lines.append(f"# {name} = {val}" + (f"    # {help_text}" if help_text else ""))
    return "\n".join(lines) + "\n"


def default_config_text(command: Any) -> str:
    """The default config file for ``command`` (the click command of ``edge-ee run``)."""
    return SERVICE_DEFAULTS + option_reference(command)
