"""playbooks/monitoring.yml against CloudWatch, SNS, SSM and EC2 served by moto, with the stage
inventory: the alarms and the topic are read back with boto3. moto stores alarms but never evaluates
them, so what is checked is each alarm's definition (metrics, statistic, threshold, comparison,
periods, missing data, actions), not that it would fire.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.harness.controller_playbook import ROOT, Run, empty_moto, run_playbook
from tests.harness.moto_ec2 import aws_client, clinic_tags, launch

PLAYBOOK = "monitoring.yml"
STAGE = ROOT / "inventories" / "stage"
ALB = "app/clinic-stage-api/0123456789abcdef"
PARAMETER = "/clinic/stage/monitoring/webhook_url"
AGENT = ROOT / "roles" / "cloudwatch_agent"


def put_webhook(env: dict[str, str], value: str, name: str = PARAMETER) -> None:
    aws_client(env, "ssm").put_parameter(
        Name=name, Value=value, Type="SecureString", Overwrite=True
    )


def alarms(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    pages = aws_client(env, "cloudwatch").get_paginator("describe_alarms").paginate()
    return {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}


def dimensions(alarm_or_metric: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in alarm_or_metric["Dimensions"]}


@pytest.fixture(scope="module")
def converged() -> Iterator[dict[str, Any]]:
    """Stage's fleet and webhook in moto, then the playbook: first run, -vvv second run, --check."""
    with empty_moto() as env:
        ec2 = aws_client(env, "ec2")
        mongodb = launch(ec2, clinic_tags("stage", "mongodb"), 2)
        asg_tags = clinic_tags("stage", "app") | {"aws:autoscaling:groupName": "clinic-stage-app"}
        (app,) = launch(ec2, asg_tags, 1)
        (stopped,) = launch(ec2, clinic_tags("stage", "mongodb"), 1)
        ec2.stop_instances(InstanceIds=[stopped])
        (prod,) = launch(ec2, clinic_tags("prod", "mongodb"), 1)
        webhook = f"https://hooks.example.invalid/services/{secrets.token_hex(16)}"
        put_webhook(env, webhook)
        extra = ("-e", f"monitoring_alb_dimension={ALB}")
        runs = {
            "first": run_playbook(PLAYBOOK, STAGE, env, *extra),
            "second": run_playbook(PLAYBOOK, STAGE, env, *extra, "-vvv"),
            "check": run_playbook(PLAYBOOK, STAGE, env, *extra, "--check"),
        }
        yield {
            "env": env,
            "runs": runs,
            "webhook": webhook,
            "mongodb": mongodb,
            "app": app,
            "stopped": stopped,
            "prod": prod,
            "instances": {
                i["InstanceId"]: i
                for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
            },
            "alarms": alarms(env),
        }


