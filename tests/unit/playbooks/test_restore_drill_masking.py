"""The restore drill's masking paths, request checks and subsets (roles/restore_drill/files)."""

from __future__ import annotations

import datetime
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


# --- subsets ------------------------------------------------------------------------------------

TAKEN = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=datetime.UTC)


def test_a_namespace_without_a_rule_copies_whole(drill: ModuleType) -> None:
    query, keep = drill.selection(None, TAKEN, {})
    assert query == {} and keep({"_id": 1})


def test_days_are_counted_back_from_the_backup(drill: ModuleType) -> None:
    query, keep = drill.selection({"days": 30, "field": "createdAt"}, TAKEN, {})
    assert query == {
        "createdAt": {"$gte": datetime.datetime(2026, 10, 27, 2, 0, tzinfo=datetime.UTC)}
    }
    assert keep({"_id": 1})


def test_a_fraction_is_a_fixed_sample_of_about_that_size(drill: ModuleType) -> None:
    _, keep = drill.selection({"fraction": 0.25}, TAKEN, {})
    chosen = [i for i in range(4000) if keep({"_id": f"p{i}"})]
    assert 800 < len(chosen) < 1200
    _, again = drill.selection({"fraction": 0.25}, TAKEN, {})
    assert [i for i in range(4000) if again({"_id": f"p{i}"})] == chosen
    _, everything = drill.selection({"fraction": 1}, TAKEN, {})
    assert all(everything({"_id": i}) for i in range(1000))


def test_a_follow_rule_keeps_the_documents_of_kept_ids(drill: ModuleType) -> None:
    kept = {"clinic.patients": {drill.value_key("p1"), drill.value_key("p3")}}
    _, keep = drill.selection({"follow": "clinic.patients", "field": "who.patient"}, TAKEN, kept)
    assert keep({"_id": 1, "who": {"patient": "p1"}})
    assert not keep({"_id": 2, "who": {"patient": "p2"}})
    assert not keep({"_id": 3, "who": "p3"})
    assert not keep({"_id": 4})
