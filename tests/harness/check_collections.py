"""Check that the installed Ansible collections satisfy the minimums stated in requirements.yml.

Galaxy is not reachable from the test machines, so tests run against the collections bundled with
the pinned ansible package; this check fails when requirements.yml asks for more than that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def installed_collections() -> dict[str, Version]:
    out = subprocess.run(
        ["ansible-galaxy", "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, Version] = {}
    for collections in json.loads(out).values():
        for name, info in collections.items():
            version = Version(info["version"])
            if name not in found or version > found[name]:
                found[name] = version
    return found


def unmet(requirements: list[dict[str, str]], installed: dict[str, Version]) -> list[str]:
    problems = []
    for req in requirements:
        name, spec = req["name"], SpecifierSet(req.get("version", ""))
        have = installed.get(name)
        if have is None:
            problems.append(f"{name}: not installed (requirements.yml asks for '{spec}')")
        elif have not in spec:
            problems.append(f"{name}: {have} installed, requirements.yml asks for '{spec}'")
    return problems


def main() -> int:
    requirements = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    problems = unmet(requirements, installed_collections())
    for problem in problems:
        print(f"collections: {problem}", file=sys.stderr)
    if not problems:
        print(f"collections: all {len(requirements)} requirements met")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
