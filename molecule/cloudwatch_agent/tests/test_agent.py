"""The agent is installed at the pinned version by the host's install path, runs, and has applied
the configuration of the host's role: its log groups and not the other role's."""

from __future__ import annotations

import json
from collections.abc import Callable

from agents import ALL_GROUPS, APPLIED, CONFIG, CTL, TOML, VERSION, Agent
from testinfra.host import Host


def test_package_is_installed_at_the_pinned_version_and_held(host_named, agent: Agent) -> None:  # noqa: ANN001
    host: Host = host_named(agent.name)
    package = host.package("amazon-cloudwatch-agent")
    assert package.is_installed
    assert package.version == VERSION
    selection = host.check_output("dpkg --get-selections amazon-cloudwatch-agent")
    assert selection.split() == ["amazon-cloudwatch-agent", "hold"]


def test_the_host_used_its_install_path(host_named, agent: Agent) -> None:  # noqa: ANN001
    host: Host = host_named(agent.name)
    source = host.file("/etc/apt/sources.list.d/amazon-cloudwatch-agent.sources")
    cached = host.file(f"/var/cache/clinic/cloudwatch-agent/amazon-cloudwatch-agent_{VERSION}.deb")
    if agent.method == "s3_deb":
        assert cached.is_file
        cache = host.check_output("ls /var/cache/clinic/cloudwatch-agent").split()
        assert [name for name in cache if name.startswith("signature-")]
        assert [name for name in cache if name.startswith("key-")]
        assert not source.exists
    else:
        assert "Signed-By:" in source.content_string
        assert "http://172.30.44.5" in source.content_string
        assert not cached.exists


def test_service_runs_and_starts_at_boot(host_named, agent: Agent) -> None:  # noqa: ANN001
    service = host_named(agent.name).service("amazon-cloudwatch-agent")
    assert service.is_running
    assert service.is_enabled


def test_ctl_reports_a_running_configured_agent(host_named, agent: Agent) -> None:  # noqa: ANN001
    status = json.loads(host_named(agent.name).check_output(f"{CTL} -a status"))
    assert status["status"] == "running"
    assert status["configstatus"] == "configured"
    assert status["version"] == VERSION.split("-")[0]


def test_config_source_is_kept_outside_the_agent_and_protected(host_named, agent: Agent) -> None:  # noqa: ANN001
    source = host_named(agent.name).file(CONFIG)
    assert source.is_file
    assert (source.user, source.group, source.mode) == ("root", "cwagent", 0o640)


def test_the_applied_config_is_the_source(host_named, agent: Agent) -> None:  # noqa: ANN001
    host: Host = host_named(agent.name)
    assert host.file(APPLIED).sha256sum == host.file(CONFIG).sha256sum


def groups_in(text: str) -> set[str]:
    return {name for name in ALL_GROUPS if f'"{name}"' in text}


def test_applied_config_ships_the_log_groups_of_the_host_role_only(
    host_named: Callable[[str], Host], agent: Agent
) -> None:
    host = host_named(agent.name)
    applied = json.loads(host.file(APPLIED).content_string)
    items = applied["logs"]["logs_collected"]["files"]["collect_list"]
    assert {item["log_group_name"] for item in items} == agent.log_groups
    # What the agent translated and runs with (the double's TOML) says the same.
    assert groups_in(host.file(TOML).content_string) == agent.log_groups


def test_agent_runs_in_ec2_mode_with_the_metrics_of_its_role(
    host_named: Callable[[str], Host], agent: Agent
) -> None:
    toml = host_named(agent.name).file(TOML).content_string
    assert 'mode = "ec2"' in toml
    assert 'region = "ap-south-1"' in toml
    for plugin in ("mem", "disk", "swap", "procstat"):
        assert f"[[inputs.{plugin}]]" in toml
    selector = 'pattern = "node' if agent.method == "s3_deb" else 'exe = "mongod"'
    assert selector in toml
