"""A stand-in for AWS's download bucket of the CloudWatch agent, for the s3_deb path in tests.

    python molecule/cloudwatch_agent/s3_fixture.py --deb PATH --version VERSION --out DIR

The lab cannot reach S3, so the test double's .deb is published the way AWS publishes the agent:
`debian/amd64/<version>/amazon-cloudwatch-agent.deb` with a detached signature `.deb.sig`, and the
public key at `assets/amazon-cloudwatch-agent.gpg`. The signing key is a throw-away key made here
(its secret half stays in DIR/.gnupg, which is not served). For the fail-closed tests, `impostor/`
holds a signature of the same .deb by a second key, and that key. DIR/fixture.json records the
.deb's sha256 and both fingerprints. A second run with the same .deb changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

KEY_NAME = "amazon-cloudwatch-agent.gpg"
UIDS = {
    "signer": "CloudWatch agent test signing key (clinic.infra lab, never for production)",
    "impostor": "Impostor key (clinic.infra lab, signs what it should not)",
}


def gpg(home: Path, *args: str) -> str:
    env = os.environ | {"GNUPGHOME": str(home), "LC_ALL": "C"}
    done = subprocess.run(
        ["gpg", "--batch", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def make_key(home: Path, uid: str) -> str:
    """A new ed25519 signing key without passphrase; its fingerprint."""
    quiet = ["--pinentry-mode", "loopback", "--passphrase", ""]
    gpg(home, *quiet, "--quick-generate-key", uid, "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys", uid).splitlines()
    return next(line.split(":")[9] for line in listing if line.startswith("fpr:"))


def publish(home: Path, fingerprint: str, deb: Path, sig: Path, key: Path) -> None:
    sig.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    gpg(home, "--yes", "--local-user", fingerprint, "--detach-sign", "-o", str(sig), str(deb))
    gpg(home, "--yes", "--export", "-o", str(key), fingerprint)


def build(deb: Path, version: str, out: Path) -> dict[str, str]:
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    record = out / "fixture.json"
    if record.is_file():
        known = json.loads(record.read_text())
        if known.get("sha256") == digest and known.get("version") == version:
            return known
    if out.exists():
        shutil.rmtree(out)
    home = out / ".gnupg"
    home.mkdir(parents=True, mode=0o700)
    path = out / "debian" / "amd64" / version.rsplit("-", 1)[0] / "amazon-cloudwatch-agent.deb"
    path.parent.mkdir(parents=True)
    shutil.copyfile(deb, path)
    fingerprints = {role: make_key(home, uid) for role, uid in UIDS.items()}
    signature = path.with_name(path.name + ".sig")
    publish(home, fingerprints["signer"], path, signature, out / "assets" / KEY_NAME)
    impostor = out / "impostor"
    publish(home, fingerprints["impostor"], path, impostor / signature.name, impostor / KEY_NAME)
    gpg_env = os.environ | {"GNUPGHOME": str(home)}
    subprocess.run(["gpgconf", "--kill", "all"], env=gpg_env, check=False)
    known = {
        "version": version,
        "sha256": digest,
        "deb_path": str(path.relative_to(out)),
        "fingerprint": fingerprints["signer"],
        "impostor_fingerprint": fingerprints["impostor"],
    }
    record.write_text(json.dumps(known, indent=2) + "\n")
    return known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in for AWS's CloudWatch agent bucket")
    parser.add_argument("--deb", type=Path, required=True)
    parser.add_argument("--version", required=True, help="Debian version of the package")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    before = (
        (args.out / "fixture.json").read_text() if (args.out / "fixture.json").is_file() else ""
    )
    known = build(args.deb, args.version, args.out)
    print("unchanged" if before and json.loads(before) == known else "built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
