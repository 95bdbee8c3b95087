"""EC2 served by moto on loopback, and `ansible-inventory` run against it.

Shared by the inventory tests and the inventory benchmark: one way to start the endpoint, seed
instances with the platform's tags and list an environment's inventory.

One answer of moto is corrected where S3 answers otherwise and a module relies on it:
GetObjectLockConfiguration. moto 5.2.5 returns both `Days` and `Years` of a default retention
(the unset one as 0); S3 returns the one that was set (they are mutually exclusive), and
amazon.aws.s3_bucket compares the answer with its input, so against moto it would change the
retention on every run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto.core.responses import ActionResult
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-south-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


def _get_object_lock_configuration(self: S3Response) -> Any:
    enabled, mode, days, years = self.backend.get_object_lock_configuration(self.bucket_name)
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled" if enabled else "Disabled"}
    if mode:
        period = {"Years": years} if years else {"Days": days}
        config["Rule"] = {"DefaultRetention": {"Mode": mode, **period}}
    self.data["Action"] = "GetObjectLockConfiguration"
    return self.serialized(ActionResult({"ObjectLockConfiguration": config}))


S3Response.get_object_lock_configuration = _get_object_lock_configuration  # type: ignore[method-assign]


@contextmanager
def moto_environment() -> Iterator[dict[str, str]]:
    """Start moto on 127.0.0.1 and yield the environment that points ansible and boto3 at it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        # An inventory the plugin cannot parse is otherwise only a warning (and an empty list).
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(name, None)
    try:
        yield env
    finally:
        server.stop()


def aws_client(env: dict[str, str], service: str, **credentials: str) -> Any:
    """A boto3 client of moto's endpoint in env (fake credentials unless others are given)."""
    credentials = credentials or {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    return boto3.client(
        service, region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"], **credentials
    )


def ec2_client(env: dict[str, str]) -> Any:
    return aws_client(env, "ec2")


def clinic_tags(env: str, role: str) -> dict[str, str]:
    """The tags a platform instance carries."""
    return {"Project": "clinic", "Environment": env, "Role": role, "Name": f"clinic-{env}-{role}"}


def launch(ec2: Any, tags: dict[str, str], count: int) -> list[str]:
    """Run count instances sharing tags (as an auto scaling group's do); return their ids."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    specification = [
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    ]
    ids: list[str] = []
    while len(ids) < count:
        batch = min(100, count - len(ids))
        reply = ec2.run_instances(
            ImageId=image,
            InstanceType="t3.small",
            MinCount=batch,
            MaxCount=batch,
            TagSpecifications=specification,
        )
        ids += [i["InstanceId"] for i in reply["Instances"]]
    return ids


def inventory_file(env: str) -> Path:
    return ROOT / "inventories" / env / f"{env}.aws_ec2.yml"


def _unwrap_unsafe(value: dict[str, Any]) -> Any:
    """ansible-inventory marks values from the plugin as {"__ansible_unsafe": value}."""
    return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else value


def list_inventory(
    env_name: str, env: dict[str, str], timeout: float = 600
) -> tuple[float, dict[str, Any]]:
    """`ansible-inventory --list` of one environment: seconds taken and the parsed result."""
    start = time.perf_counter()
    result = subprocess.run(
        ["ansible-inventory", "-i", str(inventory_file(env_name)), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"ansible-inventory failed for {env_name}:\n{result.stderr}")
    return elapsed, json.loads(result.stdout, object_hook=_unwrap_unsafe)
