"""An artifact whose sha256 is not the expected one is refused, and the live release keeps serving.

Runs before test_releases (see MODULE_ORDER in conftest.py), while 2.0.0 is not unpacked: the role
fetches and verifies an artifact whenever the release on disk is not unpacked from the expected one.
"""

from __future__ import annotations

import pytest

RELEASE = "2.0.0"
LIVE_RELEASE = "1.0.0"
BASE = "/opt/clinic-api"
ZEROS = "0" * 64
NODES = ["app1", "app2"]


@pytest.fixture(scope="module")
def bad_checksum_run(converge, host_named, current):  # noqa: ANN001, ANN201
    for name in NODES:
        host = host_named(name)
        if current(host) != f"releases/{LIVE_RELEASE}":
            pytest.fail(f"{name} must be on {LIVE_RELEASE} before this module: {current(host)}")
        # Normally absent: a leftover 2.0.0 is removed so that the refusal leaves nothing of it.
        host.check_output("rm -rf %s", f"{BASE}/releases/{RELEASE}")
    return converge(RELEASE, "-e", f"app_node_release_sha256={ZEROS}")


def test_run_fails_with_the_sha256_message(bad_checksum_run, artifact_sha256, recap, failure):  # noqa: ANN001, ANN201
    result = bad_checksum_run
    assert result.returncode != 0
    assert {host: c["failed"] for host, c in recap(result).items()} == dict.fromkeys(NODES, 1)
    message = (
        f"The artifact of release {RELEASE} has sha256 {artifact_sha256(RELEASE)}, not {ZEROS}: "
        "it was not installed."
    )
    for host in NODES:
        assert message in failure(result, host)


def test_live_release_is_untouched_and_serving(  # noqa: ANN201
    bad_checksum_run,  # noqa: ANN001
    node,  # noqa: ANN001
    host_named,  # noqa: ANN001
    current,  # noqa: ANN001
    releases,  # noqa: ANN001
    served_version,  # noqa: ANN001
    http_get,  # noqa: ANN001
):
    host = host_named(node.name)
    assert current(host) == f"releases/{LIVE_RELEASE}"
    assert RELEASE not in releases(host)  # the artifact was never unpacked
    assert http_get(node.address, "/healthz")[0] == 200
    assert served_version(node) == LIVE_RELEASE
