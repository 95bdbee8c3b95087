"""Storage names are derived from clinic_env in one place (group_vars/all/storage.yml), and the
lab, the tests and the deploy workflow (lab.settings.storage) read the names Ansible derives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import settings

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE = str(Path(sys.executable).parent / "ansible")
NAMES = sorted(yaml.safe_load(settings.STORAGE_FILE.read_text()))


def derived_by_ansible(env: str, *extra: str) -> dict[str, Any]:
    """The names as a play sees them: the root group_vars beside the playbooks, the inventory's
    environment facts (given as extra vars, which the root group_vars do not define)."""
    facts = ROOT / "inventories" / env / "group_vars" / "all"
    names = "{{ {" + ", ".join(f"'{n}': {n}" for n in NAMES) + "} }}"
    run = subprocess.run(
        [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "--playbook-dir", str(ROOT),
         "-e", f"@{facts / 'environment.yml'}", "-e", f"@{facts / 'storage.yml'}", *extra,
         "-m", "ansible.builtin.debug", "-a", f"msg={names}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )  # fmt: skip
    return json.loads(run.stdout.split(" => ", 1)[1])["msg"]


@pytest.mark.parametrize("env", ["dev", "stage", "prod", "lab"])
def test_the_lab_reads_the_names_ansible_derives(env: str) -> None:
    names = settings.storage(env)
    assert names == derived_by_ansible(env)
    assert names["clinic_backup_bucket"] == f"clinic-{env}-backups-ap-south-1"
    assert names["clinic_kms_key_alias"] == f"alias/clinic-{env}"
    assert len(set(v for k, v in names.items() if k.endswith("_bucket"))) == 4


def test_an_inventory_keeps_an_older_name(tmp_path: Path) -> None:
    overrides = {"backup_bucket": "clinic-backups-legacy", "log_group_prefix": "/legacy/stage"}
    extra = ["-e", json.dumps({"clinic_storage_names": overrides})]
    names = derived_by_ansible("stage", *extra)
    assert names["clinic_backup_bucket"] == "clinic-backups-legacy"
    assert names["clinic_log_group_prefix"] == "/legacy/stage"
    assert names["clinic_audit_archive_bucket"] == "clinic-stage-audit-archive-ap-south-1"
    # lab.settings.storage applies an inventory's overrides the same way.
    inventory = tmp_path / "inventories" / "stage" / "group_vars" / "all"
    inventory.mkdir(parents=True)
    for name in ("environment", "storage"):
        facts = yaml.safe_load(
            (ROOT / "inventories/stage/group_vars/all" / f"{name}.yml").read_text()
        )
        if name == "storage":
            facts["clinic_storage_names"] = overrides
        (inventory / f"{name}.yml").write_text(yaml.safe_dump(facts))
    assert settings.storage("stage", root=tmp_path) == names
