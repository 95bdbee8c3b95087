"""The collection builds, carrying what users run and leaving the test tree out."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_collection_builds_with_roles_and_plugins_only(tmp_path: Path) -> None:
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run(
        [str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (artifact,) = tmp_path.glob("clinic-infra-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
    assert "roles/base_hardening/tasks/main.yml" in names
    assert "plugins/modules/sysctl_runtime.py" in names
    assert "meta/runtime.yml" in names
    dev_only = {"tests", "molecule", "inventories", ".venv", ".github", "execution-environment.yml"}
    leaked = {n for n in names if n.split("/")[0] in dev_only}
    assert not leaked
    assert not [n for n in names if "__pycache__" in n]
