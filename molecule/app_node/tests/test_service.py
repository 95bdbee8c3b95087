"""The converged API nodes as the load balancer, an outsider, systemd and the service see them.

The last tests run converge.yml once more, verbose and with --diff, adding a harmless variable to
the environment file, so that the template holding the secrets changes while Ansible is as talkative
as it gets; the variable stays until the next run that does not give it.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

SERVICE = "clinic-api"
BASE = f"/opt/{SERVICE}"
PORT = 3000
LIVE_RELEASE = "1.0.0"
ENV_FILE = f"/etc/{SERVICE}/app.env"
LOG_FILE = f"/var/log/{SERVICE}/app.log"
PROBE_VARIABLE = "SCENARIO_VERBOSE_RUN"


@pytest.fixture
def target(node, host_named):  # noqa: ANN001, ANN201
    return host_named(node.name)


def env_file_values(text: str) -> dict[str, str]:
    """KEY -> value of the role's KEY="value" lines (with its \\ and \" escapes undone)."""
    values = {}
    for key, quoted in re.findall(r'^([A-Z_][A-Z0-9_]*)="((?:[^"\\]|\\.)*)"$', text, re.M):
        values[key] = re.sub(r"\\(.)", r"\1", quoted)
    return values


def test_health_and_version_answer_through_the_network(node, lb, tcp_state, http_get):  # noqa: ANN001, ANN201
    assert tcp_state(lb, node.address, PORT) == "open"
    status, body = http_get(node.address, "/healthz")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok", "version": LIVE_RELEASE}
    status, body = http_get(node.address, "/version")
    assert status == 200, body
    assert json.loads(body)["version"] == LIVE_RELEASE


def test_port_is_dropped_for_hosts_outside_the_allow_list(node, outsider, tcp_state):  # noqa: ANN001, ANN201
    # The API listens on all addresses: without the firewall the answer would be "open".
    assert tcp_state(outsider, node.address, PORT) == "timeout"


def test_process_runs_as_the_service_user(target):  # noqa: ANN001, ANN201
    pid = target.check_output("systemctl show --property MainPID --value %s", SERVICE)
    assert pid.isdigit() and int(pid) > 0, pid
    uids = target.check_output("awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/%s/status", pid).split()
    assert set(uids) == {target.check_output("id -u %s", SERVICE)}
    cmdline = target.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert f"{BASE}/current/server.js" in cmdline


def test_unit_is_sandboxed_and_stops_gracefully(target):  # noqa: ANN001, ANN201
    wanted = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillSignal": "15",
        "TimeoutStopUSec": "30s",
        "User": SERVICE,
        "ActiveState": "active",
        "UnitFileState": "enabled",
    }
    shown = target.check_output(
        "systemctl show %s --property %s", SERVICE, ",".join(wanted)
    ).splitlines()
    assert dict(line.split("=", 1) for line in shown) == wanted


def test_env_file_holds_the_secret_from_ssm_readable_by_the_service_only(target, secret):  # noqa: ANN001, ANN201
    env_file = target.file(ENV_FILE)
    assert (env_file.user, env_file.group, env_file.mode) == ("root", SERVICE, 0o640)
    values = env_file_values(target.check_output("cat %s", ENV_FILE))
    assert values["JWT_SECRET"] == secret("app_jwt_secret")
    assert f":{secret('mongodb_app_password')}@" in values["MONGODB_URI"]


def test_current_points_at_the_live_release(target, current):  # noqa: ANN001, ANN201
    assert current(target) == f"releases/{LIVE_RELEASE}"
    assert target.file(f"{BASE}/current/VERSION").content_string.strip() == LIVE_RELEASE


def test_requests_are_logged_as_json_without_secrets(node, target, http_get, secret):  # noqa: ANN001, ANN201
    path = f"/scenario-log-probe-{uuid.uuid4().hex}"
    status, _ = http_get(node.address, path)
    assert status == 404
    lines = target.check_output("cat %s", LOG_FILE).splitlines()
    assert lines, LOG_FILE
    last = json.loads(lines[-1])
    assert (last["method"], last["path"], last["status"]) == ("GET", path, 404)
    assert {"ts", "level", "requestId", "actorId", "route", "msg", "duration_ms"} <= last.keys()
    for value in (secret("app_jwt_secret"), secret("mongodb_app_password")):
        assert not [line for line in lines if value in line]


def as_service(target, command: str) -> tuple[int, str]:  # noqa: ANN001
    """Run a command as the service user inside the service's own mount namespace (its sandbox)."""
    pid = target.check_output("systemctl show --property MainPID --value %s", SERVICE)
    result = target.run(f"nsenter --target {pid} --mount -- runuser -u {SERVICE} -- {command}")
    return result.rc, result.stderr


def test_service_cannot_write_its_code_but_can_write_uploads(target):  # noqa: ANN001, ANN201
    rc, stderr = as_service(target, f"touch {BASE}/current/x")
    assert rc != 0 and "Read-only file system" in stderr, stderr
    assert not target.file(f"{BASE}/current/x").exists
    # The same as a plain login of the user, outside the sandbox: the code is root's.
    assert target.run("runuser -u %s -- touch %s", SERVICE, f"{BASE}/current/x").rc != 0
    probe = f"scenario-upload-{uuid.uuid4().hex}"
    rc, stderr = as_service(target, f"touch {BASE}/current/uploads/{probe}")
    try:
        assert rc == 0, stderr
        assert target.file(f"{BASE}/shared/uploads/{probe}").user == SERVICE
    finally:
        target.run("rm -f %s", f"{BASE}/shared/uploads/{probe}")


@pytest.fixture(scope="module")
def verbose_run(converge):  # noqa: ANN001, ANN201
    """converge.yml, -v --diff, with an extra variable that rewrites the environment file."""
    token = uuid.uuid4().hex
    environment = json.dumps({"app_node_environment": {PROBE_VARIABLE: token}})
    return token, converge(LIVE_RELEASE, "-v", "--diff", "-e", environment)


def test_verbose_diff_run_never_prints_a_secret(verbose_run, secret, recap, tail, changes):  # noqa: ANN001, ANN201
    _, result = verbose_run
    assert result.returncode == 0, tail(result)
    assert {name: c["failed"] for name, c in recap(result).items()} == {"app1": 0, "app2": 0}
    # The environment file did change in this run: its diff and result were the ones at risk.
    written = [c for c in changes(result) if "config | Write the environment file" in c]
    assert len(written) == 2, changes(result)
    output = result.stdout + result.stderr
    for name in ("app_jwt_secret", "mongodb_app_password"):
        assert secret(name) not in output, f"the {name} appears in the output of a verbose run"


def test_changed_environment_reaches_the_service(node, host_named, verbose_run, http_get):  # noqa: ANN001, ANN201
    token, _ = verbose_run
    target = host_named(node.name)
    assert env_file_values(target.check_output("cat %s", ENV_FILE))[PROBE_VARIABLE] == token
    pid = target.check_output("systemctl show --property MainPID --value %s", SERVICE)
    environ = target.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines()
    assert f"{PROBE_VARIABLE}={token}" in environ
    assert http_get(node.address, "/healthz")[0] == 200
