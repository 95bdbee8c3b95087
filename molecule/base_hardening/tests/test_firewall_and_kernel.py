"""The host firewall and kernel parameters, as a neighbour and the kernel see them."""

from __future__ import annotations

import pytest

TARGETS = {"bh-debian12": "172.30.42.11", "bh-debian13": "172.30.42.12"}


@pytest.fixture(scope="module")
def listeners(host_named):  # noqa: ANN001, ANN201
    """A throw-away TCP service on 8080, the port the scenario's allow-list opens to one client."""
    for name in TARGETS:
        host_named(name).check_output(
            "systemd-run --unit=scenario-listener --collect python3 -m http.server 8080"
        )
    # systemd-run returns once the unit starts, not once it listens: wait for the LISTEN socket
    # (state 0A on port 0x1F90 in /proc/net/tcp or tcp6) so that a probe never races it.
    listening = "awk '$2 ~ /:1F90$/ && $4 == \"0A\"' /proc/net/tcp /proc/net/tcp6 | grep -q ."
    for name in TARGETS:
        host_named(name).check_output(
            "timeout 30 sh -c %s", f"until {listening}; do sleep 0.1; done"
        )
    yield
    for name in TARGETS:
        host_named(name).run("systemctl stop scenario-listener")


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_allow_list_opens_a_port_to_its_sources_only(host_named, tcp_state, listeners, address):  # noqa: ANN001, ANN201
    outside = host_named("bh-client-out")  # 172.30.42.99/32 is the entry's only source
    inside = host_named("bh-client-in")
    assert tcp_state(outside, address, 8080) == "open"
    assert tcp_state(inside, address, 8080) == "timeout"


@pytest.mark.parametrize("address", TARGETS.values(), ids=TARGETS.keys())
def test_unlisted_ports_are_dropped(host_named, tcp_state, address):  # noqa: ANN001, ANN201
    # Nothing listens on 9999: without the firewall the answer would be "refused", not silence.
    assert tcp_state(host_named("bh-client-in"), address, 9999) == "timeout"


@pytest.mark.parametrize("name", TARGETS.keys())
def test_ruleset_is_loaded_with_default_deny(host_named, name):  # noqa: ANN001, ANN201
    ruleset = host_named(name).check_output("nft list table inet clinic_filter")
    assert "hook input priority filter; policy drop;" in ruleset
    assert host_named(name).service("nftables").is_enabled


@pytest.mark.parametrize("name", TARGETS.keys())
@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("net/ipv4/conf/all/rp_filter", "1"),
        ("net/ipv4/conf/all/accept_redirects", "0"),
        ("net/ipv4/conf/all/send_redirects", "0"),
        ("net/ipv4/conf/all/accept_source_route", "0"),
        ("net/ipv4/conf/all/log_martians", "1"),
        ("net/ipv4/tcp_syncookies", "1"),
        ("net/ipv4/ip_forward", "0"),
        ("net/ipv6/conf/all/accept_ra", "0"),
    ],
)
def test_network_parameters_are_in_effect(host_named, name, parameter, value):  # noqa: ANN001, ANN201
    # Namespaced: the container's own network stack, so the live value is the role's.
    assert host_named(name).file(f"/proc/sys/{parameter}").content_string.strip() == value


@pytest.mark.parametrize("name", TARGETS.keys())
def test_kernel_wide_parameters_are_persisted(host_named, name):  # noqa: ANN001, ANN201
    # Kernel-wide parameters cannot change from a container: they are checked where they persist.
    conf = host_named(name).file("/etc/sysctl.d/60-clinic-hardening.conf")
    assert conf.mode == 0o644
    lines = conf.content_string.splitlines()
    for expected in [
        "kernel.kptr_restrict = 2",
        "kernel.dmesg_restrict = 1",
        "kernel.randomize_va_space = 2",
        "kernel.yama.ptrace_scope = 1",
        "fs.protected_symlinks = 1",
        "fs.protected_regular = 2",
        "fs.suid_dumpable = 0",
    ]:
        assert expected in lines
    # Forwarding comes first: applying it later would reset accept_redirects at boot.
    settings = [line for line in lines if " = " in line]
    assert settings[0].startswith(("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"))
