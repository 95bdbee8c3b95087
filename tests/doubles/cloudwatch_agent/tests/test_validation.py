"""fetch-config validates like the agent's translator: accepted configs and refused ones."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from . import configs
from .conftest import REGION, Agent

FIRST_ITEM = ("logs", "logs_collected", "files", "collect_list", 0)
FAILED = "Configuration validation first phase failed"


@pytest.mark.parametrize("name", sorted(configs.VALID))
def test_role_configs_are_accepted(agent: Agent, name: str) -> None:
    result = agent.fetch(configs.VALID[name])
    assert result.rc == 0, result.output
    assert "Configuration validation succeeded" in result.stdout
    assert "I! Valid Json input schema." in result.stderr
    assert agent.stored() == ["file_cwagent.json"]
    assert agent.status()["configstatus"] == "configured"
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    assert toml["double"]["region"] == REGION


def test_translation_lists_every_log_file_and_metric(agent: Agent) -> None:
    assert agent.fetch(configs.FULL).rc == 0
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    paths = [entry["file_path"] for entry in toml["inputs"]["files"]["file_config"]]
    assert paths == [
        "/var/log/clinic-api/app.log",
        "/var/log/syslog",
        "/var/log/auth.log",
        "/var/log/mongodb/mongod.log",
    ]
    assert sorted(toml["inputs"]) == ["disk", "files", "mem", "procstat"]
    assert [p.get("exe") or p.get("pattern") for p in toml["inputs"]["procstat"]] == [
        "node .*/server.js",
        "mongod",
    ]
    assert toml["outputs"]["cloudwatch"][0]["namespace"] == "Clinic/Test"


REFUSED: dict[str, tuple[Any, list[str]]] = {
    "interval_as_string": (
        configs.changed(configs.MONGOD_LOG, "agent", "metrics_collection_interval", value="60"),
        [
            "Under path : /agent/metrics_collection_interval | Error : "
            "Invalid type. Expected: integer, given: string"
        ],
    ),
    "typo_in_collect_list_item": (
        configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "log_group", value="/clinic/x"),
        [
            "Under path : /logs/logs_collected/files/collect_list/0 | Error : "
            "Additional property log_group is not allowed"
        ],
    ),
    "missing_file_path": (
        configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "file_path", drop=True),
        ["Under path : /logs/logs_collected/files/collect_list/0 | Error : file_path is required"],
    ),
    "retention_not_in_enum": (
        configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "retention_in_days", value=45),
        [
            "Under path : /logs/logs_collected/files/collect_list/0/retention_in_days | Error : "
            "retention_in_days must be one of the following: -1, 1, 3, 5, 7, 14, 30,"
        ],
    ),
    "timezone_not_in_enum": (
        configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "timezone", value="Asia/Kolkata"),
        ['timezone must be one of the following: "Local", "LOCAL", "UTC"'],
    ),
    "unknown_key_under_metrics": (
        configs.changed(configs.HOST_METRICS, "metrics", "metric_collected", value={}),
        [
            "Under path : /metrics | Error : Additional property metric_collected is not allowed",
        ],
    ),
    "metrics_without_metrics_collected": (
        configs.changed(configs.HOST_METRICS, "metrics", "metrics_collected", drop=True),
        ["Under path : /metrics | Error : metrics_collected is required"],
    ),
    "procstat_without_selector": (
        configs.changed(
            configs.HOST_METRICS,
            "metrics",
            "metrics_collected",
            "procstat",
            value=[{"measurement": ["pid_count"]}],
        ),
        [
            "Under path : /metrics/metrics_collected/procstat/0 | Error : "
            "Must validate at least one schema (anyOf)"
        ],
    ),
    "measurement_not_a_list": (
        configs.changed(
            configs.HOST_METRICS, "metrics", "metrics_collected", "mem", "measurement", value="x"
        ),
        [
            "Under path : /metrics/metrics_collected/mem/measurement | Error : "
            "Invalid type. Expected: array, given: string"
        ],
    ),
    "logs_without_anything_collected": (
        {"agent": dict(configs.AGENT), "logs": {"force_flush_interval": 5}},
        ["Under path : /logs | Error : Must validate at least one schema (anyOf)"],
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_configs_are_refused_naming_the_field(agent: Agent, name: str) -> None:
    config, expected = REFUSED[name]
    result = agent.fetch(config)
    assert result.rc == 1, result.output
    assert "E! Invalid Json input schema." in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert FAILED in result.stderr
    assert "Configuration validation succeeded" not in result.stdout
    assert agent.stored() == ["file_cwagent.json.tmp"]
    assert agent.status()["configstatus"] == "not configured"


def test_broken_json_is_refused(agent: Agent) -> None:
    result = agent.fetch('{"agent": {"metrics_collection_interval": 60,}}')
    assert result.rc == 1
    assert "E! Failed to generate merged json config" in result.stderr
    assert FAILED in result.stderr
    assert not agent.toml.exists()


def test_every_error_is_reported_not_only_the_first(agent: Agent) -> None:
    config = configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "retention_in_days", value=45)
    config["agent"]["metrics_collection_interval"] = "60"
    result = agent.fetch(config)
    assert result.rc == 1
    assert result.stderr.count("Under path : ") == 2


def test_unknown_top_level_key_is_accepted_as_the_agent_does(agent: Agent) -> None:
    """The published schema allows extra top-level keys; the agent ignores them silently."""
    config = {"agent": dict(configs.AGENT), "log": configs.MONGOD_LOG["logs"]}
    result = agent.fetch(config)
    assert result.rc == 0, result.output
    assert "W! [double] top-level key 'log' is accepted and ignored" in result.stderr
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    assert "inputs" not in toml


def test_differing_retention_for_one_log_group_is_refused(agent: Agent) -> None:
    config = configs.with_logs(
        configs.log_entry("/var/log/syslog", "/clinic/test/system", retention=30),
        configs.log_entry("/var/log/auth.log", "/clinic/test/system", retention=365),
    )
    result = agent.fetch(config)
    assert result.rc == 1
    assert (
        "Under path : /logs/logs_collected/files/collect_list/1/retention_in_days | Error : "
        "Different retention_in_days values can't be set for the same log group: "
        "/clinic/test/system"
    ) in result.stderr


def test_run_as_user_must_exist(agent: Agent) -> None:
    config = configs.changed(configs.MONGOD_LOG, "agent", "run_as_user", value="nobody-here")
    result = agent.fetch(config)
    assert result.rc == 1
    assert "Under path : /agent/run_as_user | Error : user: unknown user nobody-here" in (
        result.stderr
    )


def test_refused_config_leaves_the_stored_one_in_place(agent: Agent) -> None:
    assert agent.fetch(configs.SYSLOG_AUTH).rc == 0
    toml_before = agent.toml.read_text(encoding="utf-8")
    stored_before = (agent.json_dir / "file_cwagent.json").read_text(encoding="utf-8")
    bad = configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "file_path", drop=True)
    assert agent.fetch(bad, name="/etc/clinic/other.json").rc == 1
    assert agent.stored() == ["file_cwagent.json", "file_other.json.tmp"]
    assert agent.toml.read_text(encoding="utf-8") == toml_before
    assert (agent.json_dir / "file_cwagent.json").read_text(encoding="utf-8") == stored_before
    assert agent.status()["configstatus"] == "configured"
