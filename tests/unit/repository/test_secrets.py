"""Every secret's SSM path is named once (group_vars/all/secrets.yml), and everything that reads,
seeds or grants a secret reads that list."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lab import settings

ROOT = Path(__file__).resolve().parents[3]
SECRETS_FILE = ROOT / "group_vars" / "all" / "secrets.yml"
SECRETS: dict[str, dict] = yaml.safe_load(SECRETS_FILE.read_text())["clinic_secrets"]
PATHS = {secret["path"] for secret in SECRETS.values()}
# Parameters under clinic_ssm_prefix that are not generated secrets: the live release (a plain
# String written by the deploy), the run lock (a String its holder creates and deletes), the alarm
# webhook's URL (an operator stores it), the environment's TLS CA (the tls_certificate role creates
# it: group_vars/all/tls.yml) and the replica set scenario's (under mongodb/tls/).
NOT_GENERATED = {
    "app/release",
    "run-lock",
    "monitoring/webhook_url",
    "tls/ca_key",
    "tls/ca_certificate",
    "mongodb/tls",
}


def texts(*globs: str) -> dict[Path, str]:
    return {path: path.read_text() for pattern in globs for path in sorted(ROOT.glob(pattern))}


def test_each_secret_has_a_path_and_a_length() -> None:
    assert SECRETS
    for name, secret in SECRETS.items():
        assert re.fullmatch(r"[a-z]+/[a-z_]+", secret["path"]), name
        assert name == secret["path"].replace("/", "_"), f"{name}: name it after its path"
        assert 8 <= int(secret["length"]) <= 1024, name
    assert len(PATHS) == len(SECRETS)


def test_the_wiring_names_no_secret_path_of_its_own() -> None:
    # Both shapes: clinic_ssm_prefix ~ '/x/y' and "{{ clinic_ssm_prefix }}/x/y".
    named = {
        f"{path.relative_to(ROOT)}: {found}"
        for path, text in texts("group_vars/**/*.yml").items()
        if path != SECRETS_FILE
        for found in re.findall(r"clinic_ssm_prefix(?: ~ '| }})/([\w/.-]+)", text)
        if found not in NOT_GENERATED
    }
    assert not named, "name a secret's path in group_vars/all/secrets.yml only"


def test_every_secret_the_wiring_reads_is_named_and_every_named_one_is_read() -> None:
    read = {
        name
        for text in texts("group_vars/**/*.yml", "roles/*/defaults/*.yml").values()
        for name in re.findall(r"clinic_secret_parameters\.(\w+)", text)
    }
    assert read == set(SECRETS)


def test_the_lab_seeds_every_secret() -> None:
    assert {s.name: s.length for s in settings.secrets()} == {
        s["path"]: int(s["length"]) for s in SECRETS.values()
    }


def test_the_scenarios_seed_every_secret_and_name_none() -> None:
    services = (ROOT / "molecule" / "resources" / "services.yml").read_text()
    assert "group_vars/all/secrets.yml" in services
    seeding = 0
    for path, text in texts("molecule/*/molecule.yml").items():
        inventory = yaml.safe_load(text)["provisioner"].get("inventory", {})
        group_vars = inventory.get("group_vars", {}).get("all", {})
        assert "harness_ssm_secrets" not in group_vars, path
        seeding += "harness_ssm_prefixes" in group_vars
    assert seeding >= 4, "the scenarios that read secrets seed them by prefix"


def test_the_scenarios_and_the_lab_read_only_named_secrets() -> None:
    # A literal /clinic/<env>/<path> where the scenarios and the lab read their secrets is a named
    # secret or a parameter that is not generated: a typo would read a parameter nothing seeds.
    # (Bad-input tests name missing parameters on purpose.)
    wrong = {
        f"{path.relative_to(ROOT)}: {found}"
        for path, text in texts(
            "molecule/*/vars.yml", "molecule/*/tests/conftest.py", "lab/*.py"
        ).items()
        for found in re.findall(
            r"/clinic/(?:molecule|drill|lab|stage|prod|dev)/([a-z]+/[a-z_]+)", text
        )
        if found not in PATHS | NOT_GENERATED
    }
    assert not wrong
