"""`amazon-cloudwatch-agent-ctl`: the actions, flags, messages and file handling of the real ctl.

fetch-config / append-config / remove-config run the config-downloader step (write the source
to amazon-cloudwatch-agent.d/<type>_<name>.tmp after deleting older .tmp files), the translator
(config.translate) and then the ctl's own bookkeeping: fetch-config deletes the legacy
etc/amazon-cloudwatch-agent.json and every non-.tmp file in the .d directory, then drops the
.tmp suffix; append-config only drops the suffix. A source kept inside the agent's etc/ is
therefore consumed, as users of the real agent find out.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import config
from .environment import CTL_MODES, MODE_EC2, CommonConfigError, detect_mode, detect_region
from .paths import SERVICE_NAME, Paths
from .service import (
    Backend,
    InitSystemError,
    SystemdBackend,
    backend_for,
    read_version,
    start_time_iso,
)

LOG_LEVELS = ("INFO", "DEBUG", "WARN", "ERROR", "OFF")
USAGE = """
        usage:  amazon-cloudwatch-agent-ctl -a
                stop|start|status|fetch-config|append-config|remove-config|set-log-level
                [-m ec2|onPremise|auto]
                [-c default|all|ssm:<parameter-store-name>|file:<file-path>]
                [-s]
                [-l INFO|DEBUG|WARN|ERROR|OFF]

        This is the amazon-cloudwatch-agent TEST DOUBLE: it validates and stores configuration
        like the agent but collects and sends nothing.
