"""Config translation: merge the JSON sources, validate them, render the TOML (config-translator).

Validation runs the JSON Schema (draft-04) installed where the agent keeps its schema (in the
double's package: the project's statement of the agent's format, agent_schema.json) with
`jsonschema.Draft4Validator` and reports each error in the translator's format
(`Under path : /a/b | Error : ...`, with gojsonschema's wording), followed by the rule checks the
translator makes after the schema (conflicting retention per log group, missing region, unknown
run_as_user, merge conflicts).
"""

from __future__ import annotations

import copy
import json
import pwd
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .environment import MODE_EC2, MODE_ON_PREMISE, CommonConfigError, detect_mode, detect_region
from .paths import Paths

TMP_SUFFIX = ".tmp"
FIRST_PHASE_FAILED = (
    "Configuration validation first phase failed. Agent version: 1.0. "
    "Verify the JSON input is only using features supported by this version."
)
NO_JSON = "No json config files found, please provide config, exit now"
MULTI_DEFAULT = "default"
MULTI_APPEND = "append"
MULTI_REMOVE = "remove"
# Arrays that several sources extend instead of conflicting over.
APPENDED_ARRAYS = frozenset({"collect_list", "procstat"})
KNOWN_TOP_LEVEL = ("agent", "metrics", "logs", "traces", "opentelemetry")


class SchemaUnavailable(Exception):
    """The schema is not installed where the package puts it."""


def golog(message: str) -> str:
    """A line as Go's standard logger prints it."""
    return f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}"


def load_validator(path: Path) -> jsonschema.Draft4Validator:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SchemaUnavailable(f"agent JSON schema not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise SchemaUnavailable(f"agent JSON schema unreadable: {path}: {exc}") from exc
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


# ---------------------------------------------------------------------------- schema errors


def format_path(parts: Iterable[Any]) -> str:
    """gojsonschema context as the translator prints it: (root).a.0.b -> /a/0/b."""
    items = [str(p) for p in parts]
    if not items:
        return "(root)"
    return "/" + "/".join(items).replace(".", "/")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _field(parts: list[Any]) -> str:
    return str(parts[-1]) if parts else "(root)"


def _describe(error: ValidationError) -> list[tuple[list[Any], str]]:
    """One schema error as (path, gojsonschema-style description) pairs."""
    parts = list(error.absolute_path)
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    if kind == "type":
        expected = value if isinstance(value, str) else ", ".join(value)
        return [(parts, f"Invalid type. Expected: {expected}, given: {_json_type(instance)}")]
    if kind == "required":
        missing = [name for name in value if name not in instance]
        return [(parts, f"{name} is required") for name in missing]
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in known)
        return [(parts, f"Additional property {name} is not allowed") for name in extra]
    if kind == "enum":
        allowed = ", ".join(json.dumps(v) for v in value)
        return [(parts, f"{_field(parts)} must be one of the following: {allowed}")]
    simple = {
        "minimum": f"Must be greater than or equal to {value}",
        "maximum": f"Must be less than or equal to {value}",
        "minLength": f"String length must be greater than or equal to {value}",
        "maxLength": f"String length must be less than or equal to {value}",
        "minItems": f"Array must have at least {value} items",
        "maxItems": f"Array must have at most {value} items",
        "uniqueItems": "Array items must be unique",
        "pattern": f"Does not match pattern '{value}'",
        "not": "Must not validate the schema (not)",
        "minProperties": f"Must have at least {value} properties",
        "maxProperties": f"Must have at most {value} properties",
    }
    if kind in simple:
        return [(parts, simple[kind])]
    if kind in ("anyOf", "oneOf"):
        text = {
            "anyOf": "Must validate at least one schema (anyOf)",
            "oneOf": "Must validate one and only one schema (oneOf)",
        }[kind]
        out = [(parts, text)]
        best = best_match(error.context) if error.context else None
        if best is not None:
            out.extend(_describe(best))
        return out
    return [(parts, error.message)]


def schema_errors(doc: Any, validator: jsonschema.Draft4Validator) -> list[str]:
    described: list[tuple[list[Any], str]] = []
    for error in validator.iter_errors(doc):
        described.extend(_describe(error))
    described.sort(key=lambda item: ([str(p) for p in item[0]], item[1]))
    seen: list[str] = []
    for parts, text in described:
        line = f"Under path : {format_path(parts)} | Error : {text}"
        if line not in seen:
            seen.append(line)
    return seen


# ---------------------------------------------------------------------------- sources and merge


@dataclass
class Source:
    key: str
    path: Path


