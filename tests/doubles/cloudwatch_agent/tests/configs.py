"""Agent configurations of the kinds the cloudwatch_agent role renders (one per host role)."""

from __future__ import annotations

import copy
from typing import Any

AGENT = {
    "metrics_collection_interval": 60,
    "run_as_user": "root",
    "logfile": "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log",
}


def log_entry(path: str, group: str, retention: int = 30, **extra: Any) -> dict[str, Any]:
    entry = {
        "file_path": path,
        "log_group_name": group,
        "log_stream_name": "{instance_id}",
        "retention_in_days": retention,
    }
    entry.update(extra)
    return entry


def with_logs(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "agent": dict(AGENT),
        "logs": {"logs_collected": {"files": {"collect_list": list(entries)}}},
    }


APP_JSON_LOGS = with_logs(
    log_entry("/var/log/clinic-api/app.log", "/clinic/test/api", timezone="UTC")
)
SYSLOG_AUTH = with_logs(
    log_entry("/var/log/syslog", "/clinic/test/syslog"),
    log_entry("/var/log/auth.log", "/clinic/test/auth", retention=365),
)
MONGOD_LOG = with_logs(log_entry("/var/log/mongodb/mongod.log", "/clinic/test/mongod"))
HOST_METRICS: dict[str, Any] = {
    "agent": dict(AGENT),
    "metrics": {
        "namespace": "Clinic/Test",
        "metrics_collected": {
            "mem": {"measurement": ["mem_used_percent", "mem_available"]},
            "disk": {
                "resources": ["/", "/var/lib/mongodb"],
                "measurement": ["used_percent", "inodes_free"],
                "ignore_file_system_types": ["tmpfs", "devtmpfs", "overlay"],
            },
            "procstat": [
                {"pattern": "node .*/server.js", "measurement": ["pid_count", "memory_rss"]},
                {"exe": "mongod", "measurement": ["pid_count", "cpu_usage"]},
            ],
        },
    },
}
APPEND_DIMENSIONS: dict[str, Any] = copy.deepcopy(HOST_METRICS)
APPEND_DIMENSIONS["metrics"]["append_dimensions"] = {
    "InstanceId": "${aws:InstanceId}",
    "InstanceType": "${aws:InstanceType}",
    "ImageId": "${aws:ImageId}",
    "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
}
APPEND_DIMENSIONS["metrics"]["aggregation_dimensions"] = [["AutoScalingGroupName"], []]
FULL: dict[str, Any] = copy.deepcopy(APPEND_DIMENSIONS)
FULL["logs"] = {
    "logs_collected": {
        "files": {
            "collect_list": [
                *APP_JSON_LOGS["logs"]["logs_collected"]["files"]["collect_list"],
                *SYSLOG_AUTH["logs"]["logs_collected"]["files"]["collect_list"],
                *MONGOD_LOG["logs"]["logs_collected"]["files"]["collect_list"],
            ]
        }
    },
    "force_flush_interval": 5,
}

VALID = {
    "app_json_logs": APP_JSON_LOGS,
    "syslog_auth": SYSLOG_AUTH,
    "mongod_log": MONGOD_LOG,
    "host_metrics": HOST_METRICS,
    "append_dimensions": APPEND_DIMENSIONS,
    "full": FULL,
}


def changed(base: dict[str, Any], *where: Any, value: Any = None, drop: bool = False) -> Any:
    """A deep copy of base with one value replaced (or removed) at the path `where`."""
    doc = copy.deepcopy(base)
    node = doc
    for key in where[:-1]:
        node = node[key]
    if drop:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    return doc
