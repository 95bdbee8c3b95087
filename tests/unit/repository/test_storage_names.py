"""Storage names are derived from clinic_env in one place (group_vars/all/storage.yml), and the
lab, the tests and the deploy workflow (lab.settings.storage) read the names Ansible derives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import settings
from tests.harness.controller_playbook import wired

ROOT = Path(__file__).resolve().parents[3]
NAMES = sorted(yaml.safe_load(settings.STORAGE_FILE.read_text()))


def derived_by_ansible(env: str, *extra: str) -> dict[str, Any]:
    return wired(env, NAMES, *extra)


@pytest.mark.parametrize("env", ["dev", "stage", "prod", "lab"])
def test_the_lab_reads_the_names_ansible_derives(env: str) -> None:
    names = settings.storage(env)
    assert names == derived_by_ansible(env)
    assert names["clinic_backup_bucket"] == f"clinic-{env}-backups-ap-south-1"
    assert names["clinic_kms_key_alias"] == f"alias/clinic-{env}"
    assert len(set(v for k, v in names.items() if k.endswith("_bucket"))) == 5


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
