"""The IAM policy evaluator of the tests (tests/harness/iam_policy.py) decides as AWS documents:
cases that must be allowed, and as many that must be denied."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.iam_policy import (
    Decision,
    Request,
    UnsupportedPolicy,
    allows,
    denies_everyone,
    evaluate,
)

BUCKET = "arn:aws:s3:::clinic-stage-artifacts-ap-south-1"
PARAMETER = "arn:aws:ssm:ap-south-1:123456789012:parameter"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def test_nothing_is_allowed_without_a_statement() -> None:
    assert evaluate([], Request("s3:GetObject", f"{BUCKET}/a")) is Decision.IMPLICIT_DENY
    assert evaluate([policy()], Request("s3:GetObject", f"{BUCKET}/a")) is Decision.IMPLICIT_DENY


def test_a_prefix_wildcard_covers_the_prefix_only() -> None:
    policies = [policy(allow("s3:GetObject", f"{BUCKET}/releases/*"))]
    assert allows(policies, "s3:GetObject", f"{BUCKET}/releases/1.2.3/api.tar.gz")
    assert not allows(policies, "s3:GetObject", f"{BUCKET}/releases")
    assert not allows(policies, "s3:GetObject", f"{BUCKET}/other/releases/x")
    assert not allows(policies, "s3:GetObject", f"{BUCKET}-copy/releases/x")
    assert not allows(policies, "s3:PutObject", f"{BUCKET}/releases/x")


def test_actions_ignore_case_and_resources_do_not() -> None:
    policies = [policy(allow("S3:getobject", f"{BUCKET}/Releases/*"))]
    assert allows(policies, "s3:GetObject", f"{BUCKET}/Releases/x")
    assert not allows(policies, "s3:GetObject", f"{BUCKET}/releases/x")


def test_action_wildcards_and_the_single_character_wildcard() -> None:
    policies = [policy(allow("ssm:GetParameter*", f"{PARAMETER}/clinic/stage/app/?"))]
    assert allows(policies, "ssm:GetParametersByPath", f"{PARAMETER}/clinic/stage/app/a")
    assert not allows(policies, "ssm:PutParameter", f"{PARAMETER}/clinic/stage/app/a")
    assert not allows(policies, "ssm:GetParameter", f"{PARAMETER}/clinic/stage/app/ab")


def test_arn_wildcards_stay_within_their_segment() -> None:
    policies = [policy(allow("*", "arn:aws:ssm:*:*:parameter/clinic/stage/*"))]
    assert allows(policies, "ssm:GetParameter", f"{PARAMETER}/clinic/stage/app/x")
    assert not allows(policies, "ssm:GetParameter", f"{PARAMETER}/clinic/prod/app/x")
    # The account's `*` may not swallow a colon: the resource part here is "extra:parameter/...".
    assert not allows(
        policies,
        "ssm:GetParameter",
        "arn:aws:ssm:ap-south-1:123456789012:extra:parameter/clinic/stage/x",
    )
    assert not allows(policies, "s3:GetObject", "arn:aws:s3:::parameter/clinic/stage/x")


def test_an_explicit_deny_wins_over_any_allow() -> None:
    policies = [
        policy(allow("s3:*", f"{BUCKET}/*")),
        policy(deny("s3:DeleteObject", f"{BUCKET}/releases/*")),
    ]
    assert allows(policies, "s3:DeleteObject", f"{BUCKET}/scratch/x")
    assert evaluate(policies, Request("s3:DeleteObject", f"{BUCKET}/releases/x")) is (
        Decision.EXPLICIT_DENY
    )


def test_not_action_and_not_resource() -> None:
    policies = [
        policy(
            {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{BUCKET}/*"},
            {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/releases/*"]},
        )
    ]
    assert allows(policies, "s3:GetObject", f"{BUCKET}/releases/x")
    assert not allows(policies, "s3:DeleteObject", f"{BUCKET}/releases/x")
    assert not allows(policies, "s3:GetObject", f"{BUCKET}/other/x")


def test_string_conditions() -> None:
    statement = allow(
        "cloudwatch:PutMetricData",
        "*",
        Condition={"StringEquals": {"cloudwatch:namespace": ["Clinic/EC2", "Clinic/Backup"]}},
    )
    policies = [policy(statement)]
    assert allows(policies, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Clinic/EC2"})
    assert not allows(
        policies, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/EC2"}
    )
    # A missing key fails a positive operator.
    assert not allows(policies, "cloudwatch:PutMetricData", "*")
    like = [
        policy(allow("s3:PutObject", "*", Condition={"StringLike": {"s3:prefix": "backups/*"}}))
    ]
    assert allows(like, "s3:PutObject", f"{BUCKET}/x", {"s3:prefix": "backups/stage/"})
    assert not allows(like, "s3:PutObject", f"{BUCKET}/x", {"s3:prefix": "audit/stage/"})


def test_negated_conditions_and_if_exists() -> None:
    key = "s3:x-amz-server-side-encryption"

    def refuse(condition: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            policy(
                allow("s3:PutObject", f"{BUCKET}/*"), deny("s3:PutObject", "*", Condition=condition)
            )
        ]

    # Without IfExists a missing key satisfies a negated operator: the put is denied.
    strict = refuse({"StringNotEquals": {key: "aws:kms"}})
    assert not allows(strict, "s3:PutObject", f"{BUCKET}/x")
    assert not allows(strict, "s3:PutObject", f"{BUCKET}/x", {key: "AES256"})
    assert allows(strict, "s3:PutObject", f"{BUCKET}/x", {key: "aws:kms"})
    # ...IfExists holds when the key is missing, so the Deny applies too.
    if_exists = refuse({"StringNotEqualsIfExists": {key: "aws:kms"}})
    assert not allows(if_exists, "s3:PutObject", f"{BUCKET}/x")
    assert allows(if_exists, "s3:PutObject", f"{BUCKET}/x", {key: "aws:kms"})
    # Null false (the key is present) narrows the Deny to requests that name another value.
    present = refuse({"Null": {key: "false"}, "StringNotEquals": {key: "aws:kms"}})
    assert allows(present, "s3:PutObject", f"{BUCKET}/x")
    assert allows(present, "s3:PutObject", f"{BUCKET}/x", {key: "aws:kms"})
    assert not allows(present, "s3:PutObject", f"{BUCKET}/x", {key: "AES256"})
    positive = [policy(allow("s3:PutObject", "*", Condition={"StringEqualsIfExists": {key: "x"}}))]
    assert allows(positive, "s3:PutObject", f"{BUCKET}/x")
    assert not allows(positive, "s3:PutObject", f"{BUCKET}/x", {key: "y"})


def test_bool_null_and_arn_conditions() -> None:
    policies = [
        policy(
            allow(
                "kms:Decrypt",
                "*",
                Condition={
                    "Bool": {"aws:SecureTransport": "true"},
                    "Null": {"kms:ViaService": "false"},
                    "ArnLike": {"aws:SourceArn": "arn:aws:ssm:*:123456789012:*"},
                },
            )
        )
    ]
    good = {
        "aws:SecureTransport": "true",
        "kms:ViaService": "ssm.ap-south-1.amazonaws.com",
        "aws:SourceArn": f"{PARAMETER}/x",
    }
    assert allows(policies, "kms:Decrypt", "k", good)
    assert not allows(policies, "kms:Decrypt", "k", good | {"aws:SecureTransport": "false"})
    assert not allows(
        policies, "kms:Decrypt", "k", {k: v for k, v in good.items() if k != "kms:ViaService"}
    )
    assert not allows(policies, "kms:Decrypt", "k", good | {"aws:SourceArn": "arn:aws:s3:::b/x"})


def test_multi_valued_keys_need_a_qualifier() -> None:
    any_value = [policy(allow("*", "*", Condition={"ForAnyValue:StringEquals": {"k": ["a"]}}))]
    all_values = [
        policy(allow("*", "*", Condition={"ForAllValues:StringEquals": {"k": ["a", "b"]}}))
    ]
    assert allows(any_value, "x:Y", "r", {"k": ["a", "z"]})
    assert not allows(any_value, "x:Y", "r", {"k": ["y", "z"]})
    assert allows(all_values, "x:Y", "r", {"k": ["a", "b"]})
    assert not allows(all_values, "x:Y", "r", {"k": ["a", "z"]})
    bare = [policy(allow("*", "*", Condition={"StringEquals": {"k": "a"}}))]
    with pytest.raises(UnsupportedPolicy, match="several values"):
        allows(bare, "x:Y", "r", {"k": ["a"]})


@pytest.mark.parametrize(
    "statement",
    [
        allow("*", "*", Condition={"NumericLessThan": {"k": "1"}}),
        allow("*", "arn:aws:s3:::b/${aws:username}/*"),
        {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"},
        {"Effect": "Maybe", "Action": "*", "Resource": "*"},
    ],
    ids=["operator", "policy-variable", "principal", "effect"],
)
def test_what_is_not_implemented_is_refused(statement: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedPolicy):
        evaluate([policy(statement)], Request("s3:GetObject", "arn:aws:s3:::b/x", {"k": "0"}))


def test_resource_policy_denies_for_everyone_only() -> None:
    guard = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::b/*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    }
    assert denies_everyone(
        guard, "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": "false"}
    )
    assert not denies_everyone(
        guard, "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": "true"}
    )
    assert not denies_everyone(
        guard, "s3:GetObject", "arn:aws:s3:::other/k", {"aws:SecureTransport": "false"}
    )
    grant = {
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]
    }
    with pytest.raises(UnsupportedPolicy, match="Principal"):
        denies_everyone(grant, "s3:GetObject", "arn:aws:s3:::b/k")
