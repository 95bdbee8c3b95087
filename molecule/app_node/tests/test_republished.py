"""A live version published again with another artifact: the nodes run the new code.

Runs after test_releases (see MODULE_ORDER in conftest.py), with 1.0.0 live on both nodes. The
artifact of 1.0.0 in the bucket is replaced by one with an extra file (another sha256) and the nodes
are converged to 1.0.0 with the new checksum: the role unpacks it beside the live release, swaps the
two and restarts the API. The original artifact is put back at the end, the same way.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import boto3
import pytest

RELEASE = "1.0.0"
BASE = "/opt/clinic-api"
BUCKET = "clinic-molecule-artifacts"
KEY = f"releases/sample-api-{RELEASE}.tar.gz"
NODES = ["app1", "app2"]
ADDED = "REPUBLISHED"
SWAP = "release | Move the new unpack in its place"


def with_extra_file(artifact: bytes) -> bytes:
    """The artifact with one more file at its root."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        content = f"{RELEASE}, published again\n".encode()
        info = tarfile.TarInfo(ADDED)
        info.size, info.mode = len(content), 0o644
        target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def main_pid(host) -> str:  # noqa: ANN001
    return host.check_output("systemctl show -p MainPID --value clinic-api.service")


def marker(host) -> str:  # noqa: ANN001
    return host.check_output("cat %s", f"{BASE}/releases/{RELEASE}/.release-complete").strip()


def hidden_entries(host) -> list[str]:  # noqa: ANN001
    return host.check_output("ls -A %s", f"{BASE}/releases").split()


@pytest.fixture(scope="module")
def original(ephemeral: Path) -> bytes:
    return (ephemeral / "artifacts" / f"sample-api-{RELEASE}.tar.gz").read_bytes()


@pytest.fixture(scope="module")
def republished(original, converge, host_named, current, tail):  # noqa: ANN001, ANN201
    """Converge 1.0.0 with the new artifact; afterwards, 1.0.0 with the original one again."""
    for name in NODES:
        assert current(host_named(name)) == f"releases/{RELEASE}", name
    s3 = boto3.client("s3")
    artifact = with_extra_file(original)
    sha256 = hashlib.sha256(artifact).hexdigest()
    pids = {name: main_pid(host_named(name)) for name in NODES}
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=artifact)
    try:
        result = converge(RELEASE, "-e", f"app_node_release_sha256={sha256}")
        again = converge(RELEASE, "-e", f"app_node_release_sha256={sha256}")
        yield {"sha256": sha256, "pids": pids, "result": result, "again": again}
    finally:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=original)
        restored = converge(RELEASE)
        assert restored.returncode == 0, tail(restored)


def test_the_run_swaps_the_release_on_each_node(republished, recap, changes, tail):  # noqa: ANN001, ANN201
    result = republished["result"]
    assert result.returncode == 0, tail(result)
    assert {host: c["failed"] for host, c in recap(result).items()} == dict.fromkeys(NODES, 0)
    swapped = sorted(c.rpartition(": ")[2] for c in changes(result) if SWAP in c)
    assert swapped == NODES, changes(result)


def test_each_node_runs_the_new_artifact(republished, node, host_named, current, served_version):  # noqa: ANN001, ANN201
    host = host_named(node.name)
    assert current(host) == f"releases/{RELEASE}"
    assert host.file(f"{BASE}/current/{ADDED}").exists
    assert marker(host) == republished["sha256"]
    assert main_pid(host) != republished["pids"][node.name]  # restarted on the new code
    assert served_version(node) == RELEASE


def test_nothing_is_left_beside_the_releases(republished, node, host_named):  # noqa: ANN001, ANN201
    assert not [e for e in hidden_entries(host_named(node.name)) if e.startswith(".")]


def test_the_same_artifact_again_changes_nothing(republished, recap, changes, tail):  # noqa: ANN001, ANN201
    again = republished["again"]
    assert again.returncode == 0, tail(again)
    assert {h: c["changed"] for h, c in recap(again).items()} == dict.fromkeys(NODES, 0), changes(
        again
    )
