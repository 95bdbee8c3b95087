"""Jinja filter that plans a replica set membership change one member at a time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DOCUMENTATION = r"""
---
name: replset_steps
short_description: Plan a replica set reconfiguration as steps that each change one member
version_added: 0.1.0
description:
  - MongoDB refuses a non-forced reconfiguration that adds or removes more than one voting member
    at once, and a safe rollout changes one member at a time anyway. Given the members of the
    current config and the wanted ones, returns the list of member lists to apply in order, each
    differing from the previous one in exactly one member.
  - Order, so that the set keeps its majority throughout, additions first, then changed settings of
    kept members, then removals. Members keep their order; new ones are appended.
  - An empty list means the set already has the wanted members and settings.
positional: _input, wanted
options:
  _input:
    description:
      - Members of the current config, each a dict with C(host), C(priority), C(votes) and
        C(hidden).
    type: list
    elements: dict
    required: true
  wanted:
    description: The wanted members, in the same form.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
steps: "{{ current_members | clinic.infra.replset_steps(wanted_members) }}"
"""

RETURN = r"""
_value:
  description: The member lists to apply in order.
  type: list
  elements: list
"""

KEYS = ("host", "priority", "votes", "hidden")


def _member(value: Mapping) -> dict:
    return {
        "host": str(value["host"]),
        "priority": float(value.get("priority", 1.0)),
        "votes": int(value.get("votes", 1)),
        "hidden": bool(value.get("hidden", False)),
    }


def replset_steps(current: Iterable[Mapping], wanted: Iterable[Mapping]) -> list[list[dict]]:
    state = [_member(m) for m in current]
    goal = {m["host"]: m for m in (_member(w) for w in wanted)}
    steps: list[list[dict]] = []
    present = {m["host"] for m in state}
    for host, member in goal.items():
        if host not in present:
            state = [*state, member]
            steps.append(state)
    for index, member in enumerate(state):
        target = goal.get(member["host"])
        if target is not None and target != member:
            state = [*state[:index], target, *state[index + 1 :]]
            steps.append(state)
    for member in list(state):
        if member["host"] not in goal:
            state = [m for m in state if m["host"] != member["host"]]
            steps.append(state)
    return steps


class FilterModule:
    def filters(self) -> dict:
        return {"replset_steps": replset_steps}
