"""The guard of the haproxy adapter: while the second node is in maintenance in HAProxy, a deploy
refuses to take the first node out (it is the last server UP) and changes nothing."""

from __future__ import annotations

import pytest
from deploy_scenario import LB, NODES

LIVE, OTHER = "2.0.0", "1.0.0"


def runtime_api(host_named, command: str) -> str:  # noqa: ANN001
    return host_named(LB).check_output(
        "echo %s | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock", command
    )


@pytest.fixture(scope="module")
def guarded(deploy, host_named):  # noqa: ANN001, ANN201
    runtime_api(host_named, f"disable server api_nodes/{NODES[1]}")
    try:
        yield deploy(OTHER)
    finally:
        runtime_api(host_named, f"enable server api_nodes/{NODES[1]}")


def test_refused_at_the_first_node(guarded, failure, tail):  # noqa: ANN001, ANN201
    assert guarded.returncode != 0, tail(guarded)
    text = failure(guarded, NODES[0])
    assert f"no server of api_nodes other than this batch ({NODES[0]}) is UP" in text, text
    assert "Nothing was changed on it" in text, text


def test_nothing_changed(guarded, changes, host_named, current, tail):  # noqa: ANN001, ANN201
    assert changes(guarded) == [], tail(guarded)
    for node in NODES:
        assert current(host_named(node)) == LIVE
