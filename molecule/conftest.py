"""Fixtures shared by every scenario's testinfra tests.

Hosts are reached with testinfra's docker backend by container name; commands that must cross the
network (SSH logins, port probes) run inside a client container against a server's address.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import testinfra
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from testinfra.host import Host

ROOT = Path(__file__).resolve().parents[1]
# Scenario tests may use the project's test helpers (tests.harness), wherever pytest runs from.
sys.path.insert(0, str(ROOT))
from tests.harness.pki import Authority, key_file_pem  # noqa: E402

# Every secret of an environment, named once (clinic_secrets); services.yml seeds them in moto.
SECRETS = yaml.safe_load((ROOT / "group_vars" / "all" / "secrets.yml").read_text())[
    "clinic_secrets"
]

PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print('open')
except ConnectionRefusedError:
    print('refused')
except (TimeoutError, socket.timeout):
    print('timeout')
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run a scenario's test modules in the order its conftest names in MODULE_ORDER (modules it
    does not name last), whatever order the files were given in."""
    orders = {
        Path(plugin.__file__).parent: plugin.MODULE_ORDER
        for plugin in config.pluginmanager.get_plugins()
        if hasattr(plugin, "MODULE_ORDER") and getattr(plugin, "__file__", None)
    }
    for here, order in orders.items():
        slots = [index for index, item in enumerate(items) if item.path.parent == here]

        def rank(item: pytest.Item, order: tuple[str, ...] = order) -> int:
            return order.index(item.path.stem) if item.path.stem in order else len(order)

        for index, item in zip(slots, sorted((items[i] for i in slots), key=rank), strict=True):
            items[index] = item


@pytest.fixture(scope="session")
def host_named() -> Callable[[str], Host]:
    """Return the testinfra host of a container of the scenario."""
    return lambda name: testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def secret_names() -> list[str]:
    """The names of clinic_secrets (group_vars/all/secrets.yml)."""
    return list(SECRETS)


@pytest.fixture(scope="session")
def secret() -> Callable[..., str]:
    """The decrypted value of a secret (a name of clinic_secrets, e.g. mongodb_admin_password) of an
    environment (default: the scenarios' clinic_env, molecule) from SSM: the scenario's moto."""
    ssm = boto3.client("ssm")
    cache: dict[str, str] = {}

    def read(name: str, env: str = "molecule") -> str:
        parameter = f"/clinic/{env}/{SECRETS[name]['path']}"
        if parameter not in cache:
            reply = ssm.get_parameter(Name=parameter, WithDecryption=True)
            cache[parameter] = reply["Parameter"]["Value"]
        return cache[parameter]

    return read


@pytest.fixture(scope="session")
def authority_at() -> Callable[[str], Authority]:
    """The CA that tls_certificate keeps under an SSM prefix (<prefix>/ca_key and
    <prefix>/ca_certificate) in the scenario's moto, e.g. the environment's /clinic/<env>/tls."""
    ssm = boto3.client("ssm")

    def load(prefix: str) -> Authority:
        def read(name: str) -> bytes:
            reply = ssm.get_parameter(Name=f"{prefix}/{name}", WithDecryption=True)
            return reply["Parameter"]["Value"].encode()

        key = serialization.load_pem_private_key(read("ca_key"), password=None)
        return Authority(key, x509.load_pem_x509_certificate(read("ca_certificate")))  # type: ignore[arg-type]

    return functools.cache(load)