def collect_sources(paths: Paths, multi_config: str) -> list[Source]:
    """The JSON files the translator reads for a multi-config mode, keyed like the agent keys them.

    default: only `.tmp` files; append: the legacy JSON, existing files and `.tmp` files (a `.tmp`
    replaces the file of the same name); remove: the legacy JSON and existing files.
    """
    found: dict[str, Path] = {}
    if multi_config in (MULTI_APPEND, MULTI_REMOVE) and paths.legacy_json.is_file():
        found[str(paths.legacy_json)] = paths.legacy_json
    if paths.json_dir.is_dir():
        for path in sorted(paths.json_dir.iterdir()):
            if not path.resolve().is_file():
                continue
            if path.suffix == TMP_SUFFIX:
                if multi_config in (MULTI_DEFAULT, MULTI_APPEND):
                    found[str(path)[: -len(TMP_SUFFIX)]] = path
            elif multi_config in (MULTI_APPEND, MULTI_REMOVE):
                found.setdefault(str(path), path)
    return [Source(key, path) for key, path in sorted(found.items())]


def _merge_into(
    into: dict[str, Any], new: dict[str, Any], where: list[str], errors: list[str]
) -> None:
    for key, value in new.items():
        if key not in into:
            into[key] = copy.deepcopy(value)
        elif isinstance(into[key], dict) and isinstance(value, dict):
            _merge_into(into[key], value, [*where, key], errors)
        elif key in APPENDED_ARRAYS and isinstance(into[key], list) and isinstance(value, list):
            into[key].extend(copy.deepcopy(v) for v in value if v not in into[key])
        elif into[key] != value:
            errors.append(
                f"Under path : {format_path([*where, key])} | Error : "
                f"Different values are specified for {key}"
            )


