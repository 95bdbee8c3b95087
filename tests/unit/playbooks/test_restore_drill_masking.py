"""The restore drill's masking paths and request checks (roles/restore_drill/files)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.unit.playbooks import role_scripts


@pytest.fixture(scope="module")
def drill() -> ModuleType:
    return role_scripts.load("restore_drill", "restore_drill_run")


def paths(drill: ModuleType, doc: dict[str, Any], path: str) -> dict[str, Any]:
    return {concrete: c[k] for c, k, concrete in drill.leaves(doc, path.split("."), ())}


def test_a_path_reaches_every_element_of_every_array_on_its_way(drill: ModuleType) -> None:
    doc = {
        "contacts": [
            {"phone": "a", "relation": "spouse"},
            {"relation": "parent"},
            {"phone": ["b", "c"]},
            [{"phone": "d"}],
        ],
        "phone": "top",
    }
    assert paths(drill, doc, "contacts.phone") == {
        "contacts.0.phone": "a",
        "contacts.2.phone.0": "b",
        "contacts.2.phone.1": "c",
        "contacts.3.0.phone": "d",
    }
    assert paths(drill, doc, "phone") == {"phone": "top"}
    assert paths(drill, doc, "absent.phone") == {}
    assert paths(drill, {"tags": ["x", "y"]}, "tags") == {"tags.0": "x", "tags.1": "y"}


def test_each_element_gets_its_own_fake(drill: ModuleType) -> None:
    fakes = {drill.fake("phone", "p1", f"contacts.{i}.phone") for i in range(20)}
    assert len(fakes) > 15
    assert drill.fake("phone", "p1", "contacts.0.phone") == drill.fake(
        "phone", "p1", "contacts.0.phone"
    )


@pytest.mark.parametrize(
    ("rules", "unmasked", "problem"),
    [
        ([], [], "the masking rules are empty"),
        ([{"namespace": "clinic.patients", "fields": {}}], [], "the masking rules are empty"),
        ([{"namespace": "clinic.patients", "fields": {"a": "shuffle"}}], [], "bad masking rule"),
        ([{"namespace": "patients", "fields": {"a": "name"}}], [], "bad masking rule"),
        (
            [{"namespace": "clinic.patients", "fields": {"a": "name"}}],
            ["clinic.patients"],
            "both masked and declared unmasked",
        ),
    ],
)
def test_bad_requests_are_refused(
    drill: ModuleType, rules: list[dict[str, Any]], unmasked: list[str], problem: str
) -> None:
    assert problem in drill.check_request({"rules": rules, "unmasked": unmasked})


def test_a_good_request_passes(drill: ModuleType) -> None:
    rules = [{"namespace": "clinic.patients", "fields": {"contacts.phone": "phone"}}]
    assert drill.check_request({"rules": rules, "unmasked": ["clinic.visits"]}) is None
