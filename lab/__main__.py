"""`make lab`, `make lab-deploy VERSION=...`, `make lab-rotate`, `make lab-down`:
python -m lab up|deploy|rotate|down.

up: containers and services (lab/up.yml), moto's EC2/SSM/KMS/S3 (lab/aws.py), then
`ansible-playbook site.yml -i inventories/lab` over SSH through the aws_ec2 inventory, HAProxy
(lab/lb.yml), the smoke check (lab/smoke.py) and a summary, also written to lab/state.json.
deploy VERSION: `ansible-playbook playbooks/deploy.yml -i inventories/lab` for a release of the
sample API in the lab's artifact bucket (1.0.0, 2.0.0, 3.0.0 which fails its health check, or 4.0.0
whose migration fails), with the checksum published beside it, through HAProxy.
rotate: every certificate of the running lab renewed by site.yml's MongoDB and API plays (asking
for certificates valid 398 days and renewed 397 days before they expire, so each one issued with
the default 397 days is due) while the API takes ROTATE_RATE requests/s through HAProxy
(tests.harness.loadgen: a request fails when it raises, answers anything but 2xx, or waits more
than 10 s). Once per lab: the renewed certificates are valid 398 days, so a second rotate renews
nothing. Last line:
    requests=N failed=F p50_ms=A p95_ms=B max_ms=C rotate_s=D
down: every container, network and moto server of the lab, and lab/.state.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import aws, failover, smoke
from lab.settings import (
    INVENTORY_DIR,
    LAB_DIR,
    PLATFORMS_FILE,
    ROOT,
    STATE_DIR,
    STATE_FILE,
    Lab,
    aws_environment,
    load,
    storage,
)
from tests.harness import loadgen, strategy

COLLECTIONS_DIR = STATE_DIR / "collections"
ROTATE_RATE = 20.0
# A certificate of the default validity (397 days) expires within 397 days: each one is due.
RENEW_ALL = '{"tls_certificate_valid_days": 398, "tls_certificate_renew_days": 397}'
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def say(message: str) -> None:
    print(f"\n== lab: {message}", flush=True)


def environment(lab: Lab) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    return {
        **strategy.environment(os.environ.get("CLINIC_LAB_STRATEGY", strategy.DEFAULT)),
        **aws_environment(lab),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        # The lab's own copy of this checkout as the collection: Molecule runs in the same checkout
        # replace .ansible/collections whenever they start, which would pull roles from under a run.
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_DIR),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "8",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(STATE_DIR),
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
    }


def run(argv: list[str], env: dict[str, str], log: str) -> tuple[int, str, float]:
    """Run argv from the checkout, echoing its output and keeping it in lab/.state/logs/<log>."""
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines = []
    with (
        (logs / log).open("w") as kept,
        subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            kept.write(line)
            lines.append(line)
    return process.returncode, "".join(lines), time.monotonic() - start


def recap(output: str) -> dict[str, dict[str, int]]:
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(output)
    }


def playbook(name: str, argv: list[str], env: dict[str, str], log: str) -> dict[str, Any]:
    say(f"{name}: {' '.join(argv)}")
    code, output, seconds = run(argv, env, log)
    hosts = recap(output)
    return {
        "command": " ".join(argv),
        "exit_code": code,
        "seconds": round(seconds, 1),
        "changed": sum(h["changed"] for h in hosts.values()),
        "hosts": hosts,
        "log": str((STATE_DIR / "logs" / log).relative_to(ROOT)),
    }


def inventory_hosts(lab: Lab, env: dict[str, str]) -> list[dict[str, str]]:
    """The hosts as site.yml sees them: ansible-inventory over the lab's aws_ec2 inventory."""
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(INVENTORY_DIR.relative_to(ROOT)), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    containers = {host.address: host.container for host in lab.hosts}

    def plain(value: Any) -> Any:
        return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value

    hosts = []
    for name, variables in hostvars.items():
        address = plain(variables["ansible_host"])
        hosts.append(
            {
                "name": name,
                "instance_id": plain(variables["ec2_instance_id"]),
                "role": plain(plain(variables["ec2_tags"])["Role"]),
                "address": address,
                "container": containers.get(address, "?"),
            }
        )
    return sorted(hosts, key=lambda h: [int(part) for part in h["address"].split(".")])


