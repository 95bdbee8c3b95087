"""Inventory benchmark: `ansible-inventory --list` of one environment holding 1,000 instances.

EC2 is served by moto on the loopback interface, seeded with 1,000 running stage instances (app,
mongodb and worker roles, app instances sharing one Name tag as an auto scaling group would) plus
noise the inventory must leave out: stopped stage instances, prod instances and another project's.
The median of three runs is reported. Roughly half of it is moto answering DescribeInstances and
botocore parsing the reply; the rest is ansible-inventory itself (start-up, compose, keyed groups,
group_vars for every host).

Run from the repository root: python -m tests.bench.inventory
Last line: inventory_hosts=1000 inventory_s=<median seconds>
"""

from __future__ import annotations

import statistics
import sys

from tests.harness.moto_ec2 import clinic_tags, ec2_client, launch, list_inventory, moto_environment

ENV = "stage"
HOSTS = 1000
ROLES = {"app": 600, "mongodb": 300, "worker": 100}
RUNS = 3


def seed(env: dict[str, str]) -> None:
    """Launch the environment's instances and the noise around them."""
    ec2 = ec2_client(env)
    for role, count in ROLES.items():
        launch(ec2, clinic_tags(ENV, role), count)
    ec2.stop_instances(InstanceIds=launch(ec2, clinic_tags(ENV, "app"), 20))
    launch(ec2, clinic_tags("prod", "app"), 30)
    launch(ec2, {**clinic_tags(ENV, "app"), "Project": "billing"}, 30)


def main() -> None:
    with moto_environment() as env:
        seed(env)
        timings = []
        for run in range(1, RUNS + 1):
            elapsed, listed = list_inventory(ENV, env)
            hosts = len(listed["_meta"]["hostvars"])
            print(f"run {run}: {hosts} hosts in {elapsed:.2f} s")
            if hosts != HOSTS:
                sys.exit(f"expected {HOSTS} hosts in the {ENV} inventory, got {hosts}")
            groups = {r: len(listed.get(f"role_{r}", {}).get("hosts", [])) for r in ROLES}
            if groups != ROLES:
                sys.exit(f"expected role groups of sizes {ROLES}, got {groups}")
            timings.append(elapsed)
    print(f"inventory_hosts={hosts} inventory_s={statistics.median(timings):.1f}")


if __name__ == "__main__":
    main()
