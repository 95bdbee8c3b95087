"""The restore drill's target allow-list: stage and lab only, agreed by inventory and host."""

from __future__ import annotations

import pytest

from plugins.test.restore_drill import restore_drill_target


@pytest.mark.parametrize("target", ["stage", "lab"])
def test_an_allow_listed_target_that_everything_agrees_on(target: str) -> None:
    assert restore_drill_target(target, "prod", target, target)


@pytest.mark.parametrize(
    ("target", "source", "inventory_env", "host_env"),
    [
        ("prod", "stage", "prod", "prod"),
        ("dev", "prod", "dev", "dev"),
        ("molecule", "prod", "molecule", "molecule"),
        ("Stage", "prod", "Stage", "Stage"),
        ("stage", "stage", "stage", "stage"),
        # -e restore_drill_target_env=stage on the prod inventory, and with the inventory's too:
        ("stage", "prod", "prod", "prod"),
        ("stage", "prod", "stage", "prod"),
        ("stage", "prod", "stage", ""),
        (None, "prod", None, None),
    ],
)
def test_anything_else_is_refused(
    target: object, source: object, inventory_env: object, host_env: object
) -> None:
    assert not restore_drill_target(target, source, inventory_env, host_env)
