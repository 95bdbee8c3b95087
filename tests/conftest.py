"""Settings of every test process under tests/.

`make unit` runs the tests in parallel worker processes (pytest-xdist, a file per worker at a
time). The ansible-playbook runs of two workers must not share Ansible's fact cache (ansible.cfg:
jsonfile in .ansible/facts): both would write the facts of localhost to one file, and a run that
reads the file while the other writes it fails. Each worker gets a cache directory of its own.

The tests' ansible-playbook runs use Mitogen's strategy, as the scenarios and the lab do, unless
CLINIC_UNIT_STRATEGY names another (linear: Ansible's own). Against moto most tasks are AWS
modules, each of which imports boto3 afresh in a new Python without it; test_iam.py took 72 s
with Mitogen and 102 s without.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import strategy

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(
        strategy.environment(os.environ.get("CLINIC_UNIT_STRATEGY", strategy.DEFAULT))
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(ROOT / ".ansible" / "facts" / worker)