@pytest.fixture(scope="module")
def held(converged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return converged["alarms"]


@pytest.fixture(scope="module")
def topic_arn(converged: dict[str, Any]) -> str:
    topics = aws_client(converged["env"], "sns").list_topics()["Topics"]
    (arn,) = [t["TopicArn"] for t in topics if t["TopicArn"].endswith(":clinic-stage-alarms")]
    return arn


def test_first_run_converges_and_second_run_changes_nothing(converged: dict[str, Any]) -> None:
    runs: dict[str, Run] = converged["runs"]
    for name, run in runs.items():
        assert run.returncode == 0, f"{name} run failed:\n{run.output}"
    assert runs["first"].recap["changed"] == 2, "the topic, then the alarms"
    assert runs["second"].recap["changed"] == 0, runs["second"].output


def test_check_run_on_the_converged_state_is_clean(converged: dict[str, Any]) -> None:
    check: Run = converged["runs"]["check"]
    assert check.recap["changed"] == 0, check.output
    assert check.recap["failed"] == 0


def test_the_webhook_url_never_appears_in_the_output(converged: dict[str, Any]) -> None:
    secret_part = converged["webhook"].rsplit("/", 1)[1]
    for name, run in converged["runs"].items():
        assert secret_part not in run.output, f"the webhook URL leaked in the {name} run"
    assert (
        "clinic.infra.monitoring : webhook | Require an HTTPS webhook URL"
        in converged["runs"]["second"].tasks
    )


def test_the_topic_has_exactly_the_webhook_subscription(
    converged: dict[str, Any], topic_arn: str
) -> None:
    sns = aws_client(converged["env"], "sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
        ("https", converged["webhook"])
    ]


def test_the_alarms_cover_the_running_instances_of_the_environment_only(
    converged: dict[str, Any], held: dict[str, Any]
) -> None:
    mongodb, app = converged["mongodb"], converged["app"]
    expected = {
        f"clinic-stage-{name}"
        for name in (
            "http-5xx-rate",
            "http-p95-latency",
            "backup-missing",
            "backup-failed",
            "audit-export-missing",
            "audit-export-failed",
            "oplog-archive-failed",
            "recovery-point-age",
            "noshow-job-runtime",
        )
    }
    expected |= {f"clinic-stage-db-cpu-{i}" for i in mongodb}
    expected |= {f"clinic-stage-{kind}-{i}" for i in [*mongodb, app] for kind in ("memory", "disk")}
    assert set(held) == expected
    for absent in (converged["stopped"], converged["prod"]):
        assert not [name for name in held if absent in name]


def test_every_alarm_notifies_the_topic_when_it_fires_and_recovers(
    held: dict[str, Any], topic_arn: str
) -> None:
    for name, alarm in held.items():
        assert alarm["AlarmActions"] == [topic_arn], name
        assert alarm["OKActions"] == [topic_arn], name
        assert alarm["InsufficientDataActions"] == [], name
        assert alarm["AlarmDescription"], name


def test_target_5xx_rate_is_metric_math_on_the_alb_metrics(held: dict[str, Any]) -> None:
    alarm = held["clinic-stage-http-5xx-rate"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    assert set(queries) == {"errors", "requests", "rate"}
    for query_id, metric_name in (
        ("errors", "HTTPCode_Target_5XX_Count"),
        ("requests", "RequestCount"),
    ):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/ApplicationELB"
        assert stat["Metric"]["MetricName"] == metric_name
        assert dimensions(stat["Metric"]) == {"LoadBalancer": ALB}
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        assert queries[query_id]["ReturnData"] is False
    assert queries["rate"]["Expression"] == "100 * FILL(errors, 0) / requests"
    assert queries["rate"]["ReturnData"] is True
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 2.0
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
    assert alarm["TreatMissingData"] == "notBreaching"


def single_metric(alarm: dict[str, Any]) -> tuple[Any, ...]:
    """A single-metric alarm as (namespace, metric, dimensions, statistic, period, comparison,
    threshold, periods, datapoints, missing data)."""
    return (
        alarm["Namespace"],
        alarm["MetricName"],
        dimensions(alarm),
        alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
        alarm["Period"],
        alarm["ComparisonOperator"],
        alarm["Threshold"],
        alarm["EvaluationPeriods"],
        alarm["DatapointsToAlarm"],
        alarm["TreatMissingData"],
    )


def test_p95_latency_backup_audit_export_rpo_and_no_show_alarms(held: dict[str, Any]) -> None:
    stage = {"Environment": "stage"}
    assert single_metric(held["clinic-stage-http-p95-latency"]) == (
        "AWS/ApplicationELB", "TargetResponseTime", {"LoadBalancer": ALB}, "p95", 300,
        "GreaterThanThreshold", 1.5, 3, 3, "notBreaching",
    )  # fmt: skip
    # The backup and the daily audit export: 26 hourly periods in a row without a success (1) fire
    # "missing", where a missing datapoint breaches; a failure (0) fires "failed" at once.
    for job, metric in (("backup", "BackupSuccess"), ("audit-export", "AuditExportSuccess")):
        assert single_metric(held[f"clinic-stage-{job}-missing"]) == (
            "Clinic/Backup", metric, stage, "Maximum", 3600,
            "LessThanThreshold", 1.0, 26, 26, "breaching",
        )  # fmt: skip
        assert single_metric(held[f"clinic-stage-{job}-failed"]) == (
            "Clinic/Backup", metric, stage, "Minimum", 3600,
            "LessThanThreshold", 1.0, 1, 1, "notBreaching",
        )  # fmt: skip
    # The oplog archive: a failed run fires at once; the achieved RPO (1800 s by default) fires
    # when six 5-minute periods in a row had no datum or one above it.
    assert single_metric(held["clinic-stage-oplog-archive-failed"]) == (
        "Clinic/Backup", "OplogArchiveSuccess", stage, "Minimum", 3600,
        "LessThanThreshold", 1.0, 1, 1, "notBreaching",
    )  # fmt: skip
    assert single_metric(held["clinic-stage-recovery-point-age"]) == (
        "Clinic/Backup", "RecoveryPointAgeSeconds", stage, "Maximum", 300,
        "GreaterThanThreshold", 1800.0, 6, 6, "breaching",
    )  # fmt: skip
    assert "oplog-archive-missing" not in " ".join(held)
    assert single_metric(held["clinic-stage-noshow-job-runtime"]) == (
        "Clinic/App", "NoShowJobRuntimeSeconds", stage, "Maximum", 3600,
        "GreaterThanThreshold", 900.0, 1, 1, "notBreaching",
    )  # fmt: skip


def test_db_cpu_alarms_watch_each_mongodb_member(
    converged: dict[str, Any], held: dict[str, Any]
) -> None:
    for instance in converged["mongodb"]:
        assert single_metric(held[f"clinic-stage-db-cpu-{instance}"]) == (
            "AWS/EC2", "CPUUtilization", {"InstanceId": instance}, "Average", 300,
            "GreaterThanThreshold", 70.0, 3, 3, "missing",
        )  # fmt: skip


def agent_metrics() -> tuple[str, set[str], str]:
    """What the cloudwatch_agent role makes the agent publish: its namespace, the append_dimensions
    keys of its configuration template, and the template itself."""
    template = (AGENT / "templates" / "amazon-cloudwatch-agent.json.j2").read_text()
    assert "'append_dimensions'" in template
    # Only append_dimensions takes values from the instance ('Name': '${aws:Name}').
    keys = set(re.findall(r"'(\w+)': '\$\{aws:\w+\}'", template))
    defaults = yaml.safe_load((AGENT / "defaults" / "main.yml").read_text())
    return defaults["cloudwatch_agent_metrics_namespace"], keys, template


def test_memory_alarms_use_the_dimensions_the_agent_publishes(
    converged: dict[str, Any], held: dict[str, Any]
) -> None:
    namespace, appended, template = agent_metrics()
    assert "'mem_used_percent'" in template
    assert appended == {"AutoScalingGroupName", "ImageId", "InstanceId", "InstanceType"}
    for instance_id in [*converged["mongodb"], converged["app"]]:
        instance = converged["instances"][instance_id]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        expected = {
            "InstanceId": instance_id,
            "ImageId": instance["ImageId"],
            "InstanceType": instance["InstanceType"],
        }
        # The agent adds AutoScalingGroupName only on an instance of an auto scaling group.
        if "aws:autoscaling:groupName" in tags:
            expected["AutoScalingGroupName"] = tags["aws:autoscaling:groupName"]
        assert set(expected) <= appended
        assert single_metric(held[f"clinic-stage-memory-{instance_id}"]) == (
            namespace, "mem_used_percent", expected, "Maximum", 300,
            "GreaterThanThreshold", 90.0, 3, 3, "missing",
        )  # fmt: skip
    assert "AutoScalingGroupName" in dimensions(held[f"clinic-stage-memory-{converged['app']}"])


def test_disk_alarms_query_the_fullest_filesystem_of_each_instance(
    converged: dict[str, Any], held: dict[str, Any]
) -> None:
    namespace, _, template = agent_metrics()
    # The agent publishes the disk plugin's used_percent as disk_used_percent.
    assert re.search(r"'disk': \{.*'measurement': \['used_percent'", template, flags=re.DOTALL)
    for instance_id in [*converged["mongodb"], converged["app"]]:
        alarm = held[f"clinic-stage-disk-{instance_id}"]
        (query,) = alarm["Metrics"]
        assert query["Expression"] == (
            f"SELECT MAX(disk_used_percent) FROM \"{namespace}\" WHERE InstanceId = '{instance_id}'"
        )
        assert (query["Period"], query["ReturnData"]) == (300, True)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Threshold"] == 80.0
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (2, 2)
        assert alarm["TreatMissingData"] == "missing"


def test_the_alarms_of_an_instance_that_is_gone_are_deleted(converged: dict[str, Any]) -> None:
    env, gone = converged["env"], converged["mongodb"][0]
    aws_client(env, "ec2").terminate_instances(InstanceIds=[gone])
    run = run_playbook(PLAYBOOK, STAGE, env, "-e", f"monitoring_alb_dimension={ALB}")
    assert run.returncode == 0, run.output
    after = alarms(env)
    assert not [name for name in after if gone in name]
    assert set(converged["alarms"]) - set(after) == {
        f"clinic-stage-{kind}-{gone}" for kind in ("db-cpu", "memory", "disk")
    }
    assert run.recap["changed"] == 1, "only the deletion"


# --- Bad input: a clear message, and nothing created -------------------------------------------


@pytest.fixture(scope="module")
def empty_account() -> Iterator[dict[str, str]]:
    with empty_moto() as env:
        yield env


OTHER_PARAMETER = "/clinic/stage/monitoring/case"

BAD_INPUT: dict[str, tuple[list[str], str | None, str]] = {
    "missing ALB dimension": (
        [],
        "https://hooks.example.invalid/x",
        "monitoring_alb_dimension is not set",
    ),
    "ALB dimension without id": (
        ["-e", "monitoring_alb_dimension=app/clinic-stage-api"],
        "https://hooks.example.invalid/x",
        'monitoring_alb_dimension is "app/clinic-stage-api"',
    ),
    "webhook parameter missing": (
        ["-e", f"monitoring_alb_dimension={ALB}"],
        None,
        f"The SSM parameter {OTHER_PARAMETER} does not exist or is empty",
    ),
    "webhook not a URL": (
        ["-e", f"monitoring_alb_dimension={ALB}"],
        "hooks example invalid",
        f"The SSM parameter {OTHER_PARAMETER} does not hold a URL",
    ),
    "webhook over plain HTTP": (
        ["-e", f"monitoring_alb_dimension={ALB}"],
        "http://hooks.example.invalid/plain",
        f"The webhook URL in {OTHER_PARAMETER} is not https://",
    ),
    "unknown setting": (
        ["-e", f"monitoring_alb_dimension={ALB}", "-e", '{"monitoring_db_cpu_pct": 80}'],
        "https://hooks.example.invalid/x",
        "unknown: monitoring_db_cpu_pct",
    ),
    "removed threshold dictionary": (
        [
            "-e",
            f"monitoring_alb_dimension={ALB}",
            "-e",
            '{"clinic_monitoring": {"db_cpu_percent": 80}}',
        ],
        "https://hooks.example.invalid/x",
        "clinic_monitoring is no longer read",
    ),
    "percentage above 100": (
        ["-e", f"monitoring_alb_dimension={ALB}", "-e", '{"monitoring_disk_percent": 180}'],
        "https://hooks.example.invalid/x",
        'monitoring_disk_percent is "180": it must be a positive number, at most 100',
    ),
    "period not a multiple of 60": (
        ["-e", f"monitoring_alb_dimension={ALB}", "-e", '{"monitoring_db_cpu_period": 90}'],
        "https://hooks.example.invalid/x",
        "a whole multiple of 60 seconds",
    ),
    "window longer than a day": (
        [
            "-e",
            f"monitoring_alb_dimension={ALB}",
            "-e",
            '{"monitoring_memory_period": 3000, "monitoring_memory_periods": 30}',
        ],
        "https://hooks.example.invalid/x",
        "The memory alarm would evaluate 90000 s",
    ),
    "backup window longer than seven days": (
        [
            "-e",
            f"monitoring_alb_dimension={ALB}",
            "-e",
            '{"monitoring_backup_missing_hours": 200}',
        ],
        "https://hooks.example.invalid/x",
        "at most seven days (168 hours)",
    ),
    "audit export window longer than seven days": (
        [
            "-e",
            f"monitoring_alb_dimension={ALB}",
            "-e",
            '{"monitoring_audit_export_missing_hours": 169}',
        ],
        "https://hooks.example.invalid/x",
        "monitoring_audit_export_missing_hours is 169",
    ),
    "RPO target shorter than the oplog archive can meet": (
        ["-e", f"monitoring_alb_dimension={ALB}", "-e", '{"monitoring_rpo_target_seconds": 300}'],
        "https://hooks.example.invalid/x",
        "monitoring_rpo_target_seconds is 300.0: it must be 600 to 86400",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_fails_with_a_clear_message_before_any_change(
    empty_account: dict[str, str], case: str
) -> None:
    extra, webhook, message = BAD_INPUT[case]
    ssm = aws_client(empty_account, "ssm")
    if webhook is None:
        ssm.delete_parameters(Names=[OTHER_PARAMETER])
    else:
        put_webhook(empty_account, webhook, OTHER_PARAMETER)
    run = run_playbook(
        PLAYBOOK,
        STAGE,
        empty_account,
        "-e",
        f"monitoring_webhook_parameter={OTHER_PARAMETER}",
        *extra,
    )
    output = " ".join(run.output.split())
    assert run.returncode != 0, run.output
    assert message in output, run.output
    assert "Nothing was changed." in output
    assert run.recap["changed"] == 0
    if webhook is not None:
        assert webhook not in run.output, "the webhook URL leaked"
    assert aws_client(empty_account, "sns").list_topics()["Topics"] == []
    assert alarms(empty_account) == {}


def test_a_check_run_before_the_first_run_reports_what_it_would_create(
    empty_account: dict[str, str],
) -> None:
    put_webhook(empty_account, "https://hooks.example.invalid/first", OTHER_PARAMETER)
    launch(aws_client(empty_account, "ec2"), clinic_tags("stage", "mongodb"), 1)
    run = run_playbook(
        PLAYBOOK,
        STAGE,
        empty_account,
        "-e",
        f"monitoring_webhook_parameter={OTHER_PARAMETER}",
        "-e",
        f"monitoring_alb_dimension={ALB}",
        "--check",
    )
    assert run.returncode == 0, run.output
    assert run.recap["changed"] == 2, "the topic it would create, then the alarms"
    assert (
        "clinic.infra.monitoring : topic | Report the alarm topic that a real run would create"
        in run.tasks
    )
    assert aws_client(empty_account, "sns").list_topics()["Topics"] == []
    assert alarms(empty_account) == {}


def test_the_inventories_leave_the_webhook_to_ssm() -> None:
    wiring = yaml.safe_load((ROOT / "group_vars" / "all" / "monitoring.yml").read_text())
    assert wiring == {
        "monitoring_env": "{{ clinic_env }}",
        "monitoring_region": "{{ clinic_aws_region }}",
        "monitoring_webhook_parameter": "{{ clinic_ssm_prefix }}/monitoring/webhook_url",
        "monitoring_agent_namespace": "{{ cloudwatch_agent_metrics_namespace }}",
        "monitoring_backup_namespace": "{{ clinic_backup_metrics_namespace }}",
        "monitoring_app_namespace": "{{ clinic_app_metrics_namespace }}",
    }
    for path in ROOT.glob("inventories/*/group_vars/**/*.yml"):
        assert "webhook" not in path.read_text(), path
