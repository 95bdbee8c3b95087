"""The double's schema (agent_schema.json): its verdicts, and a cross-check against AWS's schema.

agent_schema.json is the project's statement of the part of the agent's configuration format the
role and these tests rely on. The first test needs nothing beside the repository: it states the
verdict (valid or not) the schema gives every configuration the double's contract tests use.

The cross-checks compare that statement with AWS's published schema when a copy of it is at
../shared/vendor/amazon-cloudwatch-agent/schema.json (not part of the repository; without it they
are skipped, naming the file): AWS's schema gives every one of those configurations the same
verdict, and every field stated here has the same type there, the same enum, bounds and required
keys, and is closed to unknown keys exactly where AWS's schema is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.doubles.cloudwatch_agent.ctl import DEFAULT_CONFIG
from tests.doubles.cloudwatch_agent.packaging import DEFAULT_SCHEMA
from tests.doubles.shared_files import shared_file

from . import configs
from .test_validation import FIRST_ITEM, REFUSED

VENDOR_SCHEMA = "vendor/amazon-cloudwatch-agent/schema.json"
FieldPath = tuple[str, ...]
ITEMS = "[]"  # a path step into an array's items
OTHER = "*"  # a path step into additionalProperties' schema
# Fields the project states that AWS's schema leaves open (the translator checks them by rule).
OPEN_IN_VENDOR: set[FieldPath] = {("agent", "run_as_user")}
BOUNDS = ("minimum", "maximum", "minLength", "minItems", "minProperties")

# name -> (configuration, valid under the schema?) for every configuration the double's tests use.
CASES: dict[str, tuple[Any, bool]] = {
    **{f"valid/{name}": (config, True) for name, config in configs.VALID.items()},
    **{f"refused/{name}": (config, False) for name, (config, _) in REFUSED.items()},
    "ctl_default_config": (DEFAULT_CONFIG, True),
    "legacy_json_agent_only": ({"agent": {}}, True),
    "unknown_top_level_key": (
        {"agent": dict(configs.AGENT), "log": configs.MONGOD_LOG["logs"]},
        True,
    ),
    "retention_differs_in_one_group": (
        configs.with_logs(
            configs.log_entry("/var/log/syslog", "/clinic/test/system", retention=30),
            configs.log_entry("/var/log/auth.log", "/clinic/test/system", retention=365),
        ),
        True,
    ),
    "unknown_run_as_user": (
        configs.changed(configs.MONGOD_LOG, "agent", "run_as_user", value="nobody-here"),
        True,
    ),
    "other_interval": (
        configs.changed(configs.MONGOD_LOG, "agent", "metrics_collection_interval", value=10),
        True,
    ),
    "interval_not_a_number": (
        configs.changed(configs.MONGOD_LOG, "agent", "metrics_collection_interval", value="x"),
        False,
    ),
    "files_without_collect_list": (
        configs.changed(configs.MONGOD_LOG, "logs", "logs_collected", "files", value={}),
        False,
    ),
    "two_errors": (
        configs.changed(
            configs.changed(configs.MONGOD_LOG, *FIRST_ITEM, "retention_in_days", value=45),
            "agent",
            "metrics_collection_interval",
            value="60",
        ),
        False,
    ),
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return load(DEFAULT_SCHEMA)


@pytest.fixture(scope="module")
def vendor() -> dict[str, Any]:
    return load(shared_file(VENDOR_SCHEMA))


@pytest.mark.parametrize("name", sorted(CASES))
def test_project_schema_verdicts(ours: dict[str, Any], name: str) -> None:
    config, valid = CASES[name]
    assert jsonschema.Draft4Validator(ours).is_valid(config) is valid


@pytest.mark.parametrize("name", sorted(CASES))
def test_vendor_schema_gives_the_same_verdict(
    ours: dict[str, Any], vendor: dict[str, Any], name: str
) -> None:
    config, _ = CASES[name]
    mine = jsonschema.Draft4Validator(ours).is_valid(config)
    theirs = jsonschema.Draft4Validator(vendor).is_valid(config)
    assert theirs == mine, f"{name}: AWS's schema says valid={theirs}, ours valid={mine}"


# ---------------------------------------------------------------------------- field by field


class Schema:
    """A draft-04 schema, read along paths of property names, ITEMS and OTHER steps."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def expand(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The node and every allOf part of it (all of them apply at the same place)."""
        node = self.deref(node)
        out = [node]
        for part in node.get("allOf", []):
            out += self.expand(part)
        return out

    def alternatives(self, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            alt
            for n in nodes
            for k in ("anyOf", "oneOf")
            for a in n.get(k, [])
            for alt in self.expand(a)
        ]

    def at(self, path: FieldPath) -> list[dict[str, Any]] | str:
        """The subschemas that apply at `path`, or "refused" / "open" when none states it."""
        nodes = self.expand(self.root)
        for step in path:
            scope = nodes + self.alternatives(nodes)
            found: list[dict[str, Any]] = []
            for node in scope:
                if step == ITEMS and isinstance(node.get("items"), dict):
                    found += self.expand(node["items"])
                elif step not in (ITEMS, OTHER) and step in node.get("properties", {}):
                    found += self.expand(node["properties"][step])
            if not found and step != ITEMS:
                for node in scope:
                    if isinstance(node.get("additionalProperties"), dict):
                        found += self.expand(node["additionalProperties"])
            if not found:
                closed = any(n.get("additionalProperties") is False for n in scope)
                return "refused" if closed and step != ITEMS else "open"
            nodes = found
        return nodes


