"""The shape of the house: thin playbooks, short task files, facts named after their role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOK_LINES = 80
TASK_FILE_LINES = 150


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_playbooks_are_thin() -> None:
    long = {str(p.relative_to(ROOT)): lines(p) for p in (ROOT / "playbooks").glob("*.yml")}
    assert long, "no playbook found"
    assert not {p: n for p, n in long.items() if n >= PLAYBOOK_LINES}, "operations belong in roles"


def test_task_files_are_short() -> None:
    files = [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/tasks/**/*.yml")]
    long = {str(p.relative_to(ROOT)): lines(p) for p in files if lines(p) > TASK_FILE_LINES}
    assert not long


def tasks_of(node: Any) -> list[dict]:
    """Every task of a task file, blocks, rescues and always sections included."""
    found = []
    for task in node or []:
        found.append(task)
        for section in ("block", "rescue", "always"):
            found.extend(tasks_of(task.get(section)))
    return found


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_set_fact_names_belong_to_their_role(role: Path) -> None:
    # Internal facts are __<role>_*; a fact a role hands to its caller is <role>_* and never one of
    # its inputs (a fact would silently outrank the inventory's value for the rest of the run).
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    inputs = {name for entry in specs.values() for name in entry.get("options", {})}
    wrong = []
    for path in sorted(role.glob("tasks/*.yml")):
        for task in tasks_of(yaml.safe_load(path.read_text())):
            facts = task.get("ansible.builtin.set_fact") or {}
            for name in facts if isinstance(facts, dict) else []:
                internal = name.startswith(f"__{role.name}_")
                output = name.startswith(f"{role.name}_") and name not in inputs
                if name != "cacheable" and not (internal or output):
                    wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert not wrong
