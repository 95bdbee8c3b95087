"""Bad inputs of playbooks/backup.yml fail before any change, with a message saying what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROOT

BACKUP_PLAYBOOK = str(ROOT / "playbooks" / "backup.yml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("backup_cron_bucket=", "backup_cron needs an environment name"),
        (
            "backup_cron_audit_bucket=Not_A_Bucket",
            "the audit bucket backup_cron_audit_bucket (got 'Not_A_Bucket')",
        ),
        ("backup_cron_kms_key_alias=", "customer managed key alias 'alias/<name>' (got '')"),
        ("backup_cron_kms_key_alias=clinic-molecule", "(got 'clinic-molecule')"),
        (
            "backup_cron_kms_key_alias=alias/clinic-absent",
            "alias/clinic-absent does not exist in ap-south-1",
        ),
        ("backup_cron_local_keep=-1", "0 to 30 (got -1)"),
        ("backup_cron_local_keep=forever", "backup_cron_local_keep"),
        ("backup_cron_timeout_seconds=5", "backup_cron_timeout_seconds at least 60 (got 5)"),
        ("backup_cron_max_lag_seconds=5", "backup_cron_max_lag_seconds 30 to 86400 (got 5;"),
        ("backup_cron_max_lag_seconds=soon", "backup_cron_max_lag_seconds"),
        (
            "backup_cron_tls_certificate_key_file=",
            "backup_cron_tls_ca_file, when set, needs backup_cron_tls_certificate_key_file",
        ),
        (
            "backup_cron_tls_ca_file=/etc/clinic/tls/absent.pem",
            "backup_cron_tls_ca_file (/etc/clinic/tls/absent.pem) and"
            " backup_cron_tls_certificate_key_file (/etc/clinic/tls/host.pem) must exist",
        ),
    ],
    ids=[
        "no-bucket",
        "bad-audit-bucket",
        "no-key-alias",
        "alias-without-prefix",
        "absent-key-alias",
        "negative-retention",
        "retention-not-a-number",
        "short-timeout",
        "lag-threshold-too-small",
        "lag-threshold-not-a-number",
        "tls-without-certificate",
        "tls-ca-file-absent",
    ],
)
def test_bad_input_is_refused_before_any_change(
    ansible_playbook: Any, recap: Any, tail: Any, extra: str, message: str
) -> None:
    result = ansible_playbook(BACKUP_PLAYBOOK, "-e", extra)
    assert result.returncode != 0, tail(result)
    text = " ".join((result.stdout + result.stderr).split())
    assert message in text, tail(result)
    counters = recap(result)
    assert counters["bk2"]["failed"] == 1
    assert all(host["changed"] == 0 for host in counters.values()), counters
