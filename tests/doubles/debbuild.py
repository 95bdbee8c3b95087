"""Build test-double .deb packages and serve them from a signed apt repository.

Doubles of vendor software that no reachable registry carries are installed the way the real
software is: from .deb packages with the real names, out of an apt repository signed with a key
that the lab trusts through `signed-by=`. This module is the one place that knows how to do that.

Needs on the build machine (Debian packages): `dpkg` (dpkg-deb), `gnupg` (gpg, gpgconf).
Every missing tool is reported by name before any work is done.
"""

from __future__ import annotations

import datetime
import email.utils
import gzip
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MAINTAINER = "clinic.infra test doubles <test-doubles@clinic.invalid>"
KEY_UID = "clinic.infra test double apt repository <test-doubles@clinic.invalid>"
MAINTAINER_SCRIPTS = frozenset({"preinst", "postinst", "prerm", "postrm", "config"})
_TOOL_PACKAGES = {
    "dpkg-deb": "dpkg",
    "gpg": "gnupg",
    "gpgconf": "gpgconf",
    "gpgv": "gpgv",
    "apt-get": "apt",
}


class PackagingError(RuntimeError):
    """A package or repository could not be built."""


@dataclass(frozen=True)
class PackageFile:
    """One file of a package: `path` is absolute inside the package (`/usr/bin/mongod`)."""

    path: str
    source: Path | None = None
    content: bytes | None = None
    mode: int = 0o644

    def data(self) -> bytes:
        if (self.source is None) == (self.content is None):
            raise PackagingError(f"{self.path}: give exactly one of source and content")
        if self.content is not None:
            return self.content
        assert self.source is not None
        return self.source.read_bytes()


@dataclass(frozen=True)
class RepoKey:
    """The repository's public signing key (ASCII-armored) and its fingerprint."""

    public_key: Path
    fingerprint: str


