"""Put one CloudWatch metric datum with an Environment dimension (the restore drill's RTO).

Usage: put_metric.py NAMESPACE NAME VALUE UNIT ENVIRONMENT. Runs on the controller with boto3 (which
the amazon.aws collection needs anyway); credentials, region and endpoint come from the usual AWS
environment. No Ansible module puts metric data.
"""

from __future__ import annotations

import sys

import boto3


def main(argv: list[str]) -> int:
    namespace, name, value, unit, environment = argv
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Value": float(value),
                "Unit": unit,
                "Dimensions": [{"Name": "Environment", "Value": environment}],
            }
        ],
    )
    print(f"{namespace} {name}={value} {unit} Environment={environment}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
