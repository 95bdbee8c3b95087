"""The agent service: the long-running process (start-amazon-cloudwatch-agent) and its control.

The process translates the stored config the way `start-amazon-cloudwatch-agent` does (legacy
JSON plus the files in amazon-cloudwatch-agent.d, `.tmp` files ignored):
- no JSON config at all: logs "No json config files found ..." and exits 0, so systemd shows
  the unit inactive and `Restart=on-failure` does not bring it back;
- an invalid config: logs the translator errors and exits 1 (systemd retries after 60 s);
- a valid one: writes the TOML and the pid file, logs its startup and then idles until SIGTERM
  or SIGINT. It opens no sockets and sends nothing anywhere.

Control goes through systemd when the root is `/` and systemd runs (like the real ctl), or
through a detached process and the pid file when CWAGENT_ROOT points elsewhere (tests).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from . import config
from .environment import MODE_AUTO
from .paths import SERVICE_NAME, Paths

INIT_ENV = "CWAGENT_INIT"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
AGENT_MARKER = "start-agent"


class InitSystemError(Exception):
    """Neither systemd nor the process backend applies (the real ctl: "unknown init system")."""


def read_version(paths: Paths) -> str:
    return paths.version_file.read_text(encoding="utf-8").strip()


# ---------------------------------------------------------------------------- the agent process


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _logfile_for(paths: Paths, merged: dict[str, object]) -> Path:
    agent = merged.get("agent")
    configured = agent.get("logfile") if isinstance(agent, dict) else None
    if isinstance(configured, str) and configured.startswith("/"):
        return paths.host(configured)
    return paths.log_file


def run_agent(paths: Paths) -> int:
    """The service's main: translate, then stay up without doing any I/O until told to stop."""
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    with paths.log_file.open("a", encoding="utf-8") as wrapper_log:
        result = config.translate(paths, config.MULTI_REMOVE, MODE_AUTO)
        for line in result.log:
            wrapper_log.write(line + "\n")
        if result.no_json:
            return 0
        if not result.ok or result.merged is None:
            wrapper_log.write(
                config.golog("E! Cannot translate JSON config into TOML, ERROR is exit status 1")
                + "\n"
            )
            return 1
        wrapper_log.write(
            config.golog(f"I! Config has been translated into TOML {paths.toml}") + "\n"
        )
        merged = result.merged
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    log_path = _logfile_for(paths, merged)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    metrics = merged.get("metrics", {})
    inputs = sorted(metrics.get("metrics_collected", {})) if isinstance(metrics, dict) else []
    if "logs" in merged:
        inputs.append("logfile")
    outputs = [
        name
        for key, name in (("metrics", "cloudwatch"), ("logs", "cloudwatchlogs"))
        if key in merged
    ]
    with log_path.open("a", encoding="utf-8") as log:

        def emit(message: str) -> None:
            log.write(config.golog(message) + "\n")
            log.flush()

        emit(f"I! Starting AmazonCloudWatchAgent {read_version(paths)} with log file {log_path}")
        emit(f"I! Loaded inputs: {' '.join(inputs)}")
        emit(f"I! Loaded outputs: {' '.join(outputs)}")
        emit("I! [double] test double: nothing is collected and nothing is sent")
        paths.var_dir.mkdir(parents=True, exist_ok=True)
        paths.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            while True:
                signal.pause()
        except _Stop as stop:
            emit(f"I! Received signal: {stop.args[0]}, stopping the agent")
        finally:
            if paths.pid_file.exists() and paths.pid_file.read_text().strip() == str(os.getpid()):
                paths.pid_file.unlink()
    return 0


# ---------------------------------------------------------------------------- process facts


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _is_agent(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(AGENT_MARKER.encode() in part for part in cmdline) or any(
        part.endswith(b"start-amazon-cloudwatch-agent") for part in cmdline
    )


def start_time_iso(pid: int) -> str:
    """Process start as `TZ=UTC date -Isec` prints it (the real status output)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, IndexError):
        return ""
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    moment = datetime.datetime.fromtimestamp(int(started), tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- backends


class ProcessBackend:
    """Runs the agent as a detached process tracked by its pid file (tests, no systemd)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def main_pid(self) -> int:
        try:
            pid = int(self.paths.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return 0
        return pid if _alive(pid) and _is_agent(pid) else 0

    def is_running(self) -> bool:
        return self.main_pid() != 0

    def start(self) -> None:
        if self.is_running():
            return
        package = __package__ or "cwagent_double"
        top = Path(__file__).resolve().parents[len(package.split("."))]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(top), env.get("PYTHONPATH")]))
        env["CWAGENT_ROOT"] = str(self.paths.root)
        proc = subprocess.Popen(
            [sys.executable, "-m", package, AGENT_MARKER],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None or self.main_pid() == proc.pid:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self.main_pid()
        if not pid:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


class SystemdBackend:
    """What the real ctl does on a systemd host."""

    unit = f"{SERVICE_NAME}.service"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)

    def main_pid(self) -> int:
        out = self._run("show", "-p", "MainPID", "--value", self.unit).stdout.strip()
        return int(out) if out.isdigit() else 0

    def is_running(self) -> bool:
        return self._run("is-active", self.unit).returncode == 0

    def start(self) -> None:
        for args in (("daemon-reload",), ("enable", self.unit), ("restart", self.unit)):
            done = self._run(*args)
            if done.returncode != 0:
                raise InitSystemError(done.stderr.strip() or f"systemctl {args[0]} failed")

    def disable(self) -> None:
        for args in (("disable", self.unit), ("daemon-reload",), ("reset-failed",)):
            self._run(*args)

    def stop(self) -> None:
        done = self._run("stop", self.unit)
        if done.returncode != 0:
            raise InitSystemError(done.stderr.strip() or "systemctl stop failed")


Backend = ProcessBackend | SystemdBackend


def backend_for(paths: Paths) -> Backend:
    choice = os.environ.get(INIT_ENV, "")
    if choice == "process" or (not choice and not paths.is_system_root):
        return ProcessBackend(paths)
    if choice == "systemd" or Path("/run/systemd/system").is_dir():
        return SystemdBackend()
    raise InitSystemError("unknown init system")