def write_env_file(lab: Lab) -> Path:
    """lab/.state/env: `. lab/.state/env` points a shell's ansible and boto3 at the lab's moto."""
    path = STATE_DIR / "env"
    path.write_text(
        "".join(
            f"export {k}={v}\n"
            for k, v in {
                "AWS_ENDPOINT_URL": lab.endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "ap-south-1",
            }.items()
        )
    )
    return path


def summary(state: dict[str, Any]) -> str:
    lines = ["Hosts:"]
    lines += [
        f"  {h['role']:<8} {h['address']:<14} {h['container']:<14} {h['name']}"
        for h in state["hosts"]
    ]
    lines.append(
        f"Load balancer: {state['load_balancer_url']} (stats {state['load_balancer_stats_url']})"
    )
    lines.append(f"moto endpoint: {state['moto_endpoint']}")
    for name, result in state["converge"].items():
        per_host = ", ".join(f"{h} changed={r['changed']}" for h, r in result["hosts"].items())
        lines.append(
            f"{name}: exit {result['exit_code']}, {result['seconds']} s, "
            f"changed={result['changed']} ({per_host or 'no recap'})"
        )
    lines.append("Smoke check:")
    lines.append(smoke.report(state["smoke"]))
    lines.append(
        f"Total: {state['timings']['total']} s. By hand: . lab/.state/env && "
        "ansible-playbook site.yml -i inventories/lab"
    )
    return "\n".join(lines)


