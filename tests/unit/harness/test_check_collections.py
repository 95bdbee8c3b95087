"""The molecule dependency step: bundled collections against requirements.yml."""

from __future__ import annotations

from packaging.version import Version

from tests.harness.check_collections import unmet


def test_met_and_unmet_requirements() -> None:
    installed = {"amazon.aws": Version("10.1.2"), "community.aws": Version("10.0.0")}
    requirements = [
        {"name": "amazon.aws", "version": ">=10.1.2"},
        {"name": "community.aws", "version": ">=11.0.0"},
        {"name": "community.mongodb", "version": ">=1.7.10"},
    ]
    assert unmet(requirements, installed) == [
        "community.aws: 10.0.0 installed, requirements.yml asks for '>=11.0.0'",
        "community.mongodb: not installed (requirements.yml asks for '>=1.7.10')",
    ]
