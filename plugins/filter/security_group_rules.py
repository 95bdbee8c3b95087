"""Jinja filter that turns a host firewall allow-list into security group rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DOCUMENTATION = r"""
---
name: security_group_rules
short_description: Turn a base_hardening firewall allow-list into ec2_security_group rules
version_added: 0.1.0
description:
  - Takes entries of C(base_hardening_firewall_allow) (C(name), C(ports), C(proto), C(sources))
    and returns the C(rules) of M(amazon.aws.ec2_security_group) that allow the same traffic, so
    that a security group mirrors the host firewall. The entry's name becomes the rules'
    description.
  - An entry without sources allows nothing and gives no rule. Ports are converted to integers.
positional: _input
options:
  _input:
    description: Firewall allow-list entries.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
rules: "{{ base_hardening_firewall_allow | clinic.infra.security_group_rules }}"
# [{name: mongodb, ports: [27017], sources: [10.20.20.0/24]}]
#   -> [{proto: tcp, ports: [27017], cidr_ip: [10.20.20.0/24], rule_desc: mongodb}]
"""

RETURN = r"""
_value:
  description: Rules with C(proto), C(ports), C(cidr_ip) and C(rule_desc).
  type: list
  elements: dict
"""


def security_group_rules(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rules = []
    for entry in entries:
        sources = [str(source) for source in entry.get("sources") or []]
        if not sources:
            continue
        rules.append(
            {
                "proto": str(entry.get("proto") or "tcp"),
                "ports": [int(port) for port in entry["ports"]],
                "cidr_ip": sources,
                "rule_desc": str(entry["name"]),
            }
        )
    return rules


class FilterModule:
    def filters(self) -> dict:
        return {"security_group_rules": security_group_rules}