def require_tools(*tools: str) -> None:
    """Fail with one message naming every missing tool and the Debian package that ships it."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        names = ", ".join(
            f"{tool} (Debian package {_TOOL_PACKAGES.get(tool, tool)})" for tool in missing
        )
        raise PackagingError(f"missing tools needed to build test-double packages: {names}")


def _run(args: list[str], env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        args, input=stdin, capture_output=True, env=dict(env) if env else None, timeout=120
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise PackagingError(f"{args[0]} failed ({proc.returncode}): {detail}")
    return proc.stdout.decode()


def _description(text: str) -> str:
    """Debian control format: a synopsis line, then the long text indented, blank lines as '.'."""
    lines = text.strip().splitlines()
    if not lines:
        raise PackagingError("a package needs a description")
    body = [f" {line}" if line.strip() else " ." for line in lines[1:]]
    return "\n".join([lines[0].strip(), *body])


def build_deb(
    *,
    name: str,
    version: str,
    depends: Sequence[str],
    description: str,
    files: Sequence[PackageFile],
    out_dir: Path,
    architecture: str = "all",
    conffiles: Sequence[str] = (),
    maintainer_scripts: Mapping[str, str] | None = None,
    provides: Sequence[str] = (),
) -> Path:
    """Build `<out_dir>/<name>_<version>_<architecture>.deb` owned by root:root."""
    require_tools("dpkg-deb")
    scripts = dict(maintainer_scripts or {})
    unknown = set(scripts) - MAINTAINER_SCRIPTS
    if unknown:
        raise PackagingError(f"unknown maintainer scripts: {sorted(unknown)}")
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise PackagingError(f"{name}: duplicate file paths")
    for conffile in conffiles:
        if conffile not in paths:
            raise PackagingError(f"{name}: conffile {conffile} is not a file of the package")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"deb-{name}-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir(mode=0o755)
        root.chmod(0o755)
        installed = 0
        for item in files:
            if not item.path.startswith("/") or ".." in Path(item.path).parts:
                raise PackagingError(f"{name}: package paths must be absolute: {item.path}")
            target = root / item.path.lstrip("/")
            for parent in reversed(target.relative_to(root).parents):
                directory = root / parent
                directory.mkdir(exist_ok=True)
                directory.chmod(0o755)
            data = item.data()
            target.write_bytes(data)
            target.chmod(item.mode)
            installed += (len(data) + 1023) // 1024
        control_dir = root / "DEBIAN"
        control_dir.mkdir(mode=0o755)
        control_dir.chmod(0o755)
        fields = {
            "Package": name,
            "Version": version,
            "Architecture": architecture,
            "Maintainer": MAINTAINER,
            "Installed-Size": str(max(installed, 1)),
            "Depends": ", ".join(depends),
            "Provides": ", ".join(provides),
            "Section": "database",
            "Priority": "optional",
            "Description": _description(description),
        }
        control = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
        (control_dir / "control").write_text(control, encoding="utf-8")
        if conffiles:
            (control_dir / "conffiles").write_text(
                "".join(f"{c}\n" for c in conffiles), encoding="utf-8"
            )
        for script, text in scripts.items():
            path = control_dir / script
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755)
        for path in control_dir.iterdir():
            if path.name not in scripts:
                path.chmod(0o644)
        deb = out_dir / f"{name}_{version}_{architecture}.deb"
        _run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)])
    return deb


# The repository


def _hashes(data: bytes) -> dict[str, str]:
    return {
        "MD5sum": hashlib.md5(data).hexdigest(),
        "SHA1": hashlib.sha1(data).hexdigest(),
        "SHA256": hashlib.sha256(data).hexdigest(),
    }


def _stanza(deb: Path, filename: str) -> str:
    control = _run(["dpkg-deb", "--field", str(deb)]).rstrip("\n")
    data = deb.read_bytes()
    extra = {"Filename": filename, "Size": str(len(data)), **_hashes(data)}
    return control + "\n" + "".join(f"{k}: {v}\n" for k, v in extra.items())


def _release(
    suite: str, component: str, architectures: Sequence[str], index_files: dict[str, bytes]
) -> str:
    date = email.utils.format_datetime(datetime.datetime.now(datetime.UTC), usegmt=True)
    lines = [
        "Origin: clinic.infra test doubles",
        "Label: clinic.infra test doubles",
        f"Suite: {suite}",
        f"Codename: {suite}",
        f"Date: {date}",
        f"Architectures: {' '.join(architectures)}",
        f"Components: {component}",
        "Acquire-By-Hash: no",
        "Description: test doubles of vendor packages for the clinic.infra lab, not for production",
    ]
    for field, algorithm in (("MD5Sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256")):
        lines.append(f"{field}:")
        for rel, data in sorted(index_files.items()):
            digest = hashlib.new(algorithm, data).hexdigest()
            lines.append(f" {digest} {len(data):>16} {rel}")
    return "\n".join(lines) + "\n"


def _gpg_env(home: Path) -> dict[str, str]:
    return {**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C"}


def _ensure_key(home: Path) -> str:
    """Generate the throw-away signing key in `home` (or reuse the one there); its fingerprint."""
    env = _gpg_env(home)

    def fingerprints() -> list[str]:
        out = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env)
        lines = out.splitlines()
        return [
            line.split(":")[9]
            for prev, line in itertools.pairwise(lines)
            if prev.startswith("sec:") and line.startswith("fpr:")
        ]

    found = fingerprints()
    if not found:
        _run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-generate-key",
                KEY_UID,
                "ed25519",
                "sign",
                "never",
            ],
            env,
        )
        found = fingerprints()
    if len(found) != 1:
        raise PackagingError(f"expected exactly one signing key in {home}, found {len(found)}")
    return found[0]


def build_signed_repo(
    debs: Sequence[Path],
    repo_dir: Path,
    *,
    suites: Sequence[str] = ("bookworm", "trixie"),
    component: str = "main",
    architectures: Sequence[str] = ("amd64",),
    gnupg_home: Path | None = None,
) -> RepoKey:
    """Lay out a standard (non-flat) apt repository under `repo_dir` and sign every suite.

    Packages go to `pool/<component>/<initial>/<name>/`; every suite lists all of them. The key
    is generated in `gnupg_home` (kept, and reused on the next call) or in a temporary directory
    that is deleted afterwards; only the public key is written into `repo_dir` (`repo-key.asc`).
    """
    require_tools("dpkg-deb", "gpg", "gpgconf")
    if not debs:
        raise PackagingError("a repository needs at least one package")
    stanzas = []
    for deb in debs:
        name = _run(["dpkg-deb", "--field", str(deb), "Package"]).strip()
        arch = _run(["dpkg-deb", "--field", str(deb), "Architecture"]).strip()
        if arch != "all" and arch not in architectures:
            raise PackagingError(f"{deb.name}: architecture {arch} not in {list(architectures)}")
        rel = Path("pool") / component / name[0] / name / deb.name
        (repo_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deb, repo_dir / rel)
        stanzas.append((arch, _stanza(deb, rel.as_posix())))
    releases: list[Path] = []
    for suite in suites:
        dist = repo_dir / "dists" / suite
        index_files: dict[str, bytes] = {}
        for arch in architectures:
            packages = "\n".join(s for a, s in stanzas if a in ("all", arch)).encode()
            rel_dir = f"{component}/binary-{arch}"
            (dist / rel_dir).mkdir(parents=True, exist_ok=True)
            compressed = gzip.compress(packages, mtime=0)
            (dist / rel_dir / "Packages").write_bytes(packages)
            (dist / rel_dir / "Packages.gz").write_bytes(compressed)
            index_files[f"{rel_dir}/Packages"] = packages
            index_files[f"{rel_dir}/Packages.gz"] = compressed
        release = dist / "Release"
        release.write_text(_release(suite, component, architectures, index_files), "utf-8")
        releases.append(release)
    with tempfile.TemporaryDirectory(prefix="gnupg-") as tmp:
        home = gnupg_home or Path(tmp)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        env = _gpg_env(home)
        try:
            fingerprint = _ensure_key(home)
            for release in releases:
                sign = ["gpg", "--batch", "--yes", "--local-user", fingerprint]
                sign += ["--digest-algo", "SHA512"]
                _run([*sign, "--armor", "--detach-sign", "-o", f"{release}.gpg", str(release)], env)
                _run(
                    [*sign, "--clearsign", "-o", str(release.with_name("InRelease")), str(release)],
                    env,
                )
            public = repo_dir / "repo-key.asc"
            public.write_text(_run(["gpg", "--batch", "--armor", "--export", fingerprint], env))
        finally:
            subprocess.run(
                ["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30, check=False
            )
    return RepoKey(public, fingerprint)
