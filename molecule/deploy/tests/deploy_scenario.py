"""Names and addresses of the deploy scenario (molecule.yml), shared by its test modules."""

from __future__ import annotations

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
# The secrets (names of clinic_secrets) a deploy hands to the API and its migrations.
SECRET_NAMES = ("app_jwt_secret", "mongodb_app_password")


def aws(service: str) -> Any:
    return boto3.client(service, region_name="ap-south-1")


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
