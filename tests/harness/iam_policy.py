"""A small evaluator of IAM identity policies: would these policies let a principal make a request?

moto enforces IAM only in part (it checks S3 object and bucket ARNs, but hands every SSM request
the resource "*", and it denies any request whose matching statement has a condition it cannot
read), so the tests that prove a role's limits evaluate the role's policies here as well.

What it implements, as AWS documents the evaluation of identity-based policies in one account:
- an explicit Deny wins; otherwise any Allow allows; otherwise the request is implicitly denied;
- Action / NotAction (case-insensitive), Resource / NotResource (case-sensitive), with the
  wildcards `*` (any run of characters) and `?` (one character); an ARN pattern is matched
  segment by segment (partition, service, region, account), the resource part as a whole;
- Condition: every operator must hold, every key within an operator, any value within a key;
  the String*, Arn*, Bool and Null operators, the IfExists suffix, and the ForAnyValue: /
  ForAllValues: qualifiers for multi-valued keys. A key missing from the request fails a
  positive operator and satisfies a negated one (StringNot*, ArnNot*) and any ...IfExists
  (so a Deny with ...IfExists applies to a request without the key).

A resource policy's Deny statements that name every principal (`"Principal": "*"`), such as a
bucket policy's guard rails, are evaluated by denies_everyone(). Anything else (other operators,
policy variables, other Principal elements, resource policies' grants, boundaries, SCPs) raises
UnsupportedPolicy instead of being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

ContextValue = str | list[str]


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not implement."""


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "ArnNotEquals",
    "ArnNotLike",
}
_OPERATORS = _NEGATED | {
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "ArnEquals",
    "ArnLike",
    "Bool",
    "Null",
}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variables are not implemented: {pattern}")
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return (
        re.fullmatch(regex, value, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        is not None
    )


def match_action(pattern: str, action: str) -> bool:
    return _glob(pattern, action, ignore_case=True)


def match_arn(pattern: str, arn: str) -> bool:
    """ARN pattern match: wildcards stay within the partition, service, region and account."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return _glob(pattern, arn)
    return all(_glob(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _compare(operator: str, expected: str, actual: str) -> bool:
    base = operator.replace("Not", "")
    if base == "StringEquals":
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base == "StringLike":
        return _glob(expected, actual)
    if base in {"ArnEquals", "ArnLike"}:
        return match_arn(expected, actual)
    if base == "Bool":
        return actual.lower() == str(expected).lower()
    raise UnsupportedPolicy(f"condition operator {operator} is not implemented")


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists") and name != "Null"
    name = name.removesuffix("IfExists")
    if name not in _OPERATORS or qualifier not in {"", "ForAnyValue", "ForAllValues"}:
        raise UnsupportedPolicy(f"condition operator {operator} is not implemented")
    present = key in context
    expected_values = [str(v) for v in _as_list(expected)]
    if name == "Null":
        return (not present) == (expected_values[0].lower() == "true")
    if not present:
        return if_exists or name in _NEGATED or qualifier == "ForAllValues"
    actual = context[key]
    if isinstance(actual, list) and not qualifier:
        raise UnsupportedPolicy(
            f"{key} has several values: qualify {operator} with ForAnyValue/ForAllValues"
        )
    negated = name in _NEGATED
    positive = name.replace("Not", "")

    def one(value: str) -> bool:
        found = any(_compare(positive, e, str(value)) for e in expected_values)
        return not found if negated else found

    values = _as_list(actual)
    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def _conditions_hold(
    conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]
) -> bool:
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, keys in conditions.items()
        for key, expected in keys.items()
    )


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Principal" in statement or "NotPrincipal" in statement:
        raise UnsupportedPolicy(
            "Principal belongs to resource and trust policies, not identity policies"
        )
    if "Action" in statement:
        if not any(match_action(p, request.action) for p in _as_list(statement["Action"])):
            return False
    elif any(match_action(p, request.action) for p in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(match_arn(p, request.resource) for p in _as_list(statement["Resource"])):
            return False
    elif any(match_arn(p, request.resource) for p in _as_list(statement["NotResource"])):
        return False
    return _conditions_hold(statement.get("Condition", {}), request.context)


def evaluate(policies: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """The decision for one request under a principal's identity policies."""
    allowed = False
    for policy in policies:
        for statement in _as_list(policy["Statement"]):
            if statement["Effect"] not in {"Allow", "Deny"}:
                raise UnsupportedPolicy(f"Effect {statement['Effect']!r}")
            if _statement_applies(statement, request):
                if statement["Effect"] == "Deny":
                    return Decision.EXPLICIT_DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def allows(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
) -> bool:
    """True when the policies allow the action on the resource (with these condition keys)."""
    return evaluate(policies, Request(action, resource, context or {})) is Decision.ALLOW


def denies_everyone(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
) -> bool:
    """True when a Deny statement for every principal of a resource policy matches the request."""
    request = Request(action, resource, context or {})
    for statement in _as_list(policy["Statement"]):
        if statement.get("Effect") != "Deny" or statement.get("Principal") not in (
            "*",
            {"AWS": "*"},
        ):
            raise UnsupportedPolicy("only Deny statements for every principal (Principal '*')")
        unnamed = {k: v for k, v in statement.items() if k != "Principal"}
        if _statement_applies(unnamed, request):
            return True
    return False
