"""Bad input fails with a message that says what to fix, and leaves the running agent alone.

Each case runs converge.yml against the converged hosts with one input changed by -e. The checks of
the inputs stop before the first change; the package checks (sha256, signing key, signature) stop
before anything is installed; a configuration the schema refuses never replaces the file; one the
agent refuses fails the handler while the agent keeps running with its previous configuration. A
plain converge afterwards must put everything back, and the one after that change nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from agents import AGENTS, APPLIED, CONFIG, CTL, TOML, VERSION
from testinfra.host import Host

Run = Callable[..., CompletedProcess[str]]
Recap = Callable[[CompletedProcess[str]], dict[str, dict[str, int]]]
Tail = Callable[[CompletedProcess[str]], str]
HostNamed = Callable[[str], Host]

APP = ["--limit", "cwa-app"]
BOTH = [agent.name for agent in AGENTS]
ZEROS = "0" * 64

# case: (extra vars, extra args, hosts of the run, the message)
REFUSED_INPUTS = {
    "retention-not-allowed": (
        {
            "cloudwatch_agent_log_retention_days": {
                "app": 90,
                "mongodb": 30,
                "syslog": 45,
                "auth": 365,
            }
        },
        [],
        BOTH,
        "Retention not allowed in cloudwatch_agent_log_retention_days (syslog: 45): use one of",
    ),
    "unknown-retention-key": (
        {"cloudwatch_agent_log_retention_days": {"app": 90, "nginx": 30}},
        [],
        BOTH,
        "cloudwatch_agent_log_retention_days names unknown log group(s) nginx;",
    ),
    "unknown-log-set": (
        {"cloudwatch_agent_log_sets": ["app", "nginx"]},
        [],
        BOTH,
        "cloudwatch_agent_log_sets must be one or more of: app, mongodb, system",
    ),
    "sha256-not-64-hex": (
        {"cloudwatch_agent_deb_sha256": "abc123"},
        APP,
        ["cwa-app"],
        "The s3_deb method needs cloudwatch_agent_deb_sha256 as 64 hex digits (got 'abc123')",
    ),
    "fingerprint-not-40-hex": (
        {"cloudwatch_agent_gpg_fingerprint": "D58167303B789C72"},
        APP,
        ["cwa-app"],
        "cloudwatch_agent_gpg_fingerprint as 40 hex digits (got 'D58167303B789C72')",
    ),
    "config-inside-the-agent-directory": (
        {"cloudwatch_agent_config_path": "/opt/aws/amazon-cloudwatch-agent/etc/clinic.json"},
        [],
        BOTH,
        "fetch-config deletes configuration sources kept there",
    ),
}


def agent_state(host_named: HostNamed, name: str) -> tuple[str, str, str, str]:
    """What must not move when a run is refused: package version, source, applied copy, TOML."""
    host = host_named(name)
    return (
        host.package("amazon-cloudwatch-agent").version,
        host.file(CONFIG).sha256sum,
        host.file(APPLIED).sha256sum,
        host.file(TOML).sha256sum,
    )


def running(host_named: HostNamed, name: str) -> bool:
    return json.loads(host_named(name).check_output(f"{CTL} -a status"))["status"] == "running"


def flat(result: CompletedProcess[str]) -> str:
    """The run's output on one line, with YAML's doubled single quotes undone."""
    return " ".join((result.stdout + result.stderr).split()).replace("''", "'")


@pytest.fixture(scope="module", autouse=True)
def converged_again_afterwards(ansible_playbook: Run, recap: Recap, tail: Tail) -> Iterator[None]:
    """Afterwards a plain converge repairs what the bad runs left, and the next changes nothing."""
    yield
    repaired = ansible_playbook("converge.yml")
    assert repaired.returncode == 0, tail(repaired)
    again = ansible_playbook("converge.yml")
    assert again.returncode == 0, tail(again)
    assert {host: c["changed"] for host, c in recap(again).items()} == dict.fromkeys(BOTH, 0)


@pytest.mark.parametrize(
    ("overrides", "args", "hosts", "message"), REFUSED_INPUTS.values(), ids=REFUSED_INPUTS.keys()
)
def test_bad_input_is_refused_before_any_change(
    ansible_playbook: Run,
    recap: Recap,
    tail: Tail,
    overrides: Any,
    args: list[str],
    hosts: list[str],
    message: str,
) -> None:
    result = ansible_playbook("converge.yml", "-e", json.dumps(overrides), *args)
    assert result.returncode != 0, tail(result)
    assert message in flat(result), tail(result)
    counters = recap(result)
    assert sorted(counters) == hosts
    assert {host: c["changed"] for host, c in counters.items()} == dict.fromkeys(hosts, 0)
    started = re.findall(r"^TASK \[clinic\.infra\.cloudwatch_agent : (.*?)\]", result.stdout, re.M)
    checks = ("Validating arguments against arg spec", "assert | ")
    assert started
    assert all(name.startswith(checks) for name in started), started


def bucket() -> str:
    return "http://172.30.44.6"


# case: (extra vars as a function of the bucket's fixture, the message, changed allowed)
PACKAGE_CASES = {
    # The cached .deb does not have the pinned digest: get_url refuses it.
    "sha256-mismatch": (
        lambda fixture: {"cloudwatch_agent_deb_sha256": ZEROS},
        "did not match",
    ),
    # The key at the URL is genuine, but not the one pinned.
    "key-is-not-the-pinned-one": (
        lambda fixture: {"cloudwatch_agent_gpg_fingerprint": fixture["impostor_fingerprint"]},
        "is not the pinned key: it holds {fingerprint}, expected {impostor_fingerprint}",
    ),
    # The key URL serves another key than the pinned one.
    "key-url-serves-another-key": (
        lambda fixture: {
            "cloudwatch_agent_gpg_key_url": f"{bucket()}/impostor/amazon-cloudwatch-agent.gpg"
        },
        "is not the pinned key: it holds {impostor_fingerprint}, expected {fingerprint}",
    ),
    # The signature was made by another key.
    "signature-by-another-key": (
        lambda fixture: {
            "cloudwatch_agent_deb_sig_url": f"{bucket()}/impostor/amazon-cloudwatch-agent.deb.sig"
        },
        "No good signature by the pinned key {fingerprint}",
    ),
}


@pytest.fixture(scope="module")
def bucket_fixture(ephemeral: Path) -> dict[str, str]:
    return json.loads((ephemeral / "s3-bucket" / "fixture.json").read_text())


@pytest.mark.parametrize(("overrides", "message"), PACKAGE_CASES.values(), ids=PACKAGE_CASES.keys())
def test_package_checks_fail_closed(
    ansible_playbook: Run,
    recap: Recap,
    tail: Tail,
    host_named: HostNamed,
    bucket_fixture: dict[str, str],
    overrides: Any,
    message: str,
) -> None:
    before = agent_state(host_named, "cwa-app")
    result = ansible_playbook("converge.yml", "-e", json.dumps(overrides(bucket_fixture)), *APP)
    assert result.returncode != 0, tail(result)
    assert message.format(**bucket_fixture) in flat(result), tail(result)
    assert "install_s3_deb | Install the verified package" not in result.stdout, tail(result)
    assert recap(result)["cwa-app"]["failed"] == 1
    assert agent_state(host_named, "cwa-app") == before
    assert before[0] == VERSION
    assert running(host_named, "cwa-app")


def test_a_config_the_schema_refuses_never_replaces_the_file(
    ansible_playbook: Run,
    recap: Recap,
    tail: Tail,
    host_named: HostNamed,
) -> None:
    before = {agent.name: agent_state(host_named, agent.name) for agent in AGENTS}
    typo = {"cloudwatch_agent_config_overrides": {"logs": {"force_flush_intervall": 5}}}
    result = ansible_playbook("converge.yml", "-e", json.dumps(typo))
    assert result.returncode != 0, tail(result)
    output = flat(result)
    assert "failed to validate" in output, tail(result)
    assert "/logs: Additional properties are not allowed" in output, tail(result)
    assert "force_flush_intervall" in output
    assert {h: c["changed"] for h, c in recap(result).items()} == dict.fromkeys(BOTH, 0)
    assert {agent.name: agent_state(host_named, agent.name) for agent in AGENTS} == before
    assert all(running(host_named, agent.name) for agent in AGENTS)


def test_a_config_the_agent_refuses_fails_the_handler_and_keeps_the_old_one(
    ansible_playbook: Run,
    recap: Recap,
    tail: Tail,
    host_named: HostNamed,
) -> None:
    """The schema allows any run_as_user; the agent refuses a user that does not exist."""
    before = agent_state(host_named, "cwa-app")
    bad = ["-e", json.dumps({"cloudwatch_agent_run_as_user": "nobody-here"}), *APP]
    result = ansible_playbook("converge.yml", *bad)
    assert result.returncode != 0, tail(result)
    output = flat(result)
    assert "amazon-cloudwatch-agent-ctl refused /etc/clinic/amazon-cloudwatch-agent.json" in output
    assert "the agent keeps its previous configuration" in output
    assert "unknown user nobody-here" in output, tail(result)
    after = agent_state(host_named, "cwa-app")
    assert after[1] != before[1], "the source was written"
    assert after[2:] == before[2:], "the applied copy and the agent's TOML did not move"
    assert running(host_named, "cwa-app")
    # The next run with the same input sees the unapplied file and fails again, never green.
    again = ansible_playbook("converge.yml", *bad)
    assert again.returncode != 0, tail(again)
    assert "unknown user nobody-here" in flat(again), tail(again)
    assert recap(again)["cwa-app"]["failed"] == 1