"""
DEFAULT_CONFIG: dict[str, object] = {
    "agent": {"run_as_user": "cwagent"},
    "metrics": {
        "metrics_collected": {
            "mem": {"measurement": ["mem_used_percent"]},
            "disk": {"measurement": ["used_percent"], "resources": ["*"]},
        }
    },
}
EC2_DIMENSIONS = {
    "ImageId": "${aws:ImageId}",
    "InstanceId": "${aws:InstanceId}",
    "InstanceType": "${aws:InstanceType}",
    "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
}
PROCESSING = f"****** processing {SERVICE_NAME} ******"


class CtlExit(Exception):
    """Ends the run with an exit code (the shell script's `exit N` under `set -e`)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def out(message: str = "") -> None:
    print(message, flush=True)


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Options:
    action: str = ""
    location: str = ""
    restart: bool = False
    mode: str = MODE_EC2
    log_level: str = ""


def parse(argv: list[str]) -> Options:
    """getopts ":hsda:c:m:l:" semantics: unknown flags are reported and skipped."""
    opts = Options()
    with_value = {"a": "action", "c": "location", "m": "mode", "l": "log_level"}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("-") or arg == "-":
            break
        if arg == "--":
            break
        letters = arg[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter == "h":
                out(USAGE)
                raise CtlExit(0)
            if letter == "s":
                opts.restart = True
            elif letter == "d":
                continue
            elif letter in with_value:
                if not letters:
                    index += 1
                    if index >= len(argv):
                        err(f"Option -{letter} requires an argument {USAGE}")
                        raise CtlExit(1)
                    letters = argv[index]
                setattr(opts, with_value[letter], letters)
                letters = ""
            else:
                err(f"Invalid option: -{letter} {USAGE}")
        index += 1
    return opts


# ---------------------------------------------------------------------------- download step


def _escape(name: str) -> str:
    return name.replace("/", "_").replace(" ", "_").replace(":", "_")


def download(paths: Paths, location: str, mode: str, multi_config: str) -> None:
    """The config-downloader: fetch (or, for remove, delete) one source in the .d directory."""
    kind, _, rest = location.partition(":")
    if kind != "default" and not rest:
        raise RuntimeError(f"downloadLocation {location} is malformed")
    resolved = detect_mode(paths, mode)
    try:
        region = detect_region(paths, resolved)
    except CommonConfigError as exc:
        raise RuntimeError(str(exc)) from exc
    if not region and kind != "default":
        if resolved == MODE_EC2:
            raise RuntimeError(
                "please check if you can access the metadata service. For example, on linux, "
                "run 'wget -q -O - http://169.254.169.254/latest/meta-data/instance-id && echo'"
            )
        raise RuntimeError(
            "please make sure the credentials and region set correctly on your hosts"
        )
    paths.json_dir.mkdir(parents=True, exist_ok=True)
    for stale in paths.json_dir.glob(f"*{config.TMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink()
    content = ""
    if kind == "default":
        name = "default"
        if multi_config != config.MULTI_REMOVE:
            default = json.loads(json.dumps(DEFAULT_CONFIG))
            if resolved == MODE_EC2:
                default["metrics"]["append_dimensions"] = dict(EC2_DIMENSIONS)
            content = json.dumps(default, indent=2) + "\n"
    elif kind == "file":
        name = f"file_{_escape(rest.rstrip('/').rsplit('/', 1)[-1])}"
        if multi_config != config.MULTI_REMOVE:
            source = paths.host(rest) if rest.startswith("/") else paths.root / rest
            try:
                content = source.read_text(encoding="utf-8")
            except OSError as exc:
                raise RuntimeError(
                    f"fail to fetch/remove json config: open {rest}: {exc.strerror.lower()}"
                ) from exc
    elif kind == "ssm":
        name = f"ssm_{_escape(rest)}"
        if multi_config != config.MULTI_REMOVE:
            raise RuntimeError(
                "fail to fetch/remove json config: [double] ssm: sources need the SSM API; "
                "the test double only reads file: and default"
            )
    else:
        raise RuntimeError(f"location type {kind} is not supported")
    if multi_config == config.MULTI_REMOVE:
        target = paths.json_dir / name
        if not target.exists():
            raise RuntimeError(
                f"failed to remove the json file {target}: remove {target}: "
                "no such file or directory"
            )
        target.unlink()
        out(f"Successfully removed the config file {target}")
        return
    target = paths.json_dir / f"{name}{config.TMP_SUFFIX}"
    target.write_text(content, encoding="utf-8")
    target.chmod(0o644)
    out(f"Successfully fetched the config and saved in {target}")


# ---------------------------------------------------------------------------- actions


def _finalize(paths: Paths, multi_config: str) -> None:
    if multi_config == config.MULTI_DEFAULT:
        paths.legacy_json.unlink(missing_ok=True)
        for path in sorted(paths.json_dir.iterdir()):
            if path.is_dir() and not path.is_symlink():
                continue
            if path.suffix == config.TMP_SUFFIX:
                path.replace(path.with_name(path.name[: -len(config.TMP_SUFFIX)]))
            else:
                path.unlink()
    elif multi_config == config.MULTI_APPEND:
        for path in sorted(paths.json_dir.glob(f"*{config.TMP_SUFFIX}")):
            path.replace(path.with_name(path.name[: -len(config.TMP_SUFFIX)]))


def configure(paths: Paths, location: str, restart: bool, mode: str, multi_config: str) -> None:
    location = location or "default"
    out(PROCESSING)
    if location == "all" and multi_config != config.MULTI_REMOVE:
        out('ignore cwa configuration "all" as it is only supported by action "remove-config"')
        return
    if location == "all":
        if paths.json_dir.is_dir():
            for path in paths.json_dir.iterdir():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    else:
        try:
            download(paths, location, mode, multi_config)
        except RuntimeError as exc:
            err(config.golog(f"E! {exc}"))
            raise CtlExit(1) from exc
    if not paths.json_dir.is_dir() or not any(paths.json_dir.iterdir()):
        out(f"all {SERVICE_NAME} configurations have been removed")
        paths.toml.unlink(missing_ok=True)
    else:
        out("Start configuration validation...")
        result = config.translate(paths, multi_config, mode)
        for line in result.log:
            err(line)
        if not result.ok:
            raise CtlExit(1)
        out("Configuration validation second phase succeeded")
        out("Configuration validation succeeded")
        _finalize(paths, multi_config)
    if restart:
        agent_stop(paths)
        agent_start(paths, mode)


def agent_start(paths: Paths, mode: str) -> None:
    backend = _backend(paths)
    if backend.is_running():
        out(f"{SERVICE_NAME} has already been started")
        return
    if not paths.toml.exists():
        out(
            f"Both {SERVICE_NAME} is not configured. Applying {SERVICE_NAME} default configuration."
        )
        configure(paths, "default", False, mode, config.MULTI_DEFAULT)
    with _init_system_failure_exits():
        backend.start()


def agent_stop(paths: Paths) -> None:
    backend = _backend(paths)
    if not backend.is_running():
        out(f"{SERVICE_NAME} has already been stopped")
        return
    with _init_system_failure_exits():
        backend.stop()


def preun(paths: Paths) -> None:
    """Package removal hook: stop the agent and, under systemd, disable the unit."""
    agent_stop(paths)
    backend = _backend(paths)
    if isinstance(backend, SystemdBackend):
        backend.disable()


def status(paths: Paths) -> None:
    try:
        version = read_version(paths)
    except OSError as exc:
        err(f"cat: {paths.version_file}: {exc.strerror}")
        raise CtlExit(1) from exc
    backend = _backend(paths)
    running = backend.is_running()
    pid = backend.main_pid() if running else 0
    report = {
        "status": "running" if running else "stopped",
        "starttime": start_time_iso(pid) if pid else "",
        "configstatus": "configured" if paths.toml.exists() else "not configured",
        "version": version,
    }
    out(json.dumps(report, indent=2))


def set_log_level(paths: Paths, level: str) -> None:
    if level not in LOG_LEVELS:
        err(f"Invalid log level: {level} {USAGE}")
        raise CtlExit(1)
    try:
        env = json.loads(paths.env_config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        env = {}
    env["CWAGENT_LOG_LEVEL"] = level
    paths.env_config.parent.mkdir(parents=True, exist_ok=True)
    paths.env_config.write_text(json.dumps(env) + "\n", encoding="utf-8")
    out(f"Set CWAGENT_LOG_LEVEL to {level}")


@contextlib.contextmanager
def _init_system_failure_exits() -> Iterator[None]:
    """An init system failure inside is reported on stderr and ends the ctl with exit code 1."""
    try:
        yield
    except InitSystemError as exc:
        err(str(exc))
        raise CtlExit(1) from exc


def _backend(paths: Paths) -> Backend:
    with _init_system_failure_exits():
        return backend_for(paths)


def main(argv: list[str]) -> int:
    paths = Paths.from_env()
    try:
        opts = parse(argv)
        if opts.mode not in CTL_MODES:
            err(f"Invalid mode: {opts.mode} {USAGE}")
            return 1
        _backend(paths)
        actions: dict[str, Callable[[], None]] = {
            "stop": lambda: (out(PROCESSING), agent_stop(paths))[-1],
            "start": lambda: (out(PROCESSING), agent_start(paths, opts.mode))[-1],
            "status": lambda: status(paths),
            "fetch-config": lambda: configure(
                paths, opts.location, opts.restart, opts.mode, config.MULTI_DEFAULT
            ),
            "append-config": lambda: configure(
                paths, opts.location, opts.restart, opts.mode, config.MULTI_APPEND
            ),
            "remove-config": lambda: configure(
                paths, opts.location, opts.restart, opts.mode, config.MULTI_REMOVE
            ),
            "set-log-level": lambda: set_log_level(paths, opts.log_level),
            "preun": lambda: preun(paths),
        }
        if opts.action not in actions:
            err(f"Invalid action: {opts.action} {USAGE}")
            return 1
        actions[opts.action]()
    except CtlExit as stop:
        return stop.code
    return 0
