"""amazon-cloudwatch-agent-ctl: status, config storage, the fetch-config pitfalls, flags."""

from __future__ import annotations

import json
import tomllib

from . import configs
from .conftest import VERSION, Agent

STATUS_KEYS = ["status", "starttime", "configstatus", "version"]


def test_status_before_any_config(agent: Agent) -> None:
    result = agent.ctl("-a", "status")
    assert result.rc == 0
    assert list(json.loads(result.stdout)) == STATUS_KEYS
    assert json.loads(result.stdout) == {
        "status": "stopped",
        "starttime": "",
        "configstatus": "not configured",
        "version": VERSION,
    }


def test_fetch_config_without_restart_configures_but_does_not_start(agent: Agent) -> None:
    assert agent.fetch(configs.FULL).rc == 0
    assert agent.status() == {
        "status": "stopped",
        "starttime": "",
        "configstatus": "configured",
        "version": VERSION,
    }


def test_status_without_version_file_fails_like_the_script(agent: Agent) -> None:
    (agent.agent_dir / "bin" / "CWAGENT_VERSION").unlink()
    result = agent.ctl("-a", "status")
    assert result.rc == 1
    assert "CWAGENT_VERSION" in result.stderr


def test_source_outside_the_agent_dir_is_kept_and_rerun_is_stable(agent: Agent) -> None:
    source = agent.path("/etc/clinic/cwagent.json")
    assert agent.fetch(configs.MONGOD_LOG).rc == 0
    first = (agent.json_dir / "file_cwagent.json").read_bytes()
    assert source.exists()
    result = agent.ctl("-a", "fetch-config", "-m", "ec2", "-c", "file:/etc/clinic/cwagent.json")
    assert result.rc == 0
    assert source.exists()
    assert agent.stored() == ["file_cwagent.json"]
    assert (agent.json_dir / "file_cwagent.json").read_bytes() == first