def merge(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    merged: dict[str, Any] = {}
    errors: list[str] = []
    for doc in docs:
        _merge_into(merged, doc, [], errors)
    return merged, errors


# ---------------------------------------------------------------------------- rule checks


def _log_entries(merged: dict[str, Any]) -> list[tuple[list[Any], dict[str, Any]]]:
    collected = merged.get("logs", {}).get("logs_collected", {})
    out: list[tuple[list[Any], dict[str, Any]]] = []
    for kind in ("files", "journald", "windows_events"):
        items = collected.get(kind, {}).get("collect_list", [])
        for index, item in enumerate(items):
            out.append((["logs", "logs_collected", kind, "collect_list", index], item))
    return out


def _user_exists(paths: Paths, name: str) -> bool:
    passwd = paths.host("/etc/passwd")
    if not paths.is_system_root and passwd.is_file():
        names = [line.split(":", 1)[0] for line in passwd.read_text(encoding="utf-8").splitlines()]
        return name in names
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def rule_errors(merged: dict[str, Any], paths: Paths, mode: str, region: str) -> list[str]:
    errors: list[str] = []
    retention: dict[str, int] = {}
    for where, entry in _log_entries(merged):
        days = entry.get("retention_in_days")
        group = entry.get("log_group_name") or entry.get("file_path") or ""
        if not isinstance(days, int) or days <= 0:
            continue
        if group in retention and retention[group] != days:
            errors.append(
                f"Under path : {format_path([*where, 'retention_in_days'])} | Error : "
                f"Different retention_in_days values can't be set for the same log group: {group}"
            )
        retention.setdefault(group, days)
    agent = merged.get("agent", {})
    if not (agent.get("region") or region):
        errors.append(
            f"Under path : /agent/region | Error : Region info is missing for mode: {mode}"
        )
    user = agent.get("run_as_user")
    if isinstance(user, str) and user and not _user_exists(paths, user):
        errors.append(
            f"Under path : /agent/run_as_user | Error : user: unknown user {user} "
            "(run_as_user must name an existing user)"
        )
    return errors


# ---------------------------------------------------------------------------- rendering


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _measurements(plugin: Any) -> list[str]:
    items = plugin.get("measurement", []) if isinstance(plugin, dict) else []
    return [m if isinstance(m, str) else str(m.get("name", "")) for m in items]


def render_toml(merged: dict[str, Any], mode: str, region: str) -> str:
    """A readable TOML summary of what a real agent would load (not telegraf's full TOML)."""
    agent = merged.get("agent", {})
    interval = agent.get("metrics_collection_interval", 60)
    lines = [
        "# Written by the amazon-cloudwatch-agent test double (the real one writes telegraf TOML)",
        "[agent]",
        f'  interval = "{interval}s"',
        f"  logfile = {_toml_value(agent.get('logfile', ''))}",
        f"  debug = {_toml_value(bool(agent.get('debug', False)))}",
        f"  omit_hostname = {_toml_value(bool(agent.get('omit_hostname', False)))}",
        f"  run_as_user = {_toml_value(agent.get('run_as_user', 'root'))}",
        "",
        "[double]",
        f"  mode = {_toml_value(mode)}",
        f"  region = {_toml_value(agent.get('region') or region)}",
    ]
    metrics = merged.get("metrics", {})
    for name, plugin in sorted(metrics.get("metrics_collected", {}).items()):
        instances = plugin if isinstance(plugin, list) else [plugin]
        for item in instances:
            lines += ["", f"[[inputs.{name}]]", f"  fieldpass = {_toml_value(_measurements(item))}"]
            for key in ("resources", "ignore_file_system_types", "exe", "pattern", "pid_file"):
                if isinstance(item, dict) and key in item:
                    lines.append(f"  {key} = {_toml_value(item[key])}")
    for where, entry in _log_entries(merged):
        lines += ["", f"[[inputs.{where[2]}.file_config]]"]
        for key, value in sorted(entry.items()):
            if isinstance(value, str | int | bool):
                lines.append(f"  {json.dumps(key)} = {_toml_value(value)}")
    if metrics:
        lines += ["", "[[outputs.cloudwatch]]"]
        lines.append(f"  namespace = {_toml_value(metrics.get('namespace', 'CWAgent'))}")
        dims = sorted(metrics.get("append_dimensions", {}))
        lines.append(f"  append_dimensions = {_toml_value(dims)}")
    if merged.get("logs"):
        lines += ["", "[[outputs.cloudwatchlogs]]"]
        flush = merged["logs"].get("force_flush_interval", 5)
        lines.append(f'  force_flush_interval = "{flush}s"')
    return "\n".join(lines) + "\n"


def env_config(merged: dict[str, Any]) -> dict[str, str]:
    agent = merged.get("agent", {})
    env = {}
    if agent.get("debug"):
        env["CWAGENT_LOG_LEVEL"] = "DEBUG"
    if agent.get("aws_sdk_log_level"):
        env["AWS_SDK_LOG_LEVEL"] = str(agent["aws_sdk_log_level"])
    return env


# ---------------------------------------------------------------------------- the translator


@dataclass
class Translation:
    """Outcome of one translator run; `log` holds the lines the translator prints (stderr)."""

    ok: bool
    no_json: bool = False
    log: list[str] = field(default_factory=list)
    merged: dict[str, Any] | None = None


def translate(paths: Paths, multi_config: str, mode: str) -> Translation:
    """Read, merge, validate and (when valid) write the TOML and env-config.json."""
    result = Translation(ok=False)
    sources = collect_sources(paths, multi_config)
    if not sources:
        result.no_json = True
        result.log.append(golog(f"I! {NO_JSON}"))
        return result
    docs: list[dict[str, Any]] = []
    for source in sources:
        result.log.append(golog(f"Reading json config file path: {source.path} ..."))
        try:
            doc = json.loads(source.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            result.log.append(golog(f"E! Failed to generate merged json config: {exc}"))
            result.log.append(golog(FIRST_PHASE_FAILED))
            return result
        if not isinstance(doc, dict):
            result.log.append(
                golog(f"E! Failed to generate merged json config: {source.path} is not an object")
            )
            result.log.append(golog(FIRST_PHASE_FAILED))
            return result
        docs.append(doc)
    merged, errors = merge(docs)
    try:
        validator = load_validator(paths.schema)
    except SchemaUnavailable as exc:
        result.log.append(golog(f"E! {exc}"))
        return result
    errors += schema_errors(merged, validator)
    if errors:
        result.log.append(golog("E! Invalid Json input schema."))
        result.log.extend(golog(line) for line in errors)
        result.log.append(golog(FIRST_PHASE_FAILED))
        return result
    result.log.append(golog("I! Valid Json input schema."))
    for key in merged:
        if key not in KNOWN_TOP_LEVEL:
            result.log.append(
                golog(f"W! [double] top-level key {key!r} is accepted and ignored by the agent")
            )
    try:
        resolved = detect_mode(paths, mode)
        region = detect_region(paths, resolved)
    except CommonConfigError as exc:
        result.log.append(golog(f"E! {exc}"))
        return result
    label = MODE_EC2 if resolved == MODE_EC2 else MODE_ON_PREMISE
    rules = rule_errors(merged, paths, label, region)
    if rules:
        result.log.extend(golog(line) for line in rules)
        result.log.append(golog(FIRST_PHASE_FAILED))
        return result
    paths.toml.write_text(render_toml(merged, resolved, region), encoding="utf-8")
    paths.env_config.write_text(json.dumps(env_config(merged)) + "\n", encoding="utf-8")
    result.ok = True
    result.merged = merged
    return result
