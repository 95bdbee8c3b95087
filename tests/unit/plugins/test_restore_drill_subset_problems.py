"""The restore drill's subset rules: each problem named with the variable and the namespace."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.filter.restore_drill_subset_problems import restore_drill_subset_problems

GOOD = {
    "clinic.audit_log": {"days": 30, "field": "createdAt"},
    "clinic.patients": {"fraction": 0.25},
    "clinic.visits": {"follow": "clinic.patients", "field": "patient"},
}


def test_sound_rules_have_no_problem() -> None:
    assert restore_drill_subset_problems(GOOD) == []
    assert restore_drill_subset_problems({}) == []
    assert restore_drill_subset_problems({"a.b": {"fraction": 1}}) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([], "restore_drill_subset must be a dict"),
        ({"patients": {"fraction": 0.5}}, "'patients' is not a <db>.<collection>"),
        ({"a.b": "half"}, "restore_drill_subset['a.b'] must be a dict"),
        ({"a.b": {}}, "exactly one of days, fraction or follow (has none)"),
        ({"a.b": {"days": 3, "fraction": 0.5, "field": "d"}}, "exactly one of"),
        ({"a.b": {"days": 3}}, "field must be a field path (got None)"),
        ({"a.b": {"days": 3, "field": "$where"}}, "field must be a field path"),
        (
            {"a.b": {"days": 0, "field": "d"}},
            "days must be a whole number of days, 1 to 3650 (got 0)",
        ),
        ({"a.b": {"days": "30", "field": "d"}}, "(got '30')"),
        ({"a.b": {"days": True, "field": "d"}}, "(got True)"),
        ({"a.b": {"fraction": 0}}, "fraction must be a number above 0 and at most 1 (got 0)"),
        ({"a.b": {"fraction": 1.5}}, "(got 1.5)"),
        ({"a.b": {"fraction": "all"}}, "(got 'all')"),
        ({"a.b": {"fraction": 0.5, "field": "x"}}, "unknown keys ['field'] for a fraction rule"),
        ({"a.b": {"follow": "a.c", "field": "c"}}, "follows 'a.c', which has no subset rule"),
        ({"a.b": {"follow": "a.b", "field": "c"}}, "follows 'a.b', which has no subset rule"),
        (
            {
                "a.b": {"fraction": 0.5},
                "a.c": {"follow": "a.b", "field": "b"},
                "a.d": {"follow": "a.c", "field": "c"},
            },
            "restore_drill_subset['a.d']: follows 'a.c', which itself follows another namespace",
        ),
    ],
)
def test_each_problem_names_the_variable(rules: Any, message: str) -> None:
    problems = restore_drill_subset_problems(rules)
    assert len(problems) == 1, problems
    assert message in problems[0]
    assert "restore_drill_subset" in problems[0]
