"""Jinja filters for network inputs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

DOCUMENTATION = r"""
---
name: split_families
short_description: Split CIDR networks into IPv4 and IPv6 lists
version_added: 0.1.0
description:
  - Returns a dict with keys C(ipv4) and C(ipv6), each the normalised, de-duplicated and sorted
    networks of that family; for rule syntax that differs per family (nftables' C(ip)/C(ip6)).
positional: _input
options:
  _input:
    description: CIDR networks or addresses.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
nets: "{{ ['10.0.0.0/16', '2001:db8::/32'] | clinic.infra.split_families }}"
"""

RETURN = r"""
_value:
  description: A dict with the keys C(ipv4) and C(ipv6), each a list of networks.
  type: dict
"""


def split_families(networks: Iterable[str]) -> dict[str, list[str]]:
    families: dict[str, set] = {"ipv4": set(), "ipv6": set()}
    for value in networks:
        net = ipaddress.ip_network(str(value), strict=True)
        families["ipv4" if net.version == 4 else "ipv6"].add(net)
    return {family: [str(n) for n in sorted(nets)] for family, nets in families.items()}


class FilterModule:
    def filters(self) -> dict:
        return {"split_families": split_families}
