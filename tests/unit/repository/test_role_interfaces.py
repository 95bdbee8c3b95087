"""Every role's interface is a contract: specs, defaults, names and README agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.harness import role_docs

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(params=ROLES, ids=[r.name for r in ROLES])
def role(request: pytest.FixtureRequest) -> Path:
    return request.param


def options(role: Path) -> dict:
    return load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_defaults_equal_the_argument_spec_defaults(role: Path) -> None:
    defaults = load(role / "defaults" / "main.yml")
    spec = options(role)
    assert set(defaults) <= set(spec), "defaults without a spec entry"
    for name, option in spec.items():
        if option.get("required"):
            assert name not in defaults, f"{name} is required and must have no default"
        else:
            assert "default" in option, f"{name} is optional but the spec gives no default"
            assert defaults[name] == option["default"], name


def test_inputs_are_prefixed_with_the_role_name(role: Path) -> None:
    assert all(name.startswith(f"{role.name}_") for name in options(role))


def test_internal_variables_are_double_underscore_prefixed(role: Path) -> None:
    names = set()
    for path in [*role.glob("tasks/*.yml"), *role.glob("vars/*.yml"), *role.glob("handlers/*.yml")]:
        text = path.read_text()
        names |= set(re.findall(r"^\s*register:\s*(\w+)", text, re.MULTILINE))
        names |= set(re.findall(r"^(\w+):", text, re.MULTILINE))
    names -= {"argument_specs"}
    wrong = sorted(n for n in names if not n.startswith(f"__{role.name}_"))
    assert not wrong


def test_secrets_have_no_default(role: Path) -> None:
    for name, option in options(role).items():
        if option.get("no_log"):
            assert option.get("required") is True, name
            assert "default" not in option, name


def test_readme_variable_table_matches_the_spec(role: Path) -> None:
    current, wanted = role_docs.expected_readme(role)
    assert current == wanted, "run `make docs` to regenerate the README's variable table"