def test_fetch_config_replaces_the_whole_config_set(agent: Agent) -> None:
    assert agent.fetch(configs.SYSLOG_AUTH, name="/etc/clinic/a.json").rc == 0
    agent.write("/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json", {"agent": {}})
    assert agent.fetch(configs.MONGOD_LOG, name="/etc/clinic/b.json").rc == 0
    assert agent.stored() == ["file_b.json"]
    assert not agent.path(
        "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    ).exists()
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    assert [e["file_path"] for e in toml["inputs"]["files"]["file_config"]] == [
        "/var/log/mongodb/mongod.log"
    ]


def test_source_inside_the_config_dir_is_consumed(agent: Agent) -> None:
    """Issue #594/#1218: a source kept in amazon-cloudwatch-agent.d is deleted by fetch-config."""
    inside = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/cw.json"
    first = agent.fetch(configs.MONGOD_LOG, name=inside)
    assert first.rc == 0, first.output
    assert agent.stored() == ["file_cw.json"]
    again = agent.ctl("-a", "fetch-config", "-m", "ec2", "-c", f"file:{inside}")
    assert again.rc == 1
    assert "no such file or directory" in again.stderr
    assert agent.stored() == ["file_cw.json"]


def test_source_named_like_a_stored_file_gets_a_second_prefix(agent: Agent) -> None:
    stored = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_cw.json"
    assert agent.fetch(configs.MONGOD_LOG, name=stored).rc == 0
    assert agent.stored() == ["file_file_cw.json"]


def test_legacy_json_used_as_source_is_deleted(agent: Agent) -> None:
    legacy = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    assert agent.fetch(configs.MONGOD_LOG, name=legacy).rc == 0
    assert not agent.path(legacy).exists()
    assert agent.stored() == ["file_amazon-cloudwatch-agent.json"]


def test_append_config_merges_with_stored_configs(agent: Agent) -> None:
    assert agent.fetch(configs.SYSLOG_AUTH, name="/etc/clinic/base.json").rc == 0
    agent.write("/etc/clinic/extra.json", configs.HOST_METRICS)
    result = agent.ctl("-a", "append-config", "-m", "ec2", "-c", "file:/etc/clinic/extra.json")
    assert result.rc == 0, result.output
    assert agent.stored() == ["file_base.json", "file_extra.json"]
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    assert "mem" in toml["inputs"]
    assert len(toml["inputs"]["files"]["file_config"]) == 2


def test_append_config_with_a_conflicting_value_is_refused(agent: Agent) -> None:
    assert agent.fetch(configs.SYSLOG_AUTH, name="/etc/clinic/base.json").rc == 0
    other = configs.changed(configs.MONGOD_LOG, "agent", "metrics_collection_interval", value=10)
    agent.write("/etc/clinic/extra.json", other)
    result = agent.ctl("-a", "append-config", "-m", "ec2", "-c", "file:/etc/clinic/extra.json")
    assert result.rc == 1
    assert (
        "Under path : /agent/metrics_collection_interval | Error : "
        "Different values are specified for metrics_collection_interval"
    ) in result.stderr


def test_remove_config_deletes_the_stored_file_and_the_last_one_unconfigures(
    agent: Agent,
) -> None:
    assert agent.fetch(configs.SYSLOG_AUTH, name="/etc/clinic/base.json").rc == 0
    agent.write("/etc/clinic/extra.json", configs.HOST_METRICS)
    assert agent.ctl("-a", "append-config", "-c", "file:/etc/clinic/extra.json").rc == 0
    removed = agent.ctl("-a", "remove-config", "-c", "file:/etc/clinic/extra.json")
    assert removed.rc == 0, removed.output
    assert agent.stored() == ["file_base.json"]
    assert "mem" not in tomllib.loads(agent.toml.read_text(encoding="utf-8")).get("inputs", {})
    last = agent.ctl("-a", "remove-config", "-c", "all")
    assert last.rc == 0
    assert "all amazon-cloudwatch-agent configurations have been removed" in last.stdout
    assert agent.status()["configstatus"] == "not configured"


def test_all_is_ignored_outside_remove_config(agent: Agent) -> None:
    result = agent.ctl("-a", "fetch-config", "-c", "all")
    assert result.rc == 0
    assert 'ignore cwa configuration "all"' in result.stdout
    assert agent.stored() == []


def test_missing_source_file_fails(agent: Agent) -> None:
    result = agent.ctl("-a", "fetch-config", "-m", "ec2", "-c", "file:/etc/clinic/none.json")
    assert result.rc == 1
    assert "open /etc/clinic/none.json: no such file or directory" in result.stderr


def test_ssm_source_is_refused_by_the_double(agent: Agent) -> None:
    result = agent.ctl("-a", "fetch-config", "-m", "ec2", "-c", "ssm:AmazonCloudWatch-linux")
    assert result.rc == 1
    assert "[double] ssm:" in result.stderr


def test_ec2_mode_without_instance_metadata_fails(agent: Agent) -> None:
    agent.path("/etc/amazon-cloudwatch-agent-double/imds-region").unlink()
    result = agent.fetch(configs.MONGOD_LOG)
    assert result.rc == 1
    assert "please check if you can access the metadata service" in result.stderr
    assert agent.stored() == []


def test_on_premise_needs_a_region_from_the_credentials_profile(agent: Agent) -> None:
    agent.path("/etc/amazon-cloudwatch-agent-double/imds-region").unlink()
    agent.write("/etc/clinic/cwagent.json", configs.MONGOD_LOG)
    args = ("-a", "fetch-config", "-m", "onPremise", "-c", "file:/etc/clinic/cwagent.json")
    refused = agent.ctl(*args)
    assert refused.rc == 1
    assert "please make sure the credentials and region set correctly" in refused.stderr
    agent.write(
        "/opt/aws/amazon-cloudwatch-agent/etc/common-config.toml",
        '[credentials]\nshared_credential_profile = "cwagent"\n'
        'shared_credential_file = "/root/.aws/credentials"\n',
    )
    agent.write("/root/.aws/credentials", "[cwagent]\naws_access_key_id = x\nregion = eu-west-1\n")
    accepted = agent.ctl(*args)
    assert accepted.rc == 0, accepted.output
    toml = tomllib.loads(agent.toml.read_text(encoding="utf-8"))
    assert toml["double"] == {"mode": "onPremise", "region": "eu-west-1"}


def test_invalid_mode_is_rejected(agent: Agent) -> None:
    result = agent.ctl("-a", "fetch-config", "-m", "onPrem", "-c", "file:/x.json")
    assert result.rc == 1
    assert "Invalid mode: onPrem" in result.stderr


def test_invalid_action_is_rejected(agent: Agent) -> None:
    result = agent.ctl("-a", "reload")
    assert result.rc == 1
    assert "Invalid action: reload" in result.stderr


def test_set_log_level(agent: Agent) -> None:
    assert agent.ctl("-a", "set-log-level", "-l", "DEBUG").rc == 0
    env = json.loads((agent.agent_dir / "etc" / "env-config.json").read_text(encoding="utf-8"))
    assert env["CWAGENT_LOG_LEVEL"] == "DEBUG"
    bad = agent.ctl("-a", "set-log-level", "-l", "TRACE")
    assert bad.rc == 1
    assert "Invalid log level: TRACE" in bad.stderr
