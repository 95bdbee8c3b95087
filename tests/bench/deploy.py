"""The rolling deploy under load, on the deploy scenario's converged hosts (tests/bench/deploy.sh).

Deploys 2.0.0 over 1.0.0 with playbooks/deploy.yml while tests.harness.loadgen sends 60 requests/s
through HAProxy, and prints the load generator's figures and how long each node was out of
HAProxy (from leaving UP to being UP again: drain, install, restart, health, rejoin), with the
TLS settings deploy.sh converged with (BENCH_EXTRA_VARS). Last line:
    requests=N failed=F p50_ms=A p95_ms=B node_cycle_s=C tls=on|off
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import loadgen

ROOT = Path(__file__).resolve().parents[2]
LB = "172.30.47.10"  # molecule/deploy/molecule.yml
STATS_URL = f"http://{LB}:8404/stats;csv"
MOTO = "http://127.0.0.1:5047"
RELEASE = "2.0.0"


def main() -> int:
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    checksum = (
        (ephemeral / "artifacts" / f"sample-api-{RELEASE}.tar.gz.sha256").read_text().split()[0]
    )
    env = os.environ | {
        "AWS_ENDPOINT_URL": MOTO,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-south-1",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    }
    command = [
        "ansible-playbook",
        "-i", str(ephemeral / "inventory" / "ansible_inventory.yml"),
        "playbooks/deploy.yml",
        "-e", f"deploy_version={RELEASE}",
        "-e", f"deploy_sha256={checksum}",
        "-e", os.environ["BENCH_EXTRA_VARS"],
    ]  # fmt: skip
    started = time.monotonic()
    with loadgen.load(LB, rate=60.0, stats_url=STATS_URL) as report:
        run = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
    deploy_s = time.monotonic() - started
    if run.returncode:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
        print(f"bench: the deploy failed (exit {run.returncode})", file=sys.stderr)
        return 1
    cycles = [end - start for spans in report.outages.values() for start, end in spans if end]
    print(report.summary())
    for server, spans in sorted(report.outages.items()):
        print("  " + server + ": " + ", ".join(f"out {e - s:.1f} s" for s, e in spans if e))
    print(f"deploy_s={deploy_s:.1f} versions_seen={'->'.join(report.versions())}")
    print(
        f"requests={len(report.results)} failed={len(report.failures)} "
        f"p50_ms={report.percentile_ms(50):.1f} p95_ms={report.percentile_ms(95):.1f} "
        f"node_cycle_s={sum(cycles) / len(cycles) if cycles else 0:.1f} "
        f"tls={os.environ['BENCH_TLS']}"
    )
    return 0 if report.failures == [] else 1


if __name__ == "__main__":
    sys.exit(main())
