"""The Ansible strategy of the lab's, the Molecule scenarios' and the unit tests' runs: Mitogen's.

Same plays, same order, same results; Mitogen keeps one Python interpreter per host and sends
modules to it instead of starting Python for every task (docs/benchmarks.md). Any other name
(`linear`) is Ansible's own.
"""

from __future__ import annotations

from pathlib import Path

import ansible_mitogen

DEFAULT = "mitogen_linear"


def environment(name: str = DEFAULT) -> dict[str, str]:
    """ANSIBLE_STRATEGY for name, and where Ansible finds the strategy when it is Mitogen's."""
    if not name.startswith("mitogen"):
        return {"ANSIBLE_STRATEGY": name}
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY": name, "ANSIBLE_STRATEGY_PLUGINS": str(plugins)}
