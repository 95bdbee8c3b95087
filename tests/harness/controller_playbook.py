"""Run an operations playbook of this checkout (hosts: localhost) with an environment's inventory,
or read the variables such a play sees.

The environment is the one `moto_environment()` yields, so the playbook's modules and lookups, and
the aws_ec2 inventory, talk to moto. Shared by the backup storage and monitoring tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.moto_ec2 import moto_environment

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        """The localhost line of PLAY RECAP as {ok: .., changed: .., failed: ..}."""
        line = re.search(r"^localhost\s+:(.*)$", self.output, flags=re.MULTILINE)
        assert line, f"no recap line for localhost:\n{self.output}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}

    @property
    def tasks(self) -> list[str]:
        """Names of the tasks the run started, in order."""
        return re.findall(r"^TASK \[(.+?)\] \*+$", self.output, flags=re.MULTILINE)


def run_playbook(
    playbook: str,
    inventory: Path,
    env: dict[str, str],
    *args: str,
    timeout: float = 300,
) -> Run:
    """ansible-playbook playbooks/<playbook> -i <inventory> <args>; never raises on failure."""
    executable = shutil.which("ansible-playbook", path=env["PATH"])
    assert executable, "ansible-playbook is not on the PATH"
    command = [
        executable,
        str(ROOT / "playbooks" / playbook),
        "-i",
        str(inventory),
        *args,
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env
        | {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
        },
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout + result.stderr)


def inventory_copy(env_name: str, destination: Path) -> Path:
    """A copy of inventories/<env_name> to edit: a test may remove or change an environment fact."""
    target = destination / env_name
    shutil.copytree(ROOT / "inventories" / env_name, target)
    return target


def reset_moto(env: dict[str, str]) -> None:
    """Empty every moto backend: they live in this process and outlive one server."""
    request = urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200


@contextmanager
def empty_moto() -> Iterator[dict[str, str]]:
    """moto_environment() on empty backends, left empty for the tests that follow."""
    with moto_environment() as env:
        reset_moto(env)
        try:
            yield env
        finally:
            reset_moto(env)


def wired(env: str, names: list[str], *extra: str) -> dict[str, Any]:
    """Variables as a play of the environment sees them: the root group_vars beside the playbooks,
    the inventory's environment and storage facts given as extra vars (the root group_vars define
    none of them), then `extra` arguments."""
    facts = ROOT / "inventories" / env / "group_vars" / "all"
    expression = "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} }}"
    command = [
        str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,",
        "-c", "local", "--playbook-dir", str(ROOT),
        "-e", f"@{facts / 'environment.yml'}", "-e", f"@{facts / 'storage.yml'}", *extra,
        "-m", "ansible.builtin.debug", "-a", f"msg={expression}",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )  # fmt: skip
    return dict(json.loads(run.stdout.split(" => ", 1)[1])["msg"])
