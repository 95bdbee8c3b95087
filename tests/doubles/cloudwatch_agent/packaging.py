"""The .deb recipe of the double: package `amazon-cloudwatch-agent` with the real file layout.

The JSON Schema the double validates configurations against is the project's own statement of the
agent's configuration format (`agent_schema.json` beside this file, DEFAULT_SCHEMA; `schema_path`
may name another). It is installed where the real package installs the agent's schema,
`/opt/aws/amazon-cloudwatch-agent/doc/amazon-cloudwatch-agent-schema.json`.

Build:  python -m tests.doubles.cloudwatch_agent.packaging --version 1.300070.0 --out-dir DIR
        [--schema PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tests.doubles.debbuild import PackageFile, build_deb

from .paths import AGENT_DIR, UNIT_PATH

PACKAGE = "amazon-cloudwatch-agent"
HERE = Path(__file__).resolve().parent
DEFAULT_SCHEMA = HERE / "agent_schema.json"
LIB_DIR = f"{AGENT_DIR}/lib/double"
INSTALLED_PACKAGE = "cwagent_double"
# Modules of the double that run on the host (this recipe and the tests stay behind).
RUNTIME_MODULES = (
    "__init__.py",
    "__main__.py",
    "config.py",
    "ctl.py",
    "environment.py",
    "paths.py",
    "service.py",
)
SYMLINKS = {
    "/etc/amazon/amazon-cloudwatch-agent": f"{AGENT_DIR}/etc",
    "/var/log/amazon/amazon-cloudwatch-agent": f"{AGENT_DIR}/logs",
    "/var/run/amazon/amazon-cloudwatch-agent": f"{AGENT_DIR}/var",
    "/usr/bin/amazon-cloudwatch-agent-ctl": f"{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl",
}
DIRECTORIES = (
    f"{AGENT_DIR}/etc/amazon-cloudwatch-agent.d",
    f"{AGENT_DIR}/logs",
    f"{AGENT_DIR}/var",
)
DESCRIPTION = """Amazon CloudWatch Agent (TEST DOUBLE, never for production)
Stands in for the Amazon CloudWatch agent in the clinic.infra test lab: same package
name, paths, ctl flags, config storage and systemd unit. It validates configuration
against a JSON schema of the agent's configuration (the fields clinic.infra uses),
but collects nothing and sends nothing."""

UNIT = """\
# amazon-cloudwatch-agent TEST DOUBLE: same unit name, ExecStart and restart policy as the
# real agent; the process collects nothing and opens no network connection.
[Unit]
Description=Amazon CloudWatch Agent
After=network.target

[Service]
Type=simple
ExecStart=/opt/aws/amazon-cloudwatch-agent/bin/start-amazon-cloudwatch-agent
KillMode=process
Restart=on-failure
RestartSec=60s

