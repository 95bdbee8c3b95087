"""What mongodump and mongorestore share: argv parsing, the --config file, logging, exit codes.

mongo-tools 100.x rules kept here: every failure, bad options included, exits 1; log lines go to
stderr as `<timestamp>\\t<message>`; `--archive` takes its value only with `=`; a positional
argument is a connection string and only one is allowed; `--config` is a YAML file that may hold
only `password`, `uri` and `sslPEMKeyPassword` (the client key's password, so that it need not be
on the command line). The TLS flags are mongo-tools' (`--ssl`, `--sslCAFile`, `--sslPEMKeyFile`,
`--sslPEMKeyPassword`, `--sslCRLFile`, `--sslFIPSMode`, `--tlsInsecure` and the deprecated
`--sslAllowInvalidCertificates`/`--sslAllowInvalidHostnames`); see tls.py.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

TOOL_VERSION = "100.10.0"
EXIT_OK = 0
EXIT_FAILURE = 1
NONE, REQUIRED, OPTIONAL = "none", "required", "optional"
CONFIG_KEYS = ("password", "uri", "sslPEMKeyPassword")

# long name -> (value kind, short alias, repeatable)
COMMON_FLAGS: dict[str, tuple[str, str | None, bool]] = {
    "help": (NONE, None, False),
    "version": (NONE, None, False),
    "verbose": (NONE, "v", True),
    "quiet": (NONE, None, False),
    "config": (REQUIRED, None, False),
    "uri": (REQUIRED, None, False),
    "host": (REQUIRED, "h", False),
    "port": (REQUIRED, None, False),
    "username": (REQUIRED, "u", False),
    "password": (REQUIRED, "p", False),
    "authenticationDatabase": (REQUIRED, None, False),
    "authenticationMechanism": (REQUIRED, None, False),
    "db": (REQUIRED, "d", False),
    "collection": (REQUIRED, "c", False),
    "readPreference": (REQUIRED, None, False),
    "gzip": (NONE, None, False),
    "archive": (OPTIONAL, None, False),
    "numParallelCollections": (REQUIRED, "j", False),
    # TLS, under mongo-tools' names (their help text has no --tls, --tlsCAFile... aliases).
    "ssl": (NONE, None, False),
    "sslCAFile": (REQUIRED, None, False),
    "sslPEMKeyFile": (REQUIRED, None, False),
    "sslPEMKeyPassword": (REQUIRED, None, False),
    "sslCRLFile": (REQUIRED, None, False),
    "sslFIPSMode": (NONE, None, False),
    "tlsInsecure": (NONE, None, False),
    "sslAllowInvalidCertificates": (NONE, None, False),  # hidden and deprecated in mongo-tools
    "sslAllowInvalidHostnames": (NONE, None, False),  # hidden and deprecated in mongo-tools
}


class ToolError(Exception):
    """A failure reported as `Failed: <message>` with exit code 1."""


class UsageError(Exception):
    """Bad options: `error parsing command line options: <message>` with exit code 1."""


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values


class Logger:
    def __init__(self) -> None:
        self.quiet = False

    def _emit(self, message: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"
        for line in message.splitlines() or [""]:
            sys.stderr.write(f"{stamp}\t{line}\n")
        sys.stderr.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._emit(message)

    def always(self, message: str) -> None:
        self._emit(message)


log = Logger()


def parse_argv(argv: list[str], flags: dict[str, tuple[str, str | None, bool]]) -> Parsed:
    table = {**COMMON_FLAGS, **flags}
    shorts = {short: name for name, (_, short, _) in table.items() if short}
    out = Parsed()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            out.positional.extend(args)
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
        elif arg.startswith("-") and len(arg) > 1:
            key, has_value, value = arg[1:].partition("=")
            if key and set(key) == {"v"} and not has_value:
                out.values["verbose"] = out.values.get("verbose", 0) + len(key)
                continue
            if key not in shorts:
                raise UsageError(f"unknown shorthand flag `{key}'")
            name = shorts[key]
        else:
            out.positional.append(arg)
            continue
        if name not in table:
            raise UsageError(f"unknown option `{name}'")
        kind, _, repeatable = table[name]
        if kind == NONE:
            if has_value:
                raise UsageError(f"option `--{name}' does not take a value")
            parsed: Any = True
            if name == "verbose":
                parsed = out.values.get("verbose", 0) + 1
        elif kind == OPTIONAL:
            parsed = value if has_value else ""
        else:
            if not has_value:
                if not args:
                    raise UsageError(f"expected argument for flag `--{name}'")
                value = args.pop(0)
            parsed = value
        if repeatable and kind != NONE:
            out.values.setdefault(name, []).append(parsed)
        else:
            out.values[name] = parsed
    return out


def _yaml_scalar(text: str, line_no: int) -> str:
    text = text.strip()
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"error parsing config file: yaml: line {line_no}: {exc}") from exc
        return str(value)
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise UsageError(f"error parsing config file: yaml: line {line_no}: unclosed quote")
        return text[1:-1].replace("''", "'")
    return text.split(" #", 1)[0].strip()


def read_config_file(path: str) -> dict[str, str]:
    """The flat YAML mapping mongo-tools accepts in --config (strict: unknown keys fail)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"error opening config file: {exc.strerror}: {path}") from exc
    values: dict[str, str] = {}
    unknown: list[str] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#") or line.strip() == "---":
            continue
        key, sep, rest = line.partition(":")
        if not sep or raw[:1].isspace():
            raise UsageError(
                f"error parsing config file: yaml: line {line_no}: only `key: value` lines of "
                "a flat mapping are accepted"
            )
        key = key.strip()
        if key not in CONFIG_KEYS:
            unknown.append(f"line {line_no}: field {key} not found in type options.Options")
            continue
        values[key] = _yaml_scalar(rest, line_no)
    if unknown:
        raise UsageError(
            "error parsing config file: yaml: unmarshal errors:\n  " + "\n  ".join(unknown)
        )
    return values


def fail_usage(tool: str, message: str) -> NoReturn:
    log.always(f"error parsing command line options: {message}")
    log.always(f"try '{tool} --help' for more information")
    raise SystemExit(EXIT_FAILURE)


def print_version(tool: str) -> None:
    sys.stdout.write(
        f"{tool} version: {TOOL_VERSION}\ngit version: test-double\n"
        f"Go version: none (test double of mongo-tools, Python {sys.version.split()[0]})\n"
    )


def parse_options(
    tool: str,
    usage: str,
    flags: dict[str, tuple[str, str | None, bool]],
    argv: list[str],
    validate: Callable[[Parsed], None],
) -> Parsed | None:
    """A tool's options, validated and with --quiet applied to the log.

    None when the call asks only for --help or --version, which is then already answered.
    """
    opts = parse_argv(argv, flags)
    if opts.has("help"):
        sys.stdout.write(usage)
        return None
    if opts.has("version"):
        print_version(tool)
        return None
    log.quiet = bool(opts.get("quiet"))
    validate(opts)
    return opts


def run_tool(tool: str, body: Any, argv: list[str]) -> int:
    """Run a tool's body and map failures to mongo-tools' messages and exit codes."""
    try:
        body(argv)
    except UsageError as exc:
        fail_usage(tool, str(exc))
    except ToolError as exc:
        log.always(f"Failed: {exc}")
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_FAILURE
    return EXIT_OK
