"""The cloudwatch_agent role's configuration template, rendered by Ansible, against the schema.

One ansible-playbook run (local connection, no facts) renders roles/cloudwatch_agent/templates/
amazon-cloudwatch-agent.json.j2 with the role's defaults and vars for three hosts: an API host, a
MongoDB host and a host whose overrides carry a typo. The rendered files are validated with
jsonschema against the schema the lab's agent package installs, the project's statement of the
agent's format (tests/doubles/cloudwatch_agent/agent_schema.json), and with the checker the role
installs as the template's `validate` step. When AWS's published schema is beside the checkout
(../shared/vendor/amazon-cloudwatch-agent/schema.json), a cross-check gives every configuration
here to it too and expects the same verdicts; without that file it is skipped, naming it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.doubles.cloudwatch_agent.packaging import DEFAULT_SCHEMA
from tests.doubles.shared_files import shared_file

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "cloudwatch_agent"
VENDOR_SCHEMA = "vendor/amazon-cloudwatch-agent/schema.json"
PREFIX = "/clinic/stage"
HOSTS: dict[str, dict[str, Any]] = {
    "app": {"cloudwatch_agent_log_sets": ["app", "system"]},
    "mongodb": {"cloudwatch_agent_log_sets": ["mongodb", "system"]},
    # A typo in an override (force_flush_intervall) must not reach the agent.
    "typo": {
        "cloudwatch_agent_log_sets": ["system"],
        "cloudwatch_agent_config_overrides": {"logs": {"force_flush_intervall": 10}},
    },
}
PLAYBOOK = """
- name: Render the CloudWatch agent configuration
  hosts: all
  gather_facts: false
  vars_files: [{vars}]
  tasks:
    - name: Render the template
      ansible.builtin.template:
        src: {template}
        dest: "{{{{ out_dir }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0644"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Host name -> the configuration Ansible rendered for it."""
    work = tmp_path_factory.mktemp("cwagent")
    common = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "cloudwatch_agent_version": "1.300070.0-1",
        "cloudwatch_agent_log_group_prefix": PREFIX,
    }
    # The role's defaults as inventory group vars and its vars/main.yml as play vars keep Ansible's
    # precedence of a role: defaults < host variables < role vars.
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    hosts = {name: common | host_vars for name, host_vars in HOSTS.items()}
    inventory = {"all": {"vars": defaults, "hosts": hosts}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "render.yml").write_text(
        PLAYBOOK.format(
            vars=ROLE / "vars" / "main.yml",
            template=ROLE / "templates" / "amazon-cloudwatch-agent.json.j2",
        )
    )
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(work / "inventory.yml"),
            "-e",
            f"out_dir={work}",
            str(work / "render.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {name: json.loads((work / f"{name}.json").read_text()) for name in HOSTS}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads(DEFAULT_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema)


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    """The role's files/clinic-cwagent-config-check.py, imported."""
    path = ROLE / "files" / "clinic-cwagent-config-check.py"
    spec = importlib.util.spec_from_file_location("cwagent_config_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def errors(validator: jsonschema.Draft4Validator, config: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(config)]


def log_groups(config: dict[str, Any]) -> dict[str, str]:
    items = config["logs"]["logs_collected"]["files"]["collect_list"]
    return {item["log_group_name"]: item["file_path"] for item in items}


@pytest.mark.parametrize("host", ["app", "mongodb"])
def test_rendered_config_is_valid_for_the_agent(rendered, validator, host) -> None:  # noqa: ANN001
    assert errors(validator, rendered[host]) == []


def test_app_host_ships_api_and_system_logs_only(rendered) -> None:  # noqa: ANN001
    assert log_groups(rendered["app"]) == {
        f"{PREFIX}/app": "/var/log/clinic-api/app.log",
        f"{PREFIX}/syslog": "/var/log/syslog",
        f"{PREFIX}/auth": "/var/log/auth.log",
    }
    procstat = rendered["app"]["metrics"]["metrics_collected"]["procstat"]
    assert [sorted(p) for p in procstat] == [["measurement", "pattern"]]


def test_mongodb_host_ships_mongod_and_system_logs_only(rendered) -> None:  # noqa: ANN001
    assert log_groups(rendered["mongodb"]) == {
        f"{PREFIX}/mongodb": "/var/log/mongodb/mongod.log",
        f"{PREFIX}/syslog": "/var/log/syslog",
        f"{PREFIX}/auth": "/var/log/auth.log",
    }
    procstat = rendered["mongodb"]["metrics"]["metrics_collected"]["procstat"]
    assert [p.get("exe") for p in procstat] == ["mongod"]


def test_config_carries_host_metrics_dimensions_and_no_retention(rendered) -> None:  # noqa: ANN001
    config = rendered["app"]
    assert config["agent"]["metrics_collection_interval"] == 60
    assert config["agent"]["region"] == "ap-south-1"
    collected = config["metrics"]["metrics_collected"]
    assert {"mem", "disk", "swap", "procstat"} <= set(collected)
    assert config["metrics"]["append_dimensions"] == {
        "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
        "ImageId": "${aws:ImageId}",
        "InstanceId": "${aws:InstanceId}",
        "InstanceType": "${aws:InstanceType}",
    }
    # Retention is set on the log groups from the controller, never by the agent.
    items = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert all("retention_in_days" not in item for item in items)
    assert {item["log_stream_name"] for item in items} == {"{instance_id}"}


def test_a_typo_in_the_overrides_is_rejected_by_the_schema(rendered, validator) -> None:  # noqa: ANN001
    assert rendered["typo"]["logs"]["force_flush_intervall"] == 10
    found = errors(validator, rendered["typo"])
    assert any("force_flush_intervall" in message for message in found)


BROKEN = {
    "retention-not-allowed": (
        lambda c: c["logs"]["logs_collected"]["files"]["collect_list"][0].update(
            retention_in_days=45
        ),
        "45 is not one of",
    ),
    "unknown-collect-list-key": (
        lambda c: c["logs"]["logs_collected"]["files"]["collect_list"][0].update(log_group="x"),
        "Additional properties are not allowed",
    ),
    "procstat-without-selector": (
        lambda c: c["metrics"]["metrics_collected"]["procstat"][0].pop("pattern"),
        "is not valid under any of the given schemas",
    ),
    "file-path-missing": (
        lambda c: c["logs"]["logs_collected"]["files"]["collect_list"][0].pop("file_path"),
        "'file_path' is a required property",
    ),
}


@pytest.mark.parametrize(("breaks", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_the_schema_rejects_broken_configs(rendered, validator, breaks, message) -> None:  # noqa: ANN001
    config = copy.deepcopy(rendered["app"])
    breaks(config)
    assert any(message in error for error in errors(validator, config))


def test_the_role_checker_accepts_the_rendered_configs_and_rejects_the_typo(
    rendered,  # noqa: ANN001
    checker,  # noqa: ANN001
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = DEFAULT_SCHEMA
    codes = {}
    for name, config in rendered.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        codes[name] = checker.main([str(path), "--schema", str(schema)])
    assert codes == {"app": 0, "mongodb": 0, "typo": 1}
    assert "force_flush_intervall" in capsys.readouterr().out


def test_the_role_checker_rejects_a_file_that_is_not_json(checker, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "broken.json"
    path.write_text('{"agent": ')
    assert checker.main([str(path), "--schema", str(DEFAULT_SCHEMA)]) == 1


def test_the_vendor_schema_gives_the_same_verdicts(rendered, validator) -> None:  # noqa: ANN001
    """Cross-check: AWS's schema judges the rendered and the broken configs as ours does."""
    vendor = json.loads(shared_file(VENDOR_SCHEMA).read_text(encoding="utf-8"))
    theirs = jsonschema.Draft4Validator(vendor)
    cases = dict(rendered)
    for name, (breaks, _) in BROKEN.items():
        config = copy.deepcopy(rendered["app"])
        breaks(config)
        cases[name] = config
    verdicts = {name: (validator.is_valid(c), theirs.is_valid(c)) for name, c in cases.items()}
    assert {name: mine for name, (mine, _) in verdicts.items()} == {
        "app": True,
        "mongodb": True,
        "typo": False,
        **dict.fromkeys(BROKEN, False),
    }
    assert {name: t for name, (_, t) in verdicts.items() if t != verdicts[name][0]} == {}
