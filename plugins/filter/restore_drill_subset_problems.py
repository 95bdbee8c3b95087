"""Jinja filter that checks the restore drill's subset rules before anything changes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DOCUMENTATION = r"""
---
name: restore_drill_subset_problems
short_description: What is wrong with the restore drill's subset rules
version_added: 0.1.0
description:
  - Checks C(restore_drill_subset), a dict from namespace (C(<db>.<collection>)) to one rule, and
    returns one message per problem, each naming the variable and the namespace; an empty list
    when the rules are sound.
  - "A rule is exactly one of: C({days: N, field: <date field>}) (the documents whose date field
    is at most N days older than the backup, 1 to 3650), C({fraction: F}) (a fixed sample of the
    documents, 0 < F <= 1, chosen by a hash of their C(_id)), or C({follow: <db>.<collection>,
    field: <field>}) (the documents whose field holds the C(_id) of a document kept of the
    followed namespace, which must have a C(days) or C(fraction) rule)."
positional: _input
options:
  _input:
    description: The subset rules.
    type: dict
    required: true
"""

EXAMPLES = r"""
problems: "{{ restore_drill_subset | clinic.infra.restore_drill_subset_problems }}"
"""

RETURN = r"""
_value:
  description: Messages, one per problem; empty when the rules are sound.
  type: list
  elements: str
"""

NAMESPACE = re.compile(r"^[^.$]+\.[^$]+$")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
KINDS = ("days", "fraction", "follow")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rule_problems(namespace: str, rule: Any, rules: Mapping[str, Any]) -> list[str]:
    where = f"restore_drill_subset['{namespace}']"
    if not isinstance(rule, Mapping):
        return [f"{where} must be a dict with one of days, fraction or follow"]
    kinds = [kind for kind in KINDS if kind in rule]
    if len(kinds) != 1:
        return [
            f"{where} must have exactly one of days, fraction or follow (has {kinds or 'none'})"
        ]
    kind = kinds[0]
    allowed = {"days": {"days", "field"}, "fraction": {"fraction"}, "follow": {"follow", "field"}}
    extra = sorted(set(rule) - allowed[kind])
    if extra:
        return [f"{where}: unknown keys {extra} for a {kind} rule"]
    if kind != "fraction" and not (
        isinstance(rule.get("field"), str) and FIELD.match(rule["field"])
    ):
        return [f"{where}: field must be a field path (got {rule.get('field')!r})"]
    if kind == "days" and not (
        isinstance(rule["days"], int)
        and not isinstance(rule["days"], bool)
        and 1 <= rule["days"] <= 3650
    ):
        return [f"{where}: days must be a whole number of days, 1 to 3650 (got {rule['days']!r})"]
    if kind == "fraction" and not (_number(rule["fraction"]) and 0 < rule["fraction"] <= 1):
        return [
            f"{where}: fraction must be a number above 0 and at most 1 (got {rule['fraction']!r})"
        ]
    if kind == "follow":
        followed = rule["follow"]
        if followed == namespace or not isinstance(rules.get(followed), Mapping):
            return [f"{where}: follows {followed!r}, which has no subset rule of its own"]
        if "follow" in rules[followed]:
            return [f"{where}: follows {followed!r}, which itself follows another namespace"]
    return []


def restore_drill_subset_problems(rules: Any) -> list[str]:
    if not isinstance(rules, Mapping):
        return ["restore_drill_subset must be a dict from <db>.<collection> to a rule"]
    problems = []
    for namespace, rule in rules.items():
        if not (isinstance(namespace, str) and NAMESPACE.match(namespace)):
            problems.append(f"restore_drill_subset: {namespace!r} is not a <db>.<collection>")
            continue
        problems.extend(_rule_problems(namespace, rule, rules))
    return problems


class FilterModule:
    def filters(self) -> dict:
        return {"restore_drill_subset_problems": restore_drill_subset_problems}
