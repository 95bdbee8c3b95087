"""What the scenario's hosts are and what each must ship (shared by its test modules)."""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "/clinic/molecule"
VERSION = "1.300070.0-1"
CONFIG = "/etc/clinic/amazon-cloudwatch-agent.json"
AGENT_ETC = "/opt/aws/amazon-cloudwatch-agent/etc"
APPLIED = f"{AGENT_ETC}/amazon-cloudwatch-agent.d/file_amazon-cloudwatch-agent.json"
TOML = f"{AGENT_ETC}/amazon-cloudwatch-agent.toml"
CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
RETENTION = {"app": 90, "mongodb": 30, "syslog": 14, "auth": 365}


class Agent(NamedTuple):
    name: str
    method: str
    groups: tuple[str, ...]

    @property
    def log_groups(self) -> set[str]:
        return {f"{PREFIX}/{group}" for group in self.groups}


AGENTS = (
    Agent("cwa-app", "s3_deb", ("app", "syslog", "auth")),
    Agent("cwa-mongodb", "apt", ("mongodb", "syslog", "auth")),
)
ALL_GROUPS = {f"{PREFIX}/{group}" for group in RETENTION}
