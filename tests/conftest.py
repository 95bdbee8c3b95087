"""Settings of every test process under tests/.

`make unit` runs the tests in parallel worker processes (pytest-xdist, a file per worker at a
time). The ansible-playbook runs of two workers must not share Ansible's fact cache (ansible.cfg:
jsonfile in .ansible/facts): both would write the facts of localhost to one file, and a run that
reads the file while the other writes it fails. Each worker gets a cache directory of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(ROOT / ".ansible" / "facts" / worker)
