"""Build the MongoDB double's .deb packages with the real names and file layout (spec §3.1).

- `mongodb-org-server`: `/usr/bin/mongod` (a `#!/usr/bin/python3` script, so the kernel names the
  process `mongod`), the double's code under `/usr/lib/mongodb-double/`, the real unit
  `/lib/systemd/system/mongod.service`, the default `/etc/mongod.conf` (a conffile) and a
  postinst that creates the `mongodb` system user and its data and log directories.
- `mongodb-database-tools`: `/usr/bin/mongodump` and `/usr/bin/mongorestore` with their code under
  `/usr/lib/mongodb-database-tools-double/`.

    python -m tests.doubles.mongodb.packaging.build --out DIR [--version 7.0.14]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.doubles.debbuild import PackageFile, PackagingError, build_deb

from .. import config

DOUBLE_DIR = Path(__file__).resolve().parents[1]
SERVER_LIB = "/usr/lib/mongodb-double"
TOOLS_LIB = "/usr/lib/mongodb-database-tools-double"
TOOLS_VERSION = "100.10.0"
TOOLS_MODULES = ("__init__.py", "auth.py", "bson_codec.py", "errors.py", "wire.py")

LAUNCHER = '''#!/usr/bin/python3
"""{name}: test double of MongoDB's {name} for the clinic.infra lab. It is not MongoDB."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib" / "{lib}"))

from mongodb_double.{module} import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''

UNIT = """[Unit]
Description=MongoDB Database Server (test double for the clinic.infra lab)
Documentation=https://docs.mongodb.org/manual
After=network-online.target
Wants=network-online.target

[Service]
User=mongodb
Group=mongodb
EnvironmentFile=-/etc/default/mongod
Environment="MONGODB_CONFIG_OVERRIDE_NOFORK=1"
{extra_env}ExecStart=/usr/bin/mongod --config /etc/mongod.conf
RuntimeDirectory=mongodb
# file size
LimitFSIZE=infinity
# cpu time
LimitCPU=infinity
# virtual memory size
LimitAS=infinity
# open files
LimitNOFILE=64000
# processes/threads
LimitNPROC=64000
# locked memory
LimitMEMLOCK=infinity
# total threads (user+kernel)
TasksMax=infinity
TasksAccounting=false

[Install]
WantedBy=multi-user.target
"""

MONGOD_CONF = """# mongod.conf (installed by the test double of mongodb-org-server)
# for documentation of all options, see:
#   http://docs.mongodb.org/manual/reference/configuration-options/

# Where and how to store data.
storage:
  dbPath: /var/lib/mongodb

# where to write logging data.
systemLog:
  destination: file
  logAppend: true
  path: /var/log/mongodb/mongod.log

# network interfaces
net:
  port: 27017
  bindIp: 127.0.0.1

# how the process runs
processManagement:
  timeZoneInfo: /usr/share/zoneinfo
"""

POSTINST = """#!/bin/sh
set -e

if [ "$1" = "configure" ]; then
    if ! getent group mongodb >/dev/null; then
        addgroup --system --quiet mongodb
    fi
    if ! getent passwd mongodb >/dev/null; then
        adduser --system --disabled-password --disabled-login --home /var/lib/mongodb \\
            --no-create-home --ingroup mongodb --quiet mongodb
    fi
    install -d -o mongodb -g mongodb -m 0755 /var/lib/mongodb /var/log/mongodb
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload >/dev/null || true
fi

exit 0
"""

POSTRM = """#!/bin/sh
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload >/dev/null || true
fi

exit 0
"""


def _code(modules: list[Path], lib: str) -> list[PackageFile]:
    files = []
    for module in modules:
        rel = module.relative_to(DOUBLE_DIR).as_posix()
        files.append(PackageFile(f"{lib}/mongodb_double/{rel}", source=module, mode=0o644))
    return files


def _launcher(name: str, lib: str, module: str) -> PackageFile:
    text = LAUNCHER.format(name=name, lib=lib.rsplit("/", 1)[1], module=module)
    return PackageFile(f"/usr/bin/{name}", content=text.encode(), mode=0o755)


def check_version(version: str) -> None:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise PackagingError(f"version {version!r} is not like the real ones (major.minor.patch)")
    emulated = ".".join(config.VERSION.split(".")[:2])
    if ".".join(parts[:2]) != emulated:
        raise PackagingError(
            f"the double emulates mongod {emulated} (it reports v{config.VERSION}); "
            f"a {version} package would claim behaviour it does not have"
        )


def build_packages(out_dir: Path, version: str = config.VERSION) -> list[Path]:
    check_version(version)
    server_modules = sorted(DOUBLE_DIR.glob("*.py"))
    server = build_deb(
        name="mongodb-org-server",
        version=version,
        architecture="all",
        depends=["python3", "python3-yaml", "adduser"],
        description=(
            "test double of MongoDB's mongod server (clinic.infra lab only)\n"
            "A small Python program that speaks the MongoDB wire protocol so that the\n"
            "clinic.infra roles can be tested where MongoDB itself cannot be installed.\n"
            "It is not MongoDB and must never hold real data."
        ),
        files=[
            _launcher("mongod", SERVER_LIB, "server"),
            *_code(server_modules, SERVER_LIB),
            PackageFile(
                "/lib/systemd/system/mongod.service",
                content=UNIT.format(
                    extra_env='Environment="GLIBC_TUNABLES=glibc.pthread.rseq=0"\n'
                    if version.startswith("8.")
                    else ""
                ).encode(),
            ),
            PackageFile("/etc/mongod.conf", content=MONGOD_CONF.encode()),
        ],
        conffiles=["/etc/mongod.conf"],
        maintainer_scripts={"postinst": POSTINST, "postrm": POSTRM},
        out_dir=out_dir,
    )
    tool_modules = [DOUBLE_DIR / m for m in TOOLS_MODULES]
    tool_modules += sorted((DOUBLE_DIR / "tools").glob("*.py"))
    tools = build_deb(
        name="mongodb-database-tools",
        version=TOOLS_VERSION,
        architecture="all",
        depends=["python3"],
        description=(
            "test double of MongoDB's mongodump and mongorestore (clinic.infra lab only)\n"
            "Archive dumps and restores with mongo-tools 100.x options and exit codes,\n"
            "written in Python for the clinic.infra lab. They are not mongo-tools."
        ),
        files=[
            _launcher("mongodump", TOOLS_LIB, "tools.mongodump"),
            _launcher("mongorestore", TOOLS_LIB, "tools.mongorestore"),
            *_code(tool_modules, TOOLS_LIB),
        ],
        out_dir=out_dir,
    )
    return [server, tools]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Build the MongoDB double's .deb packages")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default=config.VERSION)
    args = parser.parse_args(argv)
    try:
        for deb in build_packages(args.out, args.version):
            print(deb)
    except PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
