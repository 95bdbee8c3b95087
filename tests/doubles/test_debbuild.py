"""Tests of the .deb and signed apt repository builder used by every test double."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.doubles import debbuild as builder


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pkg")
    source = base / "tool.sh"
    source.write_text("#!/bin/sh\necho tiny\n", encoding="ascii")
    deb = builder.build_deb(
        name="clinic-tiny",
        version="1.2.3-1",
        depends=["python3", "python3-yaml (>= 5)"],
        description="tiny test double of a vendor tool\nLong text.\n\nSecond paragraph.",
        files=[
            builder.PackageFile("/usr/bin/clinic-tiny", source=source, mode=0o755),
            builder.PackageFile("/etc/clinic-tiny.conf", content=b"a: 1\n", mode=0o644),
            builder.PackageFile("/usr/lib/clinic-tiny/secret", content=b"x", mode=0o600),
        ],
        conffiles=["/etc/clinic-tiny.conf"],
        maintainer_scripts={"postinst": "#!/bin/sh\nset -e\nexit 0\n"},
        out_dir=base / "out",
    )
    repo = base / "repo"
    key = builder.build_signed_repo([deb], repo, gnupg_home=base / "gnupg")
    return {
        "deb": deb,
        "repo": repo,
        "key": key.public_key,
        "base": base,
        "fpr": Path(key.fingerprint),
    }


def test_deb_control_fields(built: dict[str, Path]) -> None:
    deb = built["deb"]
    assert deb.name == "clinic-tiny_1.2.3-1_all.deb"
    info = run(["dpkg-deb", "-I", str(deb)])
    assert info.returncode == 0, info.stderr
    fields = run(["dpkg-deb", "-f", str(deb)]).stdout
    assert "Package: clinic-tiny\n" in fields
    assert "Version: 1.2.3-1\n" in fields
    assert "Architecture: all\n" in fields
    assert "Depends: python3, python3-yaml (>= 5)\n" in fields
    assert "test double" in run(["dpkg-deb", "-f", str(deb), "Maintainer"]).stdout
    assert "Description: tiny test double of a vendor tool\n Long text.\n .\n" in fields
    assert " conffiles" in info.stdout and " postinst" in info.stdout
    with tempfile.TemporaryDirectory() as tmp:
        extracted = run(["dpkg-deb", "-e", str(deb), tmp])
        assert extracted.returncode == 0, extracted.stderr
        assert (Path(tmp) / "conffiles").read_text() == "/etc/clinic-tiny.conf\n"
        assert (Path(tmp) / "postinst").stat().st_mode & 0o777 == 0o755


def test_deb_contents_owner_and_modes(built: dict[str, Path]) -> None:
    listing = run(["dpkg-deb", "-c", str(built["deb"])]).stdout.splitlines()
    entries = {line.split()[-1]: line.split() for line in listing}
    assert entries["./usr/bin/clinic-tiny"][0] == "-rwxr-xr-x"
    assert entries["./etc/clinic-tiny.conf"][0] == "-rw-r--r--"
    assert entries["./usr/lib/clinic-tiny/secret"][0] == "-rw-------"
    assert entries["./usr/lib/clinic-tiny/"][0] == "drwxr-xr-x"
    assert {fields[1] for fields in entries.values()} == {"root/root"}


def test_build_deb_rejects_bad_input(tmp_path: Path) -> None:
    def build(file: builder.PackageFile, **options: Any) -> None:
        builder.build_deb(
            name="bad",
            version="1",
            depends=[],
            description="test double",
            files=[file],
            out_dir=tmp_path,
            **options,
        )

    with pytest.raises(builder.PackagingError, match="conffile"):
        build(builder.PackageFile("/etc/a", content=b""), conffiles=["/etc/b"])
    with pytest.raises(builder.PackagingError, match="exactly one"):
        build(builder.PackageFile("/etc/a", content=b"", source=tmp_path))


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(builder.PackagingError, match=r"dpkg-deb \(Debian package dpkg\)"):
        builder.require_tools("dpkg-deb")


def _keyring(built: dict[str, Path], tmp_path: Path) -> Path:
    keyring = tmp_path / "repo.gpg"
    proc = run(
        ["gpg", "--batch", "--yes", "--dearmor", "-o", str(keyring), str(built["key"])],
        env={**os.environ, "GNUPGHOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    return keyring


def test_repo_layout_and_signatures(built: dict[str, Path], tmp_path: Path) -> None:
    builder.require_tools("gpgv")
    repo = built["repo"]
    assert (repo / "pool/main/c/clinic-tiny/clinic-tiny_1.2.3-1_all.deb").is_file()
    assert not list(repo.rglob("*.key")) and not list(repo.rglob("private-keys-v1.d"))
    keyring = _keyring(built, tmp_path)
    for suite in ("bookworm", "trixie"):
        dist = repo / "dists" / suite
        inline = run(["gpgv", "--keyring", str(keyring), str(dist / "InRelease")])
        assert inline.returncode == 0, inline.stderr
        detached = run(
            ["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(dist / "Release")]
        )
        assert detached.returncode == 0, detached.stderr
        assert "Good signature" in inline.stderr
        assert str(built["fpr"]) in inline.stderr.replace(" ", "")
        release = (dist / "Release").read_text()
        packages = (dist / "main/binary-amd64/Packages").read_bytes()
        assert f"Suite: {suite}\n" in release
        assert hashlib.sha256(packages).hexdigest() in release
        assert hashlib.md5(packages).hexdigest() in release
        assert gzip.decompress((dist / "main/binary-amd64/Packages.gz").read_bytes()) == packages
        stanza = packages.decode()
        assert "Filename: pool/main/c/clinic-tiny/clinic-tiny_1.2.3-1_all.deb\n" in stanza
        deb_hash = hashlib.sha256(built["deb"].read_bytes()).hexdigest()
        assert f"SHA256: {deb_hash}\n" in stanza


def _apt(
    built: dict[str, Path], repo: Path, work: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """apt-get confined to `work`: own sources, lists, cache, status and no system apt.conf.d."""
    builder.require_tools("apt-get")
    for sub in ("lists/partial", "cache/archives/partial", "parts", "empty", "dl"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "status").touch()
    sources = work / "sources.list"
    sources.write_text(f"deb [signed-by={built['key']}] file:{repo} bookworm main\n")
    settings = {
        "Dir::Etc::main": str(work / "apt.conf"),
        "Dir::Etc::parts": str(work / "parts"),
        "Dir::Etc::sourcelist": str(sources),
        "Dir::Etc::sourceparts": str(work / "empty"),
        "Dir::Etc::trusted": str(work / "none.gpg"),
        "Dir::Etc::trustedparts": str(work / "empty"),
        "Dir::Etc::preferences": str(work / "none.pref"),
        "Dir::Etc::preferencesparts": str(work / "empty"),
        "Dir::State::Lists": str(work / "lists"),
        "Dir::State::status": str(work / "status"),
        "Dir::State::extended_states": str(work / "extended_states"),
        "Dir::Cache": str(work / "cache"),
        "Dir::Log": str(work),
        "APT::Sandbox::User": "root",
        "APT::Architecture": "amd64",
        "APT::Architectures": "amd64",
    }
    (work / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in settings.items()))
    options = [arg for k, v in settings.items() for arg in ("-o", f"{k}={v}")]
    env = {**os.environ, "APT_CONFIG": str(work / "apt.conf"), "LC_ALL": "C"}
    return run(["apt-get", "-q", *options, *args], env=env, cwd=work / "dl")


def test_apt_get_update_and_download(built: dict[str, Path], tmp_path: Path) -> None:
    lists_before = sorted(Path("/var/lib/apt/lists").iterdir())
    update = _apt(built, built["repo"], tmp_path, "update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
    download = _apt(built, built["repo"], tmp_path, "download", "clinic-tiny")
    assert download.returncode == 0, download.stdout + download.stderr
    fetched = tmp_path / "dl" / "clinic-tiny_1.2.3-1_all.deb"
    assert fetched.read_bytes() == built["deb"].read_bytes()
    assert sorted(Path("/var/lib/apt/lists").iterdir()) == lists_before


def test_tampered_packages_fails(built: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(built["repo"]), str(repo)], check=True, timeout=60)
    index = repo / "dists/bookworm/main/binary-amd64"
    tampered = (index / "Packages").read_bytes().replace(b"Version: 1.2.3-1", b"Version: 9.9.9-1")
    (index / "Packages").write_bytes(tampered)
    (index / "Packages.gz").write_bytes(gzip.compress(tampered, mtime=0))
    update = _apt(built, repo, tmp_path / "apt", "update")
    assert update.returncode != 0
    assert "Hash Sum mismatch" in update.stdout + update.stderr
    download = _apt(built, repo, tmp_path / "apt", "download", "clinic-tiny=9.9.9-1")
    assert download.returncode != 0


def test_tampered_release_fails_signature(built: dict[str, Path], tmp_path: Path) -> None:
    keyring = _keyring(built, tmp_path)
    dist = built["repo"] / "dists/trixie"
    release = tmp_path / "Release"
    release.write_bytes((dist / "Release").read_bytes().replace(b"Suite: trixie", b"Suite: sid"))
    bad = run(["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(release)])
    assert bad.returncode != 0
    assert "BAD signature" in bad.stderr
