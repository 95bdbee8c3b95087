"""Inventory benchmark: `ansible-inventory --list` of one environment holding 1,000 instances.

EC2 is served by moto on the loopback interface, seeded with 1,000 running stage instances (app,
mongodb and worker roles, app instances sharing one Name tag as an auto scaling group would) plus
noise the inventory must leave out: stopped stage instances, prod instances and another project's.
The median of three runs is reported. Roughly half of it is moto answering DescribeInstances and
botocore parsing the reply; the rest is ansible-inventory itself (start-up, compose, keyed groups,
group_vars for every host).

Run from anywhere: python tests/bench/inventory.py
Last line: inventory_hosts=1000 inventory_s=<median seconds>
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
ENV = "stage"
REGION = "ap-south-1"
HOSTS = 1000
ROLES = {"app": 600, "mongodb": 300, "worker": 100}
RUNS = 3
RUN_TIMEOUT_S = 600
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def seed(endpoint: str) -> None:
    """Launch the environment's instances and the noise around them."""
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(tags: dict[str, str], count: int) -> list[str]:
        ids: list[str] = []
        while len(ids) < count:
            batch = min(100, count - len(ids))
            reply = ec2.run_instances(
                ImageId=image,
                InstanceType="t3.small",
                MinCount=batch,
                MaxCount=batch,
                TagSpecifications=_tags(tags),
            )
            ids += [i["InstanceId"] for i in reply["Instances"]]
        return ids

    def clinic(env: str, role: str) -> dict[str, str]:
        return {
            "Project": "clinic",
            "Environment": env,
            "Role": role,
            "Name": f"clinic-{env}-{role}",
        }

    for role, count in ROLES.items():
        launch(clinic(ENV, role), count)
    stopped = launch(clinic(ENV, "app"), 20)
    ec2.stop_instances(InstanceIds=stopped)
    launch(clinic("prod", "app"), 30)
    launch({**clinic(ENV, "app"), "Project": "billing"}, 30)


def list_inventory(env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    inventory = ROOT / "inventories" / ENV / f"{ENV}.aws_ec2.yml"
    start = time.perf_counter()
    result = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"ansible-inventory failed:\n{result.stderr}")
    return elapsed, json.loads(result.stdout)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        seed(endpoint)
        env = {
            **os.environ,
            **CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            env.pop(name, None)
        timings = []
        for run in range(1, RUNS + 1):
            elapsed, listed = list_inventory(env)
            hosts = len(listed["_meta"]["hostvars"])
            print(f"run {run}: {hosts} hosts in {elapsed:.2f} s")
            if hosts != HOSTS:
                sys.exit(f"expected {HOSTS} hosts in the {ENV} inventory, got {hosts}")
            groups = {r: len(listed.get(f"role_{r}", {}).get("hosts", [])) for r in ROLES}
            if groups != ROLES:
                sys.exit(f"expected role groups of sizes {ROLES}, got {groups}")
            timings.append(elapsed)
    finally:
        server.stop()
    print(f"inventory_hosts={hosts} inventory_s={statistics.median(timings):.1f}")


if __name__ == "__main__":
    main()
