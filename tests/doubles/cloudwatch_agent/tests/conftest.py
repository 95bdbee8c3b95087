"""Fixtures for the CloudWatch agent double's contract tests.

Every test gets its own agent root (CWAGENT_ROOT) in a temp dir, laid out like the installed
package, with the double's schema (agent_schema.json, what the package installs) copied in. The
ctl and the service run as subprocesses, exactly as Ansible and systemd start them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.cloudwatch_agent.packaging import DEFAULT_SCHEMA

REPO = Path(__file__).resolve().parents[4]
PACKAGE = "tests.doubles.cloudwatch_agent"
AGENT_DIR = "opt/aws/amazon-cloudwatch-agent"
VERSION = "1.300070.0"
REGION = "ap-south-1"


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Agent:
    """One agent root: run the ctl and the service, read and write files as the host sees them."""

    def __init__(self, root: Path, command: list[str] | None = None) -> None:
        self.root = root
        self.command = command or [sys.executable, "-m", PACKAGE]
        self.extra_env: dict[str, str] = {}

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    @property
    def agent_dir(self) -> Path:
        return self.root / AGENT_DIR

    @property
    def json_dir(self) -> Path:
        return self.agent_dir / "etc" / "amazon-cloudwatch-agent.d"

    @property
    def toml(self) -> Path:
        return self.agent_dir / "etc" / "amazon-cloudwatch-agent.toml"

    @property
    def log_file(self) -> Path:
        return self.agent_dir / "logs" / "amazon-cloudwatch-agent.log"

    @property
    def pid_file(self) -> Path:
        return self.agent_dir / "var" / "amazon-cloudwatch-agent.pid"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CWAGENT_INIT", None)
        env["CWAGENT_ROOT"] = str(self.root)
        env.update(self.extra_env)
        return env

    def write(self, host_path: str, content: Any) -> Path:
        target = self.path(host_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        target.write_text(text, encoding="utf-8")
        return target

    def stored(self) -> list[str]:
        return sorted(p.name for p in self.json_dir.iterdir())

    def run(self, args: list[str], timeout: float = 30) -> Result:
        proc = subprocess.run(
            [*self.command, *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ctl(self, *args: str) -> Result:
        return self.run(["ctl", *args] if self.command[-1] == PACKAGE else list(args))

    def fetch(self, config: Any, *flags: str, name: str = "/etc/clinic/cwagent.json") -> Result:
        self.write(name, config)
        return self.ctl("-a", "fetch-config", "-m", "ec2", "-c", f"file:{name}", *flags)

    def status(self) -> dict[str, str]:
        result = self.ctl("-a", "status")
        assert result.rc == 0, result.output
        return json.loads(result.stdout)

    def agent_pid(self) -> int:
        try:
            return int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return 0

    def cleanup(self) -> None:
        pid = self.agent_pid()
        if pid and pid_alive(pid):
            self.ctl("-a", "stop")
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def install_layout(root: Path, schema: Path, users: tuple[str, ...] = ("root", "cwagent")) -> None:
    """What the .deb and its maintainer scripts leave on a host, plus the lab's IMDS knob."""
    agent_dir = root / AGENT_DIR
    for sub in ("bin", "doc", "etc/amazon-cloudwatch-agent.d", "logs", "var"):
        (agent_dir / sub).mkdir(parents=True, exist_ok=True)
    (agent_dir / "bin" / "CWAGENT_VERSION").write_text(f"{VERSION}\n", encoding="ascii")
    shutil.copyfile(schema, agent_dir / "doc" / "amazon-cloudwatch-agent-schema.json")
    knob = root / "etc" / "amazon-cloudwatch-agent-double" / "imds-region"
    knob.parent.mkdir(parents=True, exist_ok=True)
    knob.write_text(f"{REGION}\n", encoding="ascii")
    passwd = "".join(
        f"{u}:x:{1000 + i}:{1000 + i}::/nonexistent:/bin/false\n" for i, u in enumerate(users)
    )
    (root / "etc" / "passwd").write_text(passwd, encoding="ascii")


@pytest.fixture
def schema_path() -> Path:
    return DEFAULT_SCHEMA


@pytest.fixture
def agent(tmp_path: Path, schema_path: Path) -> Iterator[Agent]:
    root = tmp_path / "host"
    install_layout(root, schema_path)
    double = Agent(root)
    yield double
    double.cleanup()