[Install]
WantedBy=multi-user.target
"""

COMMON_CONFIG = """\
# Common configuration of the agent (credentials, proxy, TLS). The test double reads the
# [credentials] table to find the region of onPremise hosts, as the agent does.
# [credentials]
#   shared_credential_profile = "AmazonCloudWatchAgent"
#   shared_credential_file = "/root/.aws/credentials"
"""


CTL_LAUNCHER = (
    "#!/usr/bin/python3\n"
    '"""amazon-cloudwatch-agent-ctl of the amazon-cloudwatch-agent test double."""\n'
    "import sys\n\n"
    f'sys.path.insert(0, "{LIB_DIR}")\n'
    f"from {INSTALLED_PACKAGE}.ctl import main\n\n"
    "sys.exit(main(sys.argv[1:]))\n"
).encode()

START_LAUNCHER = (
    "#!/usr/bin/python3\n"
    '"""start-amazon-cloudwatch-agent of the amazon-cloudwatch-agent test double."""\n'
    "import sys\n\n"
    f'sys.path.insert(0, "{LIB_DIR}")\n'
    f"from {INSTALLED_PACKAGE}.paths import Paths\n"
    f"from {INSTALLED_PACKAGE}.service import run_agent\n\n"
    "sys.exit(run_agent(Paths.from_env()))\n"
).encode()


def _maintainer_scripts() -> dict[str, str]:
    make_dirs = " ".join(sorted({*DIRECTORIES, *(link.rsplit("/", 1)[0] for link in SYMLINKS)}))
    links = "".join(f"ln -sfn {target} {link}\n" for link, target in SYMLINKS.items())
    unlinks = "".join(f"[ ! -L {link} ] || rm -f {link}\n" for link in SYMLINKS)
    ctl = f"{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl"
    return {
        "preinst": (
            "#!/bin/sh\nset -e\n"
            'if [ "$1" = upgrade ] && [ -x ' + ctl + " ]; then\n"
            f"    {ctl} -a stop || true\nfi\n"
            "getent group cwagent >/dev/null || groupadd -r cwagent\n"
            "id cwagent >/dev/null 2>&1 || useradd -r -M -d /home/cwagent -g cwagent \\\n"
            '    -c "Cloudwatch Agent" -s /usr/sbin/nologin cwagent\n'
            "exit 0\n"
        ),
        "postinst": f"#!/bin/sh\nset -e\nmkdir -p {make_dirs}\n{links}exit 0\n",
        "prerm": (
            "#!/bin/sh\nset -e\n"
            f'if [ "$1" = remove ] && [ -x {ctl} ]; then\n    {ctl} -a preun || true\nfi\n'
            "exit 0\n"
        ),
        "postrm": (
            f'#!/bin/sh\nset -e\nif [ "$1" = remove ] || [ "$1" = purge ]; then\n{unlinks}fi\n'
            "exit 0\n"
        ),
    }


def package_spec(schema_path: Path, version: str) -> dict[str, Any]:
    """Keyword arguments for `tests.doubles.debbuild.build_deb` (all but `out_dir`)."""
    if not schema_path.is_file():
        raise FileNotFoundError(f"agent JSON schema not found: {schema_path}")
    agent_version = version.split("-", 1)[0]
    files = [
        PackageFile(
            f"{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl", content=CTL_LAUNCHER, mode=0o755
        ),
        PackageFile(
            f"{AGENT_DIR}/bin/start-amazon-cloudwatch-agent", content=START_LAUNCHER, mode=0o755
        ),
        PackageFile(f"{AGENT_DIR}/bin/CWAGENT_VERSION", content=f"{agent_version}\n".encode()),
        PackageFile(f"{AGENT_DIR}/doc/amazon-cloudwatch-agent-schema.json", source=schema_path),
        PackageFile(f"{AGENT_DIR}/doc/DOUBLE-README.md", source=HERE / "README.md"),
        PackageFile(f"{AGENT_DIR}/etc/common-config.toml", content=COMMON_CONFIG.encode()),
        PackageFile(UNIT_PATH, content=UNIT.encode()),
    ]
    files += [
        PackageFile(f"{LIB_DIR}/{INSTALLED_PACKAGE}/{module}", source=HERE / module)
        for module in RUNTIME_MODULES
    ]
    return {
        "name": PACKAGE,
        "version": version,
        "architecture": "all",
        "depends": ["python3", "python3-jsonschema"],
        "description": DESCRIPTION,
        "files": files,
        "conffiles": [f"{AGENT_DIR}/etc/common-config.toml"],
        "maintainer_scripts": _maintainer_scripts(),
    }


def build(schema_path: Path, version: str, out_dir: Path) -> Path:
    return build_deb(**package_spec(schema_path, version), out_dir=out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the amazon-cloudwatch-agent double .deb")
    parser.add_argument("--version", required=True, help="package version, e.g. 1.300070.0")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument(
        "--schema",
        type=Path,
        default=DEFAULT_SCHEMA,
        help="JSON schema installed as the agent's (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    print(build(args.schema, args.version, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