@pytest.fixture(scope="session")
def client_tls_at(
    authority_at: Callable[[str], Authority], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """pymongo's TLS options of the test machine for the CA under an SSM prefix (authority_at):
    the CA file and a client certificate that CA signed."""

    def options(prefix: str) -> dict[str, Any]:
        authority = authority_at(prefix)
        base = tmp_path_factory.mktemp("client-tls")
        key, cert = authority.issue("molecule operator", [], server=False)
        files = {
            "ca.pem": authority.cert.public_bytes(serialization.Encoding.PEM),
            "client.pem": key_file_pem(cert, key),
        }
        for name, data in files.items():
            (base / name).write_bytes(data)
            (base / name).chmod(0o600)
        return {
            "tls": True,
            "tlsCAFile": str(base / "ca.pem"),
            "tlsCertificateKeyFile": str(base / "client.pem"),
        }

    return functools.cache(options)


@pytest.fixture(scope="session")
def ephemeral() -> Path:
    """The scenario's ephemeral directory (keys, generated passwords, inventory)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


@pytest.fixture(scope="session")
def tcp_state() -> Callable[..., str]:
    """'open', 'refused' or 'timeout' for a TCP connection from a client host to address:port."""

    def probe(client: Host, address: str, port: int, timeout: float = 3.0) -> str:
        return client.check_output(
            "python3 -c %s %s %s %s", PROBE, address, str(port), str(timeout)
        ).strip()

    return probe


@pytest.fixture(scope="session")
def playbook_recap() -> Callable[[str, str], dict[str, int]]:
    """The PLAY RECAP counters of one host in an ansible-playbook output."""
    return _playbook_recap


def _playbook_recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    if not match:
        raise AssertionError(f"no PLAY RECAP line for {host} in:\n{output[-2000:]}")
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


Run = subprocess.CompletedProcess[str]


def playbook_command(playbook: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one of the scenario's playbooks against the scenario
    inventory, as molecule runs it; the output plain and unwrapped, so that the PLAY RECAP and
    the failures can be parsed."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    command = ["ansible-playbook", "-i", inventory, str(scenario / playbook), *args]
    env = os.environ | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "COLUMNS": "300"}
    return command, env


@pytest.fixture(scope="session")
def ansible_playbook() -> Callable[..., Run]:
    """Run one of the scenario's playbooks to its end (playbook_command); extra arguments go to
    ansible-playbook as they are (`"-e", "name=value"`)."""

    def run(playbook: str, *args: str, timeout: float = 1800) -> Run:
        command, env = playbook_command(playbook, *args)
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    return run


@pytest.fixture(scope="session")
def start_playbook() -> Callable[..., subprocess.Popen[str]]:
    """Start one of the scenario's playbooks (playbook_command) in a process group of its own,
    which a test may kill as a lost controller or a Ctrl-C would end the run; the output goes to
    a pipe, read with communicate()."""

    def start(playbook: str, *args: str) -> subprocess.Popen[str]:
        command, env = playbook_command(playbook, *args)
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip

    return start


@pytest.fixture(scope="session")
def converge(ansible_playbook: Callable[..., Run]) -> Callable[..., Run]:
    """Run the scenario's converge.yml with extra ansible-playbook arguments."""
    return lambda *args, **kwargs: ansible_playbook("converge.yml", *args, **kwargs)


def output_tail(result: Run, size: int = 4000) -> str:
    """The end of a run's output, for assertion messages."""
    return f"rc={result.returncode}\n{result.stdout[-size:]}\n{result.stderr[-size:]}"


def parse_recap(result: Run) -> dict[str, dict[str, int]]:
    """Host -> PLAY RECAP counters of every host of a run (fails if the run has no recap)."""
    _, found, tail = result.stdout.rpartition("PLAY RECAP")
    if not found:
        pytest.fail(f"no PLAY RECAP in:\n{output_tail(result)}")
    counters: dict[str, dict[str, int]] = {}
    for line in tail.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if match:
            pairs = re.findall(r"(\w+)=(\d+)", match.group(2))
            counters[match.group(1)] = {key: int(value) for key, value in pairs}
    return counters


def changed_tasks(result: Run) -> list[str]:
    """'task: host' for every change a run reported, for assertion messages."""
    changes: list[str] = []
    task = ""
    for line in result.stdout.splitlines():
        if header := re.match(r"^TASK \[(.*)\]", line):
            task = header.group(1)
        elif change := re.match(r"^changed: \[([^\]]+)\]", line):
            changes.append(f"{task}: {change.group(1)}")
    return changes


def failure_text(result: Run, host: str) -> str:
    """A host's last 'fatal' result (ansible prints it on stderr), whitespace collapsed."""
    blocks = re.findall(
        rf"^fatal: \[{re.escape(host)}\]: FAILED! =>(.*?)(?=^\S|\Z)",
        result.stdout + result.stderr,
        re.MULTILINE | re.DOTALL,
    )
    if not blocks:
        pytest.fail(f"no failure of {host} in:\n{output_tail(result)}")
    return " ".join(blocks[-1].split())


@pytest.fixture(scope="session")
def recap() -> Callable[[Run], dict[str, dict[str, int]]]:
    return parse_recap


@pytest.fixture(scope="session")
def tail() -> Callable[..., str]:
    return output_tail


@pytest.fixture(scope="session")
def changes() -> Callable[[Run], list[str]]:
    return changed_tasks


@pytest.fixture(scope="session")
def failure() -> Callable[[Run, str], str]:
    return failure_text