def stated(
    schema: Schema, node: dict[str, Any], path: FieldPath = ()
) -> Iterator[tuple[FieldPath, dict]]:
    """Every place our schema states something about, with its (dereferenced) node."""
    node = schema.deref(node)
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from stated(schema, sub, (*path, name))
    if isinstance(node.get("items"), dict):
        yield from stated(schema, node["items"], (*path, ITEMS))
    if isinstance(node.get("additionalProperties"), dict):
        yield from stated(schema, node["additionalProperties"], (*path, OTHER))


def _types(nodes: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        kind = node.get("type")
        out.update([kind] if isinstance(kind, str) else kind or [])
    return out


def _required_choices(nodes: list[dict[str, Any]]) -> set[frozenset[str]]:
    return {frozenset(alt.get("required", [])) for n in nodes for alt in n.get("anyOf", [])}


def mismatches(ours: dict[str, Any], vendor: dict[str, Any]) -> Iterator[str]:
    """What AWS's schema says differently from ours, one line per fact, at each stated place."""
    mine, theirs = Schema(ours), Schema(vendor)
    for path, node in stated(mine, ours):
        where = "/" + "/".join(path)
        found = theirs.at(path)
        if isinstance(found, str):
            if not (found == "open" and path in OPEN_IN_VENDOR):
                yield f"{where}: AWS's schema does not state it ({found})"
            continue
        if path in OPEN_IN_VENDOR:
            yield f"{where}: AWS's schema states it now; drop it from OPEN_IN_VENDOR"
        everything = found + theirs.alternatives(found)
        kinds = {node["type"]} if isinstance(node.get("type"), str) else set(node.get("type", []))
        if not kinds <= _types(everything):
            yield f"{where}: type {sorted(kinds)} here, {sorted(_types(everything))} in AWS's"
        if "enum" in node and node["enum"] not in [n.get("enum") for n in found]:
            yield f"{where}: enum {node['enum']} here, not in AWS's"
        for bound in BOUNDS:
            values = {n[bound] for n in everything if bound in n}
            if bound in node and values != {node[bound]}:
                yield f"{where}: {bound} {node[bound]} here, {sorted(values)} in AWS's"
        required = {name for n in found for name in n.get("required", [])}
        for name in node.get("required", []):
            if name not in required:
                yield f"{where}: {name} is required here, not in AWS's"
        choices = _required_choices([node])
        if choices and not choices <= _required_choices(found):
            yield f"{where}: anyOf of required keys differs from AWS's"
        closed_here = node.get("additionalProperties") is False
        closed_there = any(n.get("additionalProperties") is False for n in found)
        if "properties" in node and closed_here != closed_there:
            yield f"{where}: closed to unknown keys here: {closed_here}, in AWS's: {closed_there}"


def test_every_field_we_state_agrees_with_the_vendor_schema(
    ours: dict[str, Any], vendor: dict[str, Any]
) -> None:
    assert list(mismatches(ours, vendor)) == []


def test_the_field_comparison_notices_a_difference(
    ours: dict[str, Any], vendor: dict[str, Any]
) -> None:
    """The comparison is not vacuous: a wrong type, enum, field or openness is reported."""
    wrong = json.loads(json.dumps(ours))
    collect = wrong["properties"]["logs"]["properties"]["logs_collected"]["properties"]["files"]
    item = collect["properties"]["collect_list"]["items"]
    item["properties"]["timezone"]["enum"] = ["UTC"]
    item["properties"]["file_path"]["type"] = "array"
    item["properties"]["log_groupname"] = {"type": "string"}
    item["additionalProperties"] = True
    found = "\n".join(mismatches(wrong, vendor))
    for fragment in (
        "collect_list/[]/timezone: enum",
        "collect_list/[]/file_path: type",
        "collect_list/[]/log_groupname: AWS's schema does not state it (refused)",
        "collect_list/[]: closed to unknown keys here: False",
    ):
        assert fragment in found
