"""The systemd timer option: timers replace the cron entries, the sandboxed service runs a backup,
and going back to cron removes the timers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from conftest import ENV, ROOT
from testinfra.host import Host

BACKUP_PLAYBOOK = str(ROOT / "playbooks" / "backup.yml")
JOBS = ("clinic-backup", "clinic-oplog-archive", "clinic-audit-export")


def test_systemd_timers_replace_cron_and_back(
    ansible_playbook: Any,
    bk2: Host,
    first_backup: dict[str, Any],
    tail: Any,
    secret: Callable[..., str],
) -> None:
    timers = ansible_playbook(BACKUP_PLAYBOOK, "-e", "backup_cron_scheduler=systemd")
    assert timers.returncode == 0, tail(timers)
    assert not bk2.file("/etc/cron.d/clinic-backup").exists
    for job in JOBS:
        timer = bk2.service(f"{job}.timer")
        assert timer.is_enabled and timer.is_running, job

    run = bk2.run("systemctl start clinic-backup.service")
    assert run.rc == 0, run.stderr + bk2.run("journalctl -u clinic-backup.service -n 20").stdout
    last = json.loads(bk2.file("/var/log/clinic-backup/backup.log").content_string.splitlines()[-1])
    assert last["event"] == "succeeded"

    # Back to cron in a verbose run, which must not show the backup user's password.
    cron = ansible_playbook(BACKUP_PLAYBOOK, "-vvv")
    assert cron.returncode == 0, tail(cron)
    assert secret("mongodb_backup_password", ENV) not in cron.stdout + cron.stderr
    assert bk2.file("/etc/cron.d/clinic-backup").exists
    for job in JOBS:
        for unit in ("timer", "service"):
            assert not bk2.file(f"/etc/systemd/system/{job}.{unit}").exists
        assert bk2.run(f"systemctl is-active {job}.timer").stdout.strip() != "active"
