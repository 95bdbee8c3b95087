"""Kill the restore drill's unit at one of its steps, as an OOM kill or a lost host would.

Runs on the drill's host (bk-restore), started by tests/test_restore_drill.py before the drill
playbook, with the members' pymongo virtualenv:

    drill_killer.py <point> <scratch port> <unit> <original marker>...

Points (each holds the drill at its step with what a real server offers, then SIGKILLs the unit):
- during-restore: as soon as the scratch instance listens; the drill starts mongorestore then;
- after-restore: mongorestore has restored the archive and exited (the test runs it through
  HELD_RESTORE, which then waits for this script): the scratch instance holds every original;
- during-masking: as after-restore, but the scratch instance is fsync-locked first and the
  restore then let go: the drill reads and counts, and the masking step's first write (dropping
  the source's users) waits;
- before-copy: the scratch instance holds no original value any more (masking done); the test
  has fsync-locked the target set, so the copy's first write waits.

Just before the kill it writes to SCRATCH_USERS how many users the scratch instance holds (reads
go on under an fsync lock); then it touches KILLED. It gives up after five minutes.

The scratch instance requires TLS with a certificate of the environment's CA, as the drill starts
it with the host's certificate (the scenario's sets require TLS). This script, as root, presents
that certificate; at after-restore, when the instance holds every original value, it first writes
to STRANGERS what a client without it got: a plaintext one and a TLS one with no certificate.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
from pymongo import MongoClient
from pymongo.errors import PyMongoError

STATE = Path("/run/clinic-drill-test")
RESTORED = STATE / "restored"
RELEASE = STATE / "release"
KILLED = STATE / "killed"
SCRATCH_USERS = STATE / "scratch_users"
STRANGERS = STATE / "strangers"
# The host's certificate and its CA, as tls_certificate writes them (group_vars/all/tls.yml).
CA_FILE = "/etc/clinic/tls/ca.pem"
HOST_PEM = "/etc/clinic/tls/host.pem"
# Installed by the test as restore_drill_mongorestore: the real mongorestore, then RESTORED, then
# a wait for RELEASE (at most five minutes), then mongorestore's exit code.
HELD_RESTORE = "/usr/local/bin/mongorestore-held"
# Seconds the drill gets to read, count and reach its first masking write on the locked instance.
REACH_MASKING = 3
DEADLINE = 300


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"drill_killer: the drill did not reach its step within {DEADLINE} s")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def scratch(port: int, **tls: Any) -> MongoClient[dict[str, Any]]:
    """A client of the scratch instance: by default with the host's certificate."""
    options = tls or {"tls": True, "tlsCAFile": CA_FILE, "tlsCertificateKeyFile": HOST_PEM}
    return MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true",
        serverSelectionTimeoutMS=5000,
        **options,
    )


def stranger(port: int, **tls: Any) -> str:
    """'read' when a client with these options lists the restored patients, else 'refused'."""
    try:
        with scratch(port, **tls) as client:
            client.clinic.patients.find_one()
    except PyMongoError:
        return "refused"
    return "read"


def masked(port: int, markers: list[bytes]) -> bool:
    """Every patient in the scratch instance, and none with an original value."""
    try:
        with scratch(port) as client:
            patients = list(client.clinic.patients.find())
    except PyMongoError:  # not up yet
        return False
    encoded = [bson.encode(doc) for doc in patients]
    return bool(encoded) and not any(m in doc for doc in encoded for m in markers)


def main() -> None:
    point, port, unit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    markers = [marker.encode() for marker in sys.argv[4:]]
    if point == "during-restore":
        wait_until(lambda: listening(port))
    elif point in ("after-restore", "during-masking"):
        wait_until(RESTORED.exists)
        if point == "after-restore":
            plaintext = stranger(port, tls=False)
            no_certificate = stranger(port, tls=True, tlsCAFile=CA_FILE)
            STRANGERS.write_text(f"plaintext={plaintext} no-certificate={no_certificate}")
        if point == "during-masking":
            with scratch(port) as client:
                client.admin.command("fsync", lock=True)
            RELEASE.touch()
            time.sleep(REACH_MASKING)
    elif point == "before-copy":
        wait_until(lambda: masked(port, markers))
    else:
        sys.exit(f"drill_killer: unknown point {point}")
    if point != "during-restore":
        with scratch(port) as client:
            SCRATCH_USERS.write_text(str(client.admin["system.users"].count_documents({})))
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", f"{unit}.service"], check=True)
    KILLED.touch()


if __name__ == "__main__":
    main()