def up() -> int:
    lab = load()
    env = environment(lab)
    started = time.monotonic()
    timings: dict[str, float] = {}
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    # Ignored by git whatever the root .gitignore says: it holds a private key and secrets.
    (STATE_DIR / ".gitignore").write_text("*\n")

    say(f"installing this checkout as the collection into {COLLECTIONS_DIR.relative_to(ROOT)}")
    subprocess.run(
        ["ansible-galaxy", "collection", "install", "--force", "--offline", ".", "-p",
         str(COLLECTIONS_DIR)],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip

    platforms = ["-e", f"@{PLATFORMS_FILE.relative_to(ROOT)}"]
    bootstrap = playbook(
        "containers, services and the deploy user",
        ["ansible-playbook", "-i", "lab/inventory.yml", "lab/up.yml", *platforms],
        env,
        "up.log",
    )
    timings["bootstrap"] = bootstrap["seconds"]
    if bootstrap["exit_code"]:
        return bootstrap["exit_code"]

    say(f"moto at {lab.endpoint}: network, instances, secrets, KMS key, buckets")
    start = time.monotonic()
    seeded = aws.seed(lab, storage(), STATE_DIR)
    timings["moto"] = round(time.monotonic() - start, 1)
    print("\n".join(f"  created {item}" for item in seeded.created) or "  all present already")
    write_env_file(lab)

    inventory = str(INVENTORY_DIR.relative_to(ROOT))
    converge = {
        "site.yml": playbook(
            "the platform", ["ansible-playbook", "site.yml", "-i", inventory], env, "site.log"
        )
    }
    timings["site.yml"] = converge["site.yml"]["seconds"]
    if not converge["site.yml"]["exit_code"]:
        converge["lab/lb.yml"] = playbook(
            "HAProxy in front of the API nodes",
            ["ansible-playbook", "lab/lb.yml", "-i", inventory],
            env,
            "lb.log",
        )
        timings["lab/lb.yml"] = converge["lab/lb.yml"]["seconds"]

    say("smoke check")
    start = time.monotonic()
    results = smoke.run(lab)
    timings["smoke"] = round(time.monotonic() - start, 1)
    timings["total"] = round(time.monotonic() - started, 1)
    # The machine may be shared (other Molecule runs): the load puts the timings in context.
    timings["load_average_1_5_15_min"] = [round(load, 1) for load in os.getloadavg()]

    state = {
        "environment": "lab",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hosts": inventory_hosts(lab, env),
        "load_balancer_url": smoke.lb_url(lab),
        "load_balancer_stats_url": smoke.lb_url(lab, smoke.LB_STATS_PORT, "/stats"),
        "moto_endpoint": lab.endpoint,
        "apt_repository": f"http://{lab.apt_repo_address}/",
        "ssh": {
            "user": lab.deploy_user,
            "key": str((STATE_DIR / "ssh" / "deploy_ed25519").relative_to(ROOT)),
            "known_hosts": str((STATE_DIR / "ssh" / "known_hosts").relative_to(ROOT)),
        },
        "strategy": env["ANSIBLE_STRATEGY"],
        "converge": converge,
        "smoke": results,
        "timings": timings,
    }
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
    say(f"summary (also in {STATE_FILE.relative_to(ROOT)})")
    print(summary(state), flush=True)
    failed = [r["check"] for r in results if r["status"] == smoke.FAILED]
    broken = [name for name, result in converge.items() if result["exit_code"]]
    if failed or broken:
        print(f"\nmake lab FAILED: {', '.join(broken + failed)}", file=sys.stderr)
        return 1
    return 0


def down() -> int:
    lab = load()
    env = environment(lab)
    result = playbook(
        "removing the lab's containers, network and moto",
        [
            "ansible-playbook", "-i", "lab/inventory.yml", "molecule/resources/destroy.yml",
            "-e", f"@{PLATFORMS_FILE.relative_to(ROOT)}",
        ],
        env,
        "down.log",
    )  # fmt: skip
    if result["exit_code"]:
        return result["exit_code"]
    # Facts cached under the hosts' names (instance ids that will not come back); the jsonfile
    # cache puts a prefix before the name (s1_ in ansible-core 2.19).
    if STATE_FILE.exists():
        for host in json.loads(STATE_FILE.read_text())["hosts"]:
            for cached in (ROOT / ".ansible" / "facts").glob(f"*{host['name']}"):
                cached.unlink()
        STATE_FILE.unlink()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    say(f"removed; {LAB_DIR.relative_to(ROOT)}/.state and {STATE_FILE.name} are gone")
    return 0


def deploy(version: str) -> int:
    lab = load()
    env = environment(lab)
    bucket = storage()["clinic_artifact_bucket"]
    checksum = aws.release_checksum(lab, bucket, version)
    if checksum is None:
        print(
            f"make lab-deploy: there is no release {version} in s3://{bucket}/releases/ "
            "(is the lab up? `make lab`)",
            file=sys.stderr,
        )
        return 2
    result = playbook(
        f"rolling deploy of {version}",
        [
            "ansible-playbook", "playbooks/deploy.yml", "-i", str(INVENTORY_DIR.relative_to(ROOT)),
            "-e", f"deploy_version={version}", "-e", f"deploy_sha256={checksum}",
        ],
        env,
        f"deploy-{version}.log",
    )  # fmt: skip
    say(
        f"deploy of {version}: exit {result['exit_code']}, {result['seconds']} s, "
        f"changed={result['changed']}; log {result['log']}"
    )
    return result["exit_code"]


def rotate() -> int:
    lab = load()
    env = environment(lab)
    inventory = str(INVENTORY_DIR.relative_to(ROOT))
    runs = []
    (lb,) = lab.by_role("lb")
    stats_url = f"http://{lb.address}:{smoke.LB_STATS_PORT}/stats;csv"
    started = time.monotonic()
    with loadgen.load(lb.address, rate=ROTATE_RATE, stats_url=stats_url) as report:
        for name in ("mongodb", "app"):
            runs.append(
                playbook(
                    f"certificate renewal: playbooks/{name}.yml",
                    ["ansible-playbook", f"playbooks/{name}.yml", "-i", inventory, "-e", RENEW_ALL],
                    env,
                    f"rotate-{name}.log",
                )
            )
            if runs[-1]["exit_code"]:
                break
    rotate_s = time.monotonic() - started
    for run in runs:
        say(f"{run['log']}: exit {run['exit_code']}, {run['seconds']} s, changed={run['changed']}")
    print(report.summary())
    slowest = max((r.latency_ms for r in report.results), default=0.0)
    print(
        f"requests={len(report.results)} failed={len(report.failures)} "
        f"p50_ms={report.percentile_ms(50):.1f} p95_ms={report.percentile_ms(95):.1f} "
        f"max_ms={slowest:.0f} rotate_s={rotate_s:.1f}"
    )
    return 1 if report.failures or any(run["exit_code"] for run in runs) else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start or converge the lab")
    release = commands.add_parser("deploy", help="rolling deploy of a release to the lab")
    release.add_argument("version")
    commands.add_parser("down", help="remove the lab")
    commands.add_parser("failover", help="stop, then freeze, the primary under load")
    commands.add_parser("rotate", help="renew every certificate under load")
    args = parser.parse_args()
    if args.command == "deploy":
        return deploy(args.version)
    if args.command == "failover":
        return failover.run(load())
    if args.command == "rotate":
        return rotate()
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
