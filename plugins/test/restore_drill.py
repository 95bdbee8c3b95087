"""Jinja test for the restore drill's target: the allow-list that no variable can widen.

Documented in restore_drill_target.yml beside this file."""

from __future__ import annotations

# Environments a drill may restore another environment's backup into. prod holds real patient data
# and dev is open to every engineer: neither is ever a target, whatever the variables say.
TARGETS = frozenset({"stage", "lab"})


def restore_drill_target(
    target: object, source: object, inventory_env: object, host_env: object
) -> bool:
    """True when target is allow-listed, differs from source, and both the inventory and the host
    (its Environment tag) say they belong to it."""
    return (
        isinstance(target, str)
        and target in TARGETS
        and source != target
        and inventory_env == target
        and host_env == target
    )


class TestModule:
    def tests(self) -> dict:
        return {"restore_drill_target": restore_drill_target}
