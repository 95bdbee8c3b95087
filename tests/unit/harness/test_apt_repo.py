"""The harness's apt repository: signed suites that gpgv accepts, every double, and the cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import apt_repo
from tests.prerequisites import missing

TOOLS = ("dpkg-deb", "gpg", "gpgconf", "gpgv")
PACKAGES = {
    "mongodb-org-server": "7.0.14",
    "mongodb-database-tools": "100.10.0",
    "amazon-cloudwatch-agent": apt_repo.CLOUDWATCH_AGENT_VERSION,
}


@pytest.fixture(scope="module")
def schema() -> Path:
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        missing(f"needs {', '.join(absent)} (Debian packages dpkg, gnupg, gpgv)")
    return apt_repo.cloudwatch_agent.DEFAULT_SCHEMA


@pytest.fixture(scope="module")
def repo(schema: Path, tmp_path_factory: pytest.TempPathFactory) -> apt_repo.Repository:
    return apt_repo.ensure_repository(tmp_path_factory.mktemp("apt") / "repo", schema)


@pytest.fixture(scope="module")
def keyring(repo: apt_repo.Repository, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository key in the binary form gpgv reads."""
    path = tmp_path_factory.mktemp("keyring") / "repo-key.gpg"
    subprocess.run(
        ["gpg", "--batch", "--dearmor", "-o", str(path), str(repo.public_key)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def gpgv(keyring: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpgv", "--keyring", str(keyring), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_first_call_builds(repo: apt_repo.Repository) -> None:
    assert repo.built
    assert repo.public_key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert not list(repo.path.rglob("*.key")) and not list(repo.path.rglob("private-keys*"))


@pytest.mark.parametrize("suite", apt_repo.SUITES)
def test_suite_signatures_verify(repo: apt_repo.Repository, keyring: Path, suite: str) -> None:
    dist = repo.path / "dists" / suite
    inline = gpgv(keyring, dist / "InRelease")
    assert inline.returncode == 0, inline.stderr
    detached = gpgv(keyring, dist / "Release.gpg", dist / "Release")
    assert detached.returncode == 0, detached.stderr


@pytest.mark.parametrize("suite", apt_repo.SUITES)
def test_suite_lists_every_double(repo: apt_repo.Repository, suite: str) -> None:
    dist = repo.path / "dists" / suite
    index = dist / "main" / "binary-amd64" / "Packages"
    stanzas = [dict(_fields(block)) for block in index.read_text().split("\n\n") if block.strip()]
    assert {s["Package"]: s["Version"] for s in stanzas} == PACKAGES
    for stanza in stanzas:
        deb = repo.path / stanza["Filename"]
        assert hashlib.sha256(deb.read_bytes()).hexdigest() == stanza["SHA256"]
    data = index.read_bytes()
    entry = f" {hashlib.sha256(data).hexdigest()} {len(data):>16} main/binary-amd64/Packages"
    assert entry in (dist / "Release").read_text().splitlines()


def _fields(block: str) -> list[tuple[str, str]]:
    return [
        (key, value.strip())
        for key, sep, value in (line.partition(":") for line in block.splitlines())
        if sep and not key.startswith(" ")
    ]


def test_second_call_reuses(repo: apt_repo.Repository, schema: Path) -> None:
    key = repo.public_key.read_bytes()
    again = apt_repo.ensure_repository(repo.path, schema)
    assert not again.built
    assert again.recipe == repo.recipe
    assert repo.public_key.read_bytes() == key


def test_changed_recipe_rebuilds_with_the_same_key(
    repo: apt_repo.Repository, schema: Path, keyring: Path
) -> None:
    key = repo.public_key.read_bytes()
    (repo.path / apt_repo.STAMP).write_text("0" * 64 + "\n", encoding="ascii")
    again = apt_repo.ensure_repository(repo.path, schema)
    assert again.built
    assert (repo.path / apt_repo.STAMP).read_text(encoding="ascii").strip() == repo.recipe
    assert not [p.name for p in repo.path.parent.iterdir() if p.name.startswith(".repo-")]
    # Hosts keep trusting a rebuilt repository: same key, and the new signatures verify with it.
    assert repo.public_key.read_bytes() == key
    verified = gpgv(keyring, repo.path / "dists" / "bookworm" / "InRelease")
    assert verified.returncode == 0, verified.stderr
    # The secret half stays beside the repository, out of what is served.
    home = apt_repo.signing_home(repo.path)
    assert home.parent == repo.path.parent
    assert home.stat().st_mode & 0o777 == 0o700


def test_recipe_covers_the_schema(schema: Path, tmp_path: Path) -> None:
    other = tmp_path / "schema.json"
    other.write_bytes(schema.read_bytes() + b"\n")
    assert apt_repo.recipe_hash(other) != apt_repo.recipe_hash(schema)


def test_cli_prints_one_line(
    repo: apt_repo.Repository, schema: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apt_repo.main(["--out", str(repo.path), "--schema", str(schema)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("apt repository reused: ")


def test_default_schema_is_the_projects_own(
    repo: apt_repo.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --schema the recipe takes the double's agent_schema.json, kept in the repository."""
    default = apt_repo.cloudwatch_agent.DEFAULT_SCHEMA
    assert default == apt_repo.DOUBLES / "cloudwatch_agent" / "agent_schema.json"
    assert apt_repo.recipe_hash() == repo.recipe
    assert apt_repo.main(["--out", str(repo.path)]) == 0
    assert capsys.readouterr().out.startswith("apt repository reused: ")
