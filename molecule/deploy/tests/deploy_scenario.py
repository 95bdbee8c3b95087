"""Names and addresses of the deploy scenario (molecule.yml), shared by its test modules."""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
from pymongo import MongoClient

DEPLOY = "../../playbooks/deploy.yml"
SERVICE = "clinic-api"
BASE = f"/opt/{SERVICE}"
NODES = ("dep-app1", "dep-app2")
LB = "dep-lb"
LB_ADDRESS = "172.30.47.10"
STATS_URL = f"http://{LB_ADDRESS}:8404/stats;csv"
DB_ADDRESS = "172.30.47.20"
RELEASE_PARAMETER = "/clinic/molecule/app/release"
# The environment's run lock (group_vars/all/clinic.yml), held by a deploy from its checks on.
RUN_LOCK = "/clinic/molecule/run-lock"
# Every host's TLS files (group_vars/all/tls.yml); the API serves HTTPS with host.pem (the
# platform's default, which the scenario keeps) and HAProxy verifies it against ca.pem.
CA_FILE = "/etc/clinic/tls/ca.pem"
CERTIFICATE = "/etc/clinic/tls/host.pem"
# The CA's SSM parameters for clinic_env molecule.
CA_PARAMETERS = "/clinic/molecule/tls"
# The secrets (names of clinic_secrets) a deploy hands to the API and its migrations.
SECRET_NAMES = ("app_jwt_secret", "mongodb_app_password")


# site.yml's MongoDB and API plays, which test_07 and test_08 run under load at LOAD_RATE
# requests/s through HAProxy.
SITE_PLAYBOOKS = ("../../playbooks/mongodb.yml", "../../playbooks/app.yml")
LOAD_RATE = 20.0


def step(ansible_playbook: Callable[..., Any], mode: str, *args: str) -> list[Any]:
    """site.yml's MongoDB then API play with clinic_mongodb_tls_mode `mode`."""
    return [
        ansible_playbook(p, "-e", f"clinic_mongodb_tls_mode={mode}", *args) for p in SITE_PLAYBOOKS
    ]


def aws(service: str) -> Any:
    return boto3.client(service, region_name="ap-south-1")


def haproxy_states() -> dict[str, str]:
    """Server -> status of the API backend in HAProxy's stats (UP, DRAIN, MAINT, DOWN...)."""
    with urllib.request.urlopen(STATS_URL, timeout=5) as reply:
        rows = csv.DictReader(io.StringIO(reply.read().decode().lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "api_nodes" and row["svname"] not in ("FRONTEND", "BACKEND")
        }


def run_lock() -> dict[str, str] | None:
    """The run holding the environment's run lock, None when it is free."""
    ssm = aws("ssm")
    try:
        return json.loads(ssm.get_parameter(Name=RUN_LOCK)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def admin_client(password: str, timeout_ms: int = 10000, **tls: Any) -> MongoClient[dict[str, Any]]:
    """The replica set's member as its admin, with pymongo's TLS options `tls` (none: plaintext)."""
    return MongoClient(
        f"mongodb://{DB_ADDRESS}:27017/",
        username="admin",
        password=password,
        directConnection=True,
        serverSelectionTimeoutMS=timeout_ms,
        **tls,
    )
