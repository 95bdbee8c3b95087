"""Render each role's variable table from its meta/argument_specs.yml into its README.

The README keeps the table between two markers; `--check` fails when any table differs from what
the argument specs say (the unit tests run it), and without `--check` the tables are rewritten.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN VARIABLES (generated from meta/argument_specs.yml: make docs) -->"
END = "<!-- END VARIABLES -->"


def cell(value: object) -> str:
    if value == "":
        return '""'
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
    text = str(text).strip().removesuffix("...").strip()
    return text.replace("|", "\\|").replace("\n", "<br>")


def describe(option: dict) -> str:
    description = option.get("description", "")
    lines = description if isinstance(description, list) else [description]
    text = " ".join(" ".join(line.split()) for line in lines)
    # Ansible doc markup to Markdown: C(code) and I(option).
    text = re.sub(r"C\(([^)]*)\)", r"`\1`", re.sub(r"I\(([^)]*)\)", r"*\1*", text))
    if "choices" in option:
        text += f" One of: {', '.join(f'`{c}`' for c in option['choices'])}."
    suboptions = option.get("options")
    if suboptions:
        fields = []
        for name, sub in suboptions.items():
            flag = " (required)" if sub.get("required") else ""
            default = f", default `{cell(sub['default'])}`" if "default" in sub else ""
            fields.append(f"`{name}` ({sub.get('type', 'str')}{default}){flag}")
        text += " Fields: " + "; ".join(fields) + "."
    return cell(text)


def render_table(spec: dict) -> str:
    rows = [
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for name, option in spec["argument_specs"]["main"]["options"].items():
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("required"):
            default = "**required**"
        elif "default" in option:
            default = f"`{cell(option['default'])}`"
        else:
            default = "(none)"
        rows.append(f"| `{name}` | {kind} | {default} | {describe(option)} |")
    return "\n".join(rows)


def expected_readme(role: Path) -> tuple[str, str]:
    readme = (role / "README.md").read_text()
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{role.name}/README.md has no generated variable table markers")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return readme, f"{head}{BEGIN}\n{render_table(spec)}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail instead of rewriting")
    args = parser.parse_args()
    stale = []
    for role in sorted((ROOT / "roles").iterdir()):
        current, wanted = expected_readme(role)
        if current != wanted:
            stale.append(role.name)
            if not args.check:
                (role / "README.md").write_text(wanted)
    if args.check and stale:
        print(f"variable tables out of date: {', '.join(stale)} (run make docs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
