"""SSH as users rely on it: who gets in, with what and from where (seen from client hosts)."""

from __future__ import annotations

import pytest

TARGETS = {"bh-debian12": "172.30.42.11", "bh-debian13": "172.30.42.12"}
SSH = (
    "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
    "-o ConnectTimeout=5 -i /root/.ssh/id_ed25519"
)


@pytest.fixture(scope="module")
def client(host_named):  # noqa: ANN001, ANN201
    return host_named("bh-client-in")


@pytest.fixture(scope="module")
def outsider(host_named):  # noqa: ANN001, ANN201
    return host_named("bh-client-out")


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_admin_key_login_works_and_has_sudo(client, address):  # noqa: ANN001, ANN201
    result = client.run(f"{SSH} alice@{address} 'id -nG && sudo -n true && echo sudo-ok'")
    assert result.rc == 0, result.stderr
    assert "admins" in result.stdout.split()
    assert "sudo-ok" in result.stdout


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_engineer_key_login_works_without_sudo(client, address):  # noqa: ANN001, ANN201
    result = client.run(f"{SSH} bob@{address} 'sudo -n true'")
    assert result.rc != 0
    assert "a password is required" in result.stderr
    assert client.run(f"{SSH} bob@{address} true").rc == 0


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
@pytest.mark.parametrize(
    "user",
    [
        "root",  # holds the operator key, but root login is off
        "oscar",  # holds the key, but his group has no SSH access
        "mallory",  # held the key and was an admin, then removed
    ],
)
def test_key_holders_outside_the_rules_are_refused(client, address, user):  # noqa: ANN001, ANN201
    result = client.run(f"{SSH} {user}@{address} true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_password_login_is_refused_with_the_right_password(client, ephemeral, address):  # noqa: ANN001, ANN201
    password = (ephemeral / "carol.password").read_text().strip()
    result = client.run(
        "SSHPASS=%s sshpass -e ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
        "carol@%s true",
        password,
        address,
    )
    assert result.rc != 0
    # The server offers public keys and nothing else.
    assert "Permission denied (publickey)" in result.stderr


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_weak_algorithms_are_not_negotiated(client, address):  # noqa: ANN001, ANN201
    for options, reason in [
        ("-o Ciphers=aes128-cbc", "no matching cipher"),
        # A MAC is only negotiated with a non-AEAD cipher.
        ("-o Ciphers=aes128-ctr -o MACs=hmac-sha1", "no matching MAC"),
        ("-o KexAlgorithms=diffie-hellman-group14-sha1", "no matching key exchange"),
    ]:
        result = client.run(f"{SSH} {options} alice@{address} true")
        assert result.rc == 255, options
        assert reason in result.stderr, result.stderr


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_login_banner_is_shown(client, address):  # noqa: ANN001, ANN201
    result = client.run(f"{SSH} alice@{address} true")
    assert "Authorised access only" in result.stderr


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_ssh_is_dropped_from_outside_the_allowed_networks(client, outsider, tcp_state, address):  # noqa: ANN001, ANN201
    assert tcp_state(client, address, 22) == "open"
    assert tcp_state(outsider, address, 22) == "timeout"


@pytest.mark.parametrize("name", TARGETS.keys())
def test_effective_sshd_settings(host_named, name):  # noqa: ANN001, ANN201
    settings: dict[str, str] = {}
    for line in host_named(name).check_output("sshd -T").splitlines():
        key, value = line.split(" ", 1)
        # Keywords given several values (allowgroups) are printed once per value.
        settings[key] = f"{settings[key]} {value}" if key in settings else value
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["maxauthtries"] == "4"
    assert settings["maxsessions"] == "2"
    assert settings["allowgroups"].split() == ["admins", "engineers"]
    assert settings["loglevel"] == "VERBOSE"
    assert settings["allowtcpforwarding"] == "no"
    assert settings["x11forwarding"] == "no"
