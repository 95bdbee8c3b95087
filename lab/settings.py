"""Where the lab keeps things, and what lab/platforms.yml and the lab inventory say it holds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAB_DIR = ROOT / "lab"
PLATFORMS_FILE = LAB_DIR / "platforms.yml"
INVENTORY_DIR = ROOT / "inventories" / "lab"
GROUP_VARS_ALL = INVENTORY_DIR / "group_vars" / "all"
# Every secret of an environment, named once (clinic_secrets); the lab seeds them under /clinic/lab.
SECRETS_FILE = ROOT / "group_vars" / "all" / "secrets.yml"
# The storage names every environment derives from clinic_env and its region.
STORAGE_FILE = ROOT / "group_vars" / "all" / "storage.yml"
# Where tls_certificate puts a host's certificate, and which MongoDB modes have clients use it.
TLS_FILE = ROOT / "group_vars" / "all" / "tls.yml"
CLIENT_TLS_MODES = ("preferTLS", "requireTLS")
DEFAULT_TLS_MODE = "requireTLS"
DEFAULT_APP_HTTPS = True
# Generated material: deploy key, known host keys, secrets, moto's pid file and log, run logs.
STATE_DIR = LAB_DIR / ".state"
STATE_FILE = LAB_DIR / "state.json"
REGION = "ap-south-1"
ENVIRONMENT = "lab"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass(frozen=True)
class Host:
    """One lab host: its container, its address on clinic-lab, the Role tag of its instance and
    any other tags it carries (lab_tags: MongoDBMember=hidden for the backup member)."""

    container: str
    address: str
    role: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name_tag(self) -> str:
        return f"clinic-{self.container}"


@dataclass(frozen=True)
class Secret:
    """A SecureString under /clinic/lab/ (clinic_ssm_prefix) and the length of its random value."""

    name: str
    length: int

    @property
    def parameter(self) -> str:
        return f"/clinic/{ENVIRONMENT}/{self.name}"


@dataclass(frozen=True)
class Lab:
    hosts: list[Host]
    network: str
    subnet: str
    gateway: str
    apt_repo_address: str
    moto_address: str
    moto_port: int
    secrets: list[Secret]
    deploy_user: str

    @property
    def endpoint(self) -> str:
        return f"http://{self.moto_address}:{self.moto_port}"

    def by_role(self, role: str) -> list[Host]:
        return [host for host in self.hosts if host.role == role]


def load(path: Path = PLATFORMS_FILE) -> Lab:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    platforms = data["molecule_yml"]["platforms"]
    (network,) = {n["name"] for p in platforms for n in p["docker_networks"]}
    (ipam,) = platforms[0]["docker_networks"][0]["ipam_config"]
    return Lab(
        hosts=[
            Host(p["name"], p["networks"][0]["ipv4_address"], p["lab_role"], p.get("lab_tags", {}))
            for p in platforms
        ],
        network=network,
        subnet=ipam["subnet"],
        gateway=ipam["gateway"],
        apt_repo_address=data["harness_apt_repo_address"],
        moto_address=data["harness_moto_address"],
        moto_port=int(data["harness_moto_port"]),
        secrets=secrets(),
        deploy_user=data["lab_deploy_user"],
    )


def secrets(path: Path = SECRETS_FILE) -> list[Secret]:
    """The environment's secrets as group_vars/all/secrets.yml names them."""
    wanted = yaml.safe_load(path.read_text())["clinic_secrets"]
    return [Secret(s["path"], int(s["length"])) for s in wanted.values()]


def group_vars(name: str) -> dict[str, Any]:
    """Plain values of one file of inventories/lab/group_vars/all (no templating)."""
    return yaml.safe_load((GROUP_VARS_ALL / f"{name}.yml").read_text())


def storage(env: str = ENVIRONMENT, root: Path = ROOT) -> dict[str, str]:
    """An environment's storage names (buckets, KMS key alias, log group prefix) as
    group_vars/all/storage.yml derives them from its inventory's facts (under root), overrides
    included."""
    facts: dict[str, Any] = {}
    for name in ("environment", "storage"):
        path = root / "inventories" / env / "group_vars" / "all" / f"{name}.yml"
        facts |= yaml.safe_load(path.read_text())
    wiring: dict[str, str] = yaml.safe_load(STORAGE_FILE.read_text())
    # Ansible's undefined values chain (clinic_storage_names.<key> when it is unset); so do these.
    jinja = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    return {name: jinja.from_string(value).render(facts | wiring) for name, value in wiring.items()}


def member_tls() -> dict[str, Any]:
    """pymongo's TLS options of a client on a member of the lab's set, as the platform's own
    clients get them (group_vars/all/tls.yml): none unless the lab's clinic_mongodb_tls_mode has
    clients speak TLS, then the CA file and the member's certificate (root's and its group's)."""
    mode = group_vars("environment").get("clinic_mongodb_tls_mode", DEFAULT_TLS_MODE)
    if mode not in CLIENT_TLS_MODES:
        return {}
    files = tls_files()
    return {
        "tls": True,
        "tlsCAFile": files["clinic_tls_ca_file"],
        "tlsCertificateKeyFile": files["clinic_tls_certificate_key_file"],
    }


def app_https() -> bool:
    """Whether the lab's API nodes serve HTTPS (clinic_app_https, group_vars/all/tls.yml)."""
    return bool(group_vars("environment").get("clinic_app_https", DEFAULT_APP_HTTPS))


def tls_files() -> dict[str, str]:
    """The paths of the CA file and the host's certificate and key on every lab host."""
    wiring: dict[str, str] = yaml.safe_load(TLS_FILE.read_text())
    return {
        name: jinja2.Environment().from_string(wiring[name]).render(wiring)
        for name in ("clinic_tls_ca_file", "clinic_tls_certificate_key_file")
    }


def aws_environment(lab: Lab) -> dict[str, str]:
    """os.environ pointing boto3 and Ansible's AWS plugins at the lab's moto, and no profile."""
    env = {**os.environ, **FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": lab.endpoint}
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        env.pop(name, None)
    return env
