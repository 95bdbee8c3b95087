"""The converged replica set as clients, operators and the members themselves see it."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable

import pytest
import yaml
from pymongo.errors import OperationFailure
from pymongo.write_concern import WriteConcern

UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
TEST_MACHINE = "172.30.43.1"


def failure_code(call: Callable[[], object]) -> int:
    """The server's error code of a command that must be refused."""
    with pytest.raises(OperationFailure) as refused:
        call()
    return refused.value.code


@pytest.fixture(scope="module")
def conf(host_named):  # noqa: ANN001, ANN201
    """Each member's /etc/mongod.conf, parsed."""
    return lambda member: yaml.safe_load(
        host_named(member.name).file("/etc/mongod.conf").content_string
    )


# --- Topology ---


def test_one_primary_and_two_healthy_secondaries(replset, members):  # noqa: ANN001, ANN201
    status = replset.wait_healthy()
    assert status["set"] == "rs0"
    assert sorted(m["name"] for m in status["members"]) == [member.host for member in members]
    assert sorted(m["stateStr"] for m in status["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert all(m["health"] == 1 for m in status["members"])


def test_hello_lists_exactly_the_members(replset, members):  # noqa: ANN001, ANN201
    replset.wait_healthy()
    hello = replset.admin.admin.command("hello")
    assert hello["setName"] == "rs0"
    assert sorted(hello["hosts"]) == [member.host for member in members]


# --- Authentication and authorization ---


def test_unauthenticated_clients_cannot_list_databases(mongo):  # noqa: ANN001, ANN201
    anonymous = mongo()
    assert failure_code(lambda: anonymous.admin.command("listDatabases")) == UNAUTHORIZED


def test_wrong_admin_password_is_refused(mongo, password):  # noqa: ANN001, ANN201
    wrong = mongo("admin", password("admin") + "x")
    assert failure_code(lambda: wrong.admin.command("listDatabases")) == AUTHENTICATION_FAILED


def test_app_user_reads_and_writes_its_database_only(mongo, password):  # noqa: ANN001, ANN201
    app = mongo("clinic_app", password("app"), source="clinic")
    marker = {"_id": f"app-{uuid.uuid4().hex}"}
    app.clinic.verify_app.insert_one(marker)
    assert app.clinic.verify_app.find_one(marker) == marker
    assert failure_code(lambda: app.admin.verify_app.find_one()) == UNAUTHORIZED
    assert failure_code(lambda: app.admin.command("replSetGetStatus")) == UNAUTHORIZED


def test_monitor_reads_the_set_status_and_cannot_write(mongo, password):  # noqa: ANN001, ANN201
    monitor = mongo("monitor", password("monitor"))
    assert monitor.admin.command("replSetGetStatus")["set"] == "rs0"
    assert failure_code(lambda: monitor.clinic.verify_app.insert_one({})) == UNAUTHORIZED


def test_backup_user_authenticates_with_the_backup_role(mongo, password):  # noqa: ANN001, ANN201
    backup = mongo("backup", password("backup"))
    auth = backup.admin.command("connectionStatus")["authInfo"]
    assert auth["authenticatedUsers"] == [{"user": "backup", "db": "admin"}]
    assert {"role": "backup", "db": "admin"} in auth["authenticatedUserRoles"]
    assert failure_code(lambda: backup.clinic.verify_app.insert_one({})) == UNAUTHORIZED


# --- Replication ---


def test_majority_write_reaches_every_secondary(replset, mongo, password, wait_for):  # noqa: ANN001, ANN201
    secondaries = [
        m["name"] for m in replset.wait_healthy()["members"] if m["stateStr"] == "SECONDARY"
    ]
    marker = {"_id": f"replication-{uuid.uuid4().hex}"}
    majority = WriteConcern("majority", wtimeout=30000)
    replset.admin.clinic.get_collection("verify_replication", write_concern=majority).insert_one(
        marker
    )
    for host in secondaries:
        direct = mongo("admin", password("admin"), address=host, readPreference="secondary")
        collection = direct.clinic.verify_replication
        # The double applies the oplog on secondaries with a lag, as mongod does.
        wait_for(lambda c=collection: c.find_one(marker), 10, f"{marker} on {host}")


# --- The members themselves ---


def test_mongod_runs_as_mongodb(host_named, member):  # noqa: ANN001, ANN201
    node = host_named(member.name)
    assert node.service("mongod").is_running
    assert node.service("mongod").is_enabled
    processes = node.process.filter(comm="mongod")
    assert processes
    assert {process.user for process in processes} == {"mongodb"}


def test_mongod_conf_enables_the_set_and_authorization(conf, member):  # noqa: ANN001, ANN201
    settings = conf(member)
    assert settings["replication"]["replSetName"] == "rs0"
    assert settings["security"]["authorization"] == "enabled"
    bind = {address.strip() for address in settings["net"]["bindIp"].split(",")}
    assert {"127.0.0.1", member.address} <= bind


def test_keyfile_is_the_ssm_secret_readable_by_mongodb_only(host_named, conf, secret, member):  # noqa: ANN001, ANN201
    keyfile = host_named(member.name).file(conf(member)["security"]["keyFile"])
    assert keyfile.mode == 0o400
    assert keyfile.user == "mongodb"
    # Compared without printing either value: mongod ignores whitespace in a keyFile.
    on_host = "".join(keyfile.content_string.split())
    same = hmac.compare_digest(on_host, "".join(secret("mongodb_keyfile").split()))
    assert same, "the keyFile is not the SSM secret"


def test_port_listens_on_loopback_and_the_member_address_only(host_named, member):  # noqa: ANN001, ANN201
    listening = host_named(member.name).check_output("ss -Hltn 'sport = :27017'")
    addresses = {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in listening.splitlines()}
    assert addresses == {"127.0.0.1", member.address}


def test_server_package_is_the_pinned_version_and_held(host_named, member):  # noqa: ANN001, ANN201
    node = host_named(member.name)
    assert node.package("mongodb-org-server").version.startswith("7.0.14")
    assert "mongodb-org-server" in node.check_output("apt-mark showhold").split()


def test_transparent_huge_pages_are_handled_before_mongod_starts(host_named, member):  # noqa: ANN001, ANN201
    node = host_named(member.name)
    after = node.check_output("systemctl show mongod.service -p After --value").split()
    units = [
        unit
        for unit in after
        if unit.endswith(".service")
        and "transparent_hugepage" in node.run("systemctl cat %s", unit).stdout
    ]
    assert len(units) == 1, after
    unit = units[0]
    # Started whenever mongod is, at boot included.
    wanted = node.check_output("systemctl show mongod.service -p Wants --value").split()
    assert unit in wanted or node.run("systemctl is-enabled %s", unit).stdout.strip() == "enabled"
    props = dict(
        line.split("=", 1)
        for line in node.check_output(
            "systemctl show %s -p ConditionResult -p ConditionTimestampMonotonic -p Result", unit
        ).splitlines()
    )
    # The unit ran at boot: its condition was evaluated.
    assert props["ConditionTimestampMonotonic"] != "0", props
    if node.run("test -w %s", THP).rc != 0:
        # Its condition skips it where /sys is read-only, and nothing else may skip it.
        assert props["ConditionResult"] == "no", props
        assert node.run("systemd-detect-virt --container").rc == 0
        pytest.skip("/sys is read-only in a container: huge pages cannot be turned off; a VM can")
    assert props["ConditionResult"] == "yes", props
    assert props["Result"] == "success", props
    assert "[never]" in node.file(THP).content_string


def test_a_data_device_is_left_alone_in_a_container(converge, recap, changes, tail):  # noqa: ANN001, ANN201
    """A container cannot format or mount the data volume: the role says so and goes on, and the
    converged set does not change. (Formatting it XFS and mounting it on the dbPath needs a host
    that is not a container.)"""
    result = converge("-e", "mongodb_replicaset_data_device=/dev/xvdf")
    assert result.returncode == 0, tail(result)
    assert all(c["changed"] == 0 for c in recap(result).values()), changes(result)
    assert "cannot format or mount /dev/xvdf" in " ".join(result.stdout.split()), tail(result)


def test_mongodb_port_is_open_to_the_app_network_only(host_named, tcp_state, member):  # noqa: ANN001, ANN201
    assert tcp_state(host_named("mdb-client-in"), member.address, 27017) == "open"
    assert tcp_state(host_named("mdb-client-out"), member.address, 27017) == "timeout"


def test_logrotate_makes_mongod_write_a_fresh_log(host_named, conf, mongo, member, wait_for):  # noqa: ANN001, ANN201
    node = host_named(member.name)
    log = conf(member)["systemLog"]["path"]
    rotation = node.check_output("grep -l %s /etc/logrotate.d/*", log).split()
    assert len(rotation) == 1, rotation
    last_line = node.file(log).content_string.splitlines()[-1]
    result = node.run("logrotate -f %s", rotation[0])
    assert result.rc == 0, result.stderr
    assert node.file(log).exists
    assert last_line not in node.file(log).content_string
    size = node.file(log).size
    # A new client: mongod logs the connection, from the test machine, to the log file it has open.
    mongo(address=member.address).admin.command("ping")

    def logged() -> bool:
        return any(
            "Connection accepted" in line and TEST_MACHINE in line
            for line in node.file(log).content_string.splitlines()
        )

    wait_for(logged, 10, f"a new connection from {TEST_MACHINE} in the fresh {log}")
    assert node.file(log).size > size
