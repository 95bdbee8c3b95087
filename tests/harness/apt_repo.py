"""The harness's local signed apt repository of every test-double package, built once per recipe.

    python -m tests.harness.apt_repo --out DIR [--schema PATH]

Builds `mongodb-org-server`, `mongodb-database-tools` and `amazon-cloudwatch-agent` from the
doubles under `tests/doubles/` and lays them out in DIR as a signed apt repository (suites
bookworm and trixie, component main, amd64) with the public key in `DIR/repo-key.asc`. Test hosts
use it as `deb [signed-by=/etc/apt/keyrings/<name>.asc] http://<address> bookworm main`.

DIR keeps a stamp with the hash of the recipe (the doubles' sources, debbuild.py, the schema the
CloudWatch agent double's package installs, which is the project's own
tests/doubles/cloudwatch_agent/agent_schema.json unless --schema names another, and this file).
When the stamp matches, nothing is rebuilt. The signing key is made on the first build, in a GnuPG
home beside DIR (`.<DIR name>.gnupg`, 0700), and reused by every rebuild into DIR, so hosts that
trust the repository keep trusting it; its secret half is never written to DIR, which is served
over HTTP as it is. DIR itself is kept (only its content is replaced), so a container that has it
bind-mounted sees a rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.doubles import debbuild
from tests.doubles.cloudwatch_agent import packaging as cloudwatch_agent
from tests.doubles.mongodb.packaging import build as mongodb

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = ROOT / "tests" / "doubles"
SUITES = ("bookworm", "trixie")
COMPONENT = "main"
ARCHITECTURES = ("amd64",)
CLOUDWATCH_AGENT_VERSION = "1.300070.0-1"
STAMP = ".recipe-sha256"


@dataclass(frozen=True)
class Repository:
    """The repository in `path`, the hash of its recipe, and whether this call built it."""

    path: Path
    recipe: str
    built: bool

    @property
    def public_key(self) -> Path:
        return self.path / "repo-key.asc"


def _recipe_files(schema: Path) -> Iterator[tuple[str, Path]]:
    """Every input of the packages, named stably: the doubles' sources (not their tests)."""
    for path in sorted(DOUBLES.rglob("*")):
        rel = path.relative_to(DOUBLES)
        if not path.is_file() or "__pycache__" in rel.parts or "tests" in rel.parts:
            continue
        if path.name.startswith("test_"):
            continue
        yield f"tests/doubles/{rel.as_posix()}", path
    # The schema the package installs; by default also one of the doubles' files above.
    yield "cloudwatch-agent-schema.json", schema
    yield "tests/harness/apt_repo.py", Path(__file__).resolve()


def recipe_hash(schema: Path = cloudwatch_agent.DEFAULT_SCHEMA) -> str:
    """SHA-256 over the names and contents of every input of the repository."""
    digest = hashlib.sha256()
    for name, path in _recipe_files(schema):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _build_into(staging: Path, schema: Path, gnupg_home: Path) -> None:
    debs_dir = staging / "debs"
    debs = mongodb.build_packages(debs_dir)
    debs.append(cloudwatch_agent.build(schema, CLOUDWATCH_AGENT_VERSION, debs_dir))
    debbuild.build_signed_repo(
        debs,
        staging / "repo",
        suites=SUITES,
        component=COMPONENT,
        architectures=ARCHITECTURES,
        gnupg_home=gnupg_home,
    )


def signing_home(out: Path) -> Path:
    """Where the repository in `out` keeps its signing key: beside it, never inside (what is in
    `out` is served), so that a rebuild signs with the key the hosts already trust, as a vendor's
    repository keeps its key from one release to the next."""
    return out.parent / f".{out.name}.gnupg"


def _replace_content(out: Path, new: Path) -> None:
    """Empty `out` and move the content of `new` into it (the directory itself stays)."""
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for child in new.iterdir():
        child.rename(out / child.name)


def ensure_repository(out: Path, schema: Path = cloudwatch_agent.DEFAULT_SCHEMA) -> Repository:
    """Build the repository into `out` unless `out` already holds one of the same recipe."""
    debbuild.require_tools("dpkg-deb", "gpg", "gpgconf")
    if not schema.is_file():
        raise FileNotFoundError(f"CloudWatch agent JSON schema not found: {schema}")
    recipe = recipe_hash(schema)
    out = out.resolve()
    stamp = out / STAMP
    if stamp.is_file() and stamp.read_text(encoding="ascii").strip() == recipe:
        return Repository(out, recipe, built=False)
    out.mkdir(parents=True, exist_ok=True)
    # Staged beside `out` (same file system) so that a failed build leaves no half repository.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        staging = Path(tmp)
        _build_into(staging, schema, signing_home(out))
        _replace_content(out, staging / "repo")
    out.chmod(0o755)
    # The stamp comes last: an interrupted run leaves none, and the next run builds again.
    stamp.write_text(f"{recipe}\n", encoding="ascii")
    return Repository(out, recipe, built=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the signed apt repository of the test-double packages (cached)"
    )
    parser.add_argument("--out", type=Path, required=True, help="repository directory")
    parser.add_argument(
        "--schema",
        type=Path,
        default=cloudwatch_agent.DEFAULT_SCHEMA,
        help="JSON schema the CloudWatch agent double installs (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        repo = ensure_repository(args.out, args.schema)
    except (debbuild.PackagingError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    action = "built" if repo.built else "reused"
    print(f"apt repository {action}: {repo.path} (recipe {repo.recipe[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
