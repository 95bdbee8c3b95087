"""The `alb` adapter against a target group in moto: around each node, the node is deregistered
before its API restarts and registered again after, one node at a time, with a healthy target
left at every moment.

moto answers target health at once (a deregistered target is `unused` immediately, a registered
one `healthy`), so the deregistration delay's draining and the health checks of a real ALB are not
shown here: zero dropped requests is proven through HAProxy (test_02_rolling). This module proves
the order of the calls and the waits around them.
"""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from deploy_scenario import NODES, SERVICE, aws

OLD, NEW = "2.0.0", "1.0.0"
TARGET_GROUP = "clinic-molecule-api"


@pytest.fixture(scope="module")
def target_group(tmp_path_factory):  # noqa: ANN001, ANN201
    """Instances for the nodes and a target group holding them; the nodes' instance ids go into
    an extra inventory file, as the aws_ec2 inventory would give them."""
    ec2, elb = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.47.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.47.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, SubnetId=subnet)
    ids = dict(zip(NODES, (i["InstanceId"] for i in instances["Instances"]), strict=True))
    arn = elb.create_target_group(
        Name=TARGET_GROUP, Protocol="HTTP", Port=3000, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(
        TargetGroupArn=arn, Targets=[{"Id": i, "Port": 3000} for i in ids.values()]
    )
    inventory = tmp_path_factory.mktemp("alb") / "instances.yml"
    hosts = {node: {"ec2_instance_id": ids[node]} for node in NODES}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return arn, ids, inventory


def watch(arn: str, stop: threading.Event, seen: list[tuple[float, frozenset[str]]]) -> None:
    """(monotonic time, ids of the healthy targets) every 100 ms."""
    elb = aws("elbv2")
    while not stop.is_set():
        health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        healthy = frozenset(
            d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] == "healthy"
        )
        seen.append((time.monotonic(), healthy))
        stop.wait(0.1)


@pytest.fixture(scope="module")
def deployed(target_group, deploy):  # noqa: ANN001, ANN201
    arn, _, inventory = target_group
    seen: list[tuple[float, frozenset[str]]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(arn, stop, seen), daemon=True)
    watcher.start()
    try:
        run = deploy(
            NEW,
            "-i",
            str(inventory),
            "-e",
            "deploy_lb_adapter=alb",
            "-e",
            f"deploy_alb_target_group_name={TARGET_GROUP}",
        )
    finally:
        stop.set()
        watcher.join(10)
    return run, seen


def out_intervals(seen: list[tuple[float, frozenset[str]]], target: str) -> list[list[float]]:
    """[start, end] of each stretch in which the target was not healthy."""
    intervals: list[list[float]] = []
    for at, healthy in seen:
        if target not in healthy and (not intervals or len(intervals[-1]) == 2):
            intervals.append([at])
        elif target in healthy and intervals and len(intervals[-1]) == 1:
            intervals[-1].append(at)
    return intervals


def started_at(host) -> float:  # noqa: ANN001
    """When the API last entered `active`, on the monotonic clock the containers share."""
    value = host.check_output(f"systemctl show {SERVICE} -p ActiveEnterTimestampMonotonic --value")
    return int(value) / 1_000_000


def test_deploy_succeeds(deployed, tail):  # noqa: ANN001, ANN201
    run, _ = deployed
    assert run.returncode == 0, tail(run)


def test_each_node_restarts_while_deregistered(deployed, target_group, host_named):  # noqa: ANN001, ANN201
    _, seen = deployed
    _, ids, _ = target_group
    for node in NODES:
        intervals = out_intervals(seen, ids[node])
        assert len(intervals) == 1 and len(intervals[0]) == 2, f"{node}: {intervals}"
        (left, back), restarted = intervals[0], started_at(host_named(node))
        assert left < restarted < back, (
            f"{node}: out {left:.1f}-{back:.1f}, API started {restarted:.1f}"
        )


def test_one_node_at_a_time(deployed, target_group):  # noqa: ANN001, ANN201
    _, seen = deployed
    _, ids, _ = target_group
    (first,), (second,) = (out_intervals(seen, ids[node]) for node in NODES)
    assert first[1] <= second[0], f"both targets were out at once: {first} {second}"
    assert all(healthy for _, healthy in seen), "a moment without a healthy target"


def test_nodes_run_the_release(deployed, host_named, current):  # noqa: ANN001, ANN201
    for node in NODES:
        assert current(host_named(node)) == NEW


def test_both_targets_healthy_after(deployed, target_group):  # noqa: ANN001, ANN201
    arn, ids, _ = target_group
    health = aws("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in health}
    assert states == dict.fromkeys(ids.values(), "healthy")
