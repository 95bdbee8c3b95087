#!/usr/bin/python3
"""Check a CloudWatch agent JSON configuration against the agent's own schema before it is used.

The agent's package installs its JSON Schema (draft-04) beside its binaries; the role runs this
check as the template's `validate` step, so a file the agent would refuse never replaces the
configuration in place. Exit status 0 when the file is valid; 1, with one line per problem on
standard output, when it is not; 2 when the schema cannot be read.

    clinic-cwagent-config-check [--schema SCHEMA] CONFIG
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema

DEFAULT_SCHEMA = Path("/opt/aws/amazon-cloudwatch-agent/doc/amazon-cloudwatch-agent-schema.json")


def problems(config: Any, schema: dict[str, Any]) -> list[str]:
    """One line per schema error, as '<json pointer>: <message>', sorted by location."""
    validator = jsonschema.Draft4Validator(schema)
    found = []
    for error in validator.iter_errors(config):
        where = "/" + "/".join(str(part) for part in error.absolute_path)
        found.append(f"{where}: {error.message}")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    args = parser.parse_args(argv)
    try:
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read the agent's schema {args.schema}: {exc}")
        return 2
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{args.config}: not a JSON document: {exc}")
        return 1
    found = problems(config, schema)
    for line in found:
        print(f"{args.config}: {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
