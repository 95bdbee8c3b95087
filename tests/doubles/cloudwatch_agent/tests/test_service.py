"""The service process: started by `-s`, stays up, logs, refuses to run without a config."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

from tests.doubles.polling import wait_for

from . import configs
from .conftest import PACKAGE, REPO, Agent, install_layout, pid_alive


def running_pid(agent: Agent) -> int:
    status = agent.status()
    assert status["status"] == "running", status
    pid = agent.agent_pid()
    assert pid and pid_alive(pid)
    return pid


def test_fetch_config_with_s_starts_the_service(agent: Agent) -> None:
    result = agent.fetch(configs.FULL, "-s")
    assert result.rc == 0, result.output
    status = agent.status()
    assert status["status"] == "running"
    assert status["configstatus"] == "configured"
    started = datetime.datetime.fromisoformat(status["starttime"])
    assert started.utcoffset() == datetime.timedelta(0)
    age = datetime.datetime.now(datetime.UTC) - started
    assert datetime.timedelta(seconds=-2) <= age < datetime.timedelta(minutes=2)
    pid = running_pid(agent)
    log = wait_for(
        lambda: (
            "I! [double] test double" in agent.log_file.read_text() and agent.log_file.read_text()
        ),
        10,
        "the agent's start lines",
    )
    assert "I! Config has been translated into TOML" in log
    assert "I! Loaded inputs: disk mem procstat logfile" in log
    assert "I! Loaded outputs: cloudwatch cloudwatchlogs" in log
    targets = [str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    assert targets
    assert not [target for target in targets if target.startswith("socket:")]
    stop = agent.ctl("-a", "stop")
    assert stop.rc == 0
    wait_for(lambda: not pid_alive(pid), 10, "the agent to exit")
    assert agent.status()["status"] == "stopped"
    assert "Received signal: SIGTERM" in agent.log_file.read_text()


def test_s_restarts_a_running_service(agent: Agent) -> None:
    assert agent.fetch(configs.MONGOD_LOG, "-s").rc == 0
    first = running_pid(agent)
    assert agent.fetch(configs.SYSLOG_AUTH, "-s").rc == 0
    second = running_pid(agent)
    assert second != first
    assert not pid_alive(first)


def test_refused_config_with_s_leaves_the_running_service_alone(agent: Agent) -> None:
    assert agent.fetch(configs.MONGOD_LOG, "-s").rc == 0
    pid = running_pid(agent)
    bad = configs.changed(configs.MONGOD_LOG, "agent", "metrics_collection_interval", value="x")
    assert agent.fetch(bad, "-s").rc == 1
    assert running_pid(agent) == pid


def test_start_and_stop_report_when_nothing_to_do(agent: Agent) -> None:
    assert "amazon-cloudwatch-agent has already been stopped" in agent.ctl("-a", "stop").stdout
    assert agent.fetch(configs.MONGOD_LOG, "-s").rc == 0
    again = agent.ctl("-a", "start")
    assert "amazon-cloudwatch-agent has already been started" in again.stdout


def test_start_without_config_applies_the_default_config(agent: Agent) -> None:
    result = agent.ctl("-a", "start")
    assert result.rc == 0, result.output
    assert "Applying amazon-cloudwatch-agent default configuration." in result.stdout
    assert agent.stored() == ["default"]
    running_pid(agent)


def test_default_config_needs_the_cwagent_user(tmp_path: Path, schema_path: Path) -> None:
    root = tmp_path / "host"
    install_layout(root, schema_path, users=("root",))
    bare = Agent(root)
    result = bare.ctl("-a", "start")
    assert result.rc == 1
    assert "unknown user cwagent" in result.stderr
    assert bare.status()["status"] == "stopped"


def run_service(agent: Agent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, "start-agent"],
        cwd=REPO,
        env=agent.env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_service_without_any_config_exits_0_without_running(agent: Agent) -> None:
    done = run_service(agent)
    assert done.returncode == 0
    assert "I! No json config files found, please provide config, exit now" in (
        agent.log_file.read_text()
    )
    assert not agent.pid_file.exists()


def test_service_with_an_invalid_stored_config_exits_1(agent: Agent) -> None:
    bad = configs.changed(configs.MONGOD_LOG, "logs", "logs_collected", "files", value={})
    agent.write(
        "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_cwagent.json", bad
    )
    done = run_service(agent)
    assert done.returncode == 1
    log = agent.log_file.read_text()
    assert "Under path : /logs/logs_collected/files | Error : collect_list is required" in log
    assert "E! Cannot translate JSON config into TOML" in log


def test_service_ignores_pending_tmp_files(agent: Agent) -> None:
    agent.write(
        "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_cwagent.json.tmp",
        configs.MONGOD_LOG,
    )
    assert run_service(agent).returncode == 0
    assert "No json config files found" in agent.log_file.read_text()
