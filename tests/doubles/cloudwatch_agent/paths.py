"""The agent's file layout, rooted at CWAGENT_ROOT so that tests can run without root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "CWAGENT_ROOT"
AGENT_DIR = "/opt/aws/amazon-cloudwatch-agent"
SERVICE_NAME = "amazon-cloudwatch-agent"
UNIT_PATH = "/etc/systemd/system/amazon-cloudwatch-agent.service"


@dataclass(frozen=True)
class Paths:
    """Every path the double reads or writes; `host()` maps a host path under the root."""

    root: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get(ROOT_ENV) or "/"))

    @property
    def is_system_root(self) -> bool:
        return self.root.resolve() == Path("/")

    def host(self, absolute: str) -> Path:
        """A path as the agent spells it (absolute) moved under the root."""
        return self.root / absolute.lstrip("/")

    @property
    def agent_dir(self) -> Path:
        return self.host(AGENT_DIR)

    @property
    def bin_dir(self) -> Path:
        return self.agent_dir / "bin"

    @property
    def etc_dir(self) -> Path:
        return self.agent_dir / "etc"

    @property
    def json_dir(self) -> Path:
        return self.etc_dir / "amazon-cloudwatch-agent.d"

    @property
    def legacy_json(self) -> Path:
        return self.etc_dir / "amazon-cloudwatch-agent.json"

    @property
    def toml(self) -> Path:
        return self.etc_dir / "amazon-cloudwatch-agent.toml"

    @property
    def env_config(self) -> Path:
        return self.etc_dir / "env-config.json"

    @property
    def common_config(self) -> Path:
        return self.etc_dir / "common-config.toml"

    @property
    def logs_dir(self) -> Path:
        return self.agent_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "amazon-cloudwatch-agent.log"

    @property
    def validation_log(self) -> Path:
        return self.logs_dir / "configuration-validation.log"

    @property
    def var_dir(self) -> Path:
        return self.agent_dir / "var"

    @property
    def pid_file(self) -> Path:
        return self.var_dir / "amazon-cloudwatch-agent.pid"

    @property
    def version_file(self) -> Path:
        return self.bin_dir / "CWAGENT_VERSION"

    @property
    def schema(self) -> Path:
        """Where the real package installs its schema (the double's package: agent_schema.json)."""
        return self.agent_dir / "doc" / "amazon-cloudwatch-agent-schema.json"

    @property
    def imds_region(self) -> Path:
        """Test-lab knob standing in for the instance metadata service (see README.md)."""
        return self.host("/etc/amazon-cloudwatch-agent-double/imds-region")

    def layout_dirs(self) -> list[Path]:
        """Directories the package creates."""
        return [self.bin_dir, self.json_dir, self.logs_dir, self.var_dir, self.schema.parent]
