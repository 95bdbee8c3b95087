"""The lab's smoke check: a request and a record through the load balancer, the replica set's
state, a first backup and an oplog archive, each against the running platform. A check is
`passed` or `failed`, never faked; `make lab` fails when any check failed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from lab import aws
from lab.settings import STATE_DIR, Host, Lab, app_https, member_tls, storage, tls_files

PASSED, FAILED = "passed", "failed"
LB_HTTP_PORT = 80  # lab/lb.yml
LB_STATS_PORT = 8404
APP_PORT = 3000  # group_vars/all/app.yml
# Runs as root on the load balancer (which holds the CA file): each API node's health URL over
# HTTPS, its certificate verified against the CA for the node's address, and over plain HTTP.
NODE_PROTOCOLS = """
import json, ssl, sys, urllib.request
nodes, ca_file, port = json.load(sys.stdin)
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
answers = {}
for node in nodes:
    answers[node] = {}
    for scheme in ("https", "http"):
        try:
            with opener.open(f"{scheme}://{node}:{port}/healthz", timeout=10) as reply:
                answers[node][scheme] = str(reply.status)
        except Exception as error:
            answers[node][scheme] = type(error).__name__
print(json.dumps(answers))
"""
# mongodb_replicaset's defaults: the admin user, and the virtualenv holding pymongo on each member.
MONGODB_ADMIN_USER = "admin"
MONGODB_PYTHON = "/opt/clinic/mongodb-ansible/bin/python"
# Runs on a member with the role's pymongo (member_python); credentials arrive on stdin, never on
# a command line.
REPLSET_PROBE = """
import json, sys
from pymongo import MongoClient
login = json.load(sys.stdin)
client = MongoClient("127.0.0.1", 27017, directConnection=True, authSource="admin",
                     username=login["user"], password=login["password"],
                     serverSelectionTimeoutMS=10000, **TLS)
status = client.admin.command("replSetGetStatus")
print(json.dumps({"set": status["set"], "members": [
    {"name": m["name"], "state": m["stateStr"], "health": m.get("health")}
    for m in status["members"]]}))
"""
# Direct HTTP to the lab's addresses, whatever proxy the environment names.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# backup_cron's job as its cron line runs it (as clinic-backup, in a session of its own, not in
# the deploy user's directory), and the pointer it replaces after each backup.
BACKUP_COMMAND = "cd / && sudo -n -u clinic-backup /usr/local/sbin/clinic-backup"
BACKUP_POINTER = "backups/lab/latest"
# The oplog archive (point-in-time recovery) as its cron line runs it, and its pointer.
OPLOG_COMMAND = "cd / && sudo -n -u clinic-backup /usr/local/sbin/clinic-oplog-archive"
OPLOG_POINTER = "backups/lab/oplog-latest"


@dataclass
class Check:
    check: str
    status: str
    detail: str


def lb_url(lab: Lab, port: int = LB_HTTP_PORT, path: str = "/") -> str:
    (lb,) = lab.by_role("lb")
    return f"http://{lb.address}{'' if port == LB_HTTP_PORT else f':{port}'}{path}"


def get(url: str) -> tuple[int, str]:
    try:
        with HTTP.open(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def ssh(
    lab: Lab, address: str, command: str, stdin: str, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    """A command on a lab host, as the deploy user with the generated key and pinned host keys."""
    ssh_dir = STATE_DIR / "ssh"
    return subprocess.run(
        [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}",
            "-i", str(ssh_dir / "deploy_ed25519"),
            f"{lab.deploy_user}@{address}",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip


def member_python(
    lab: Lab, host: Host, script: str, stdin: str = "", *args: str, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    """A Python script on a member with the role's pymongo, as root: the member's certificate,
    which a client presents when the set requires TLS, is readable by root and its TLS group only.
    The script finds pymongo's TLS options (settings.member_tls) in the name TLS."""
    prelude = f"TLS = {member_tls()!r}\n"
    command = " ".join(
        ["sudo", "-n", MONGODB_PYTHON, "-c", shlex.quote(prelude + script), *map(shlex.quote, args)]
    )
    return ssh(lab, host.address, command, stdin, timeout=timeout)


def replica_set(lab: Lab) -> Check:
    """One PRIMARY and the other members SECONDARY, as admin with the password from moto's SSM."""
    members = lab.by_role("mongodb")
    login = json.dumps(
        {"user": MONGODB_ADMIN_USER, "password": aws.read_secret(lab, "mongodb/admin_password")}
    )
    errors = []
    for member in members:
        result = member_python(lab, member, REPLSET_PROBE, login)
        if result.returncode == 0:
            break
        errors.append(f"{member.container}: {result.stderr.strip().splitlines()[-1:]}")
    else:
        return Check("replica set", FAILED, "; ".join(errors))
    status = json.loads(result.stdout)
    states = Counter(m["state"] for m in status["members"])
    listed = ", ".join(f"{m['name']} {m['state']}" for m in status["members"])
    expected = {f"{m.address}:27017" for m in members}
    ok = (
        states == Counter({"PRIMARY": 1, "SECONDARY": len(members) - 1})
        and {m["name"] for m in status["members"]} == expected
    )
    detail = f"{status['set']} (asked {member.container} as {MONGODB_ADMIN_USER}): {listed}"
    return Check("replica set", PASSED if ok else FAILED, detail)


def load_balancer(lab: Lab) -> Check:
    """HAProxy answers on its health URL, and its stats list every API node, UP, as a backend
    (named by inventory host name: <instance id>-<Name tag>)."""
    health_url = lb_url(lab, LB_STATS_PORT, "/healthz")
    try:
        code, _ = get(health_url)
        _, stats = get(lb_url(lab, LB_STATS_PORT, "/stats;csv"))
    except OSError as error:
        return Check("load balancer health", FAILED, f"{health_url}: {error}")
    rows = list(csv.DictReader(io.StringIO(stats.lstrip("# "))))
    servers = {
        r["svname"]: r["status"]
        for r in rows
        if r.get("pxname") == "api_nodes" and r["svname"] not in ("FRONTEND", "BACKEND")
    }
    tags = sorted(host.name_tag for host in lab.by_role("app"))
    ok = (
        code == 200
        and sorted(name.split("-", 2)[-1] for name in servers) == tags
        and all(state.startswith("UP") for state in servers.values())
    )
    backends = ", ".join(f"{name} {state}" for name, state in sorted(servers.items()))
    detail = f"{health_url} -> {code}; backends: {backends or 'none'}"
    return Check("load balancer health", PASSED if ok else FAILED, detail)


def api_nodes_protocol(lab: Lab) -> Check:
    """From the load balancer, each API node answers over HTTPS with a certificate of the lab's CA
    for its address and refuses plain HTTP; or the reverse when the lab turned HTTPS off."""
    name = "API nodes' protocol"
    (lb,) = lab.by_role("lb")
    nodes = [host.address for host in lab.by_role("app")]
    stdin = json.dumps([nodes, tls_files()["clinic_tls_ca_file"], APP_PORT])
    result = ssh(lab, lb.address, f"sudo -n python3 -c {shlex.quote(NODE_PROTOCOLS)}", stdin)
    if result.returncode:
        return Check(name, FAILED, f"{lb.container}: {result.stderr.strip()[-300:]}")
    answers: dict[str, dict[str, str]] = json.loads(result.stdout)
    served, refused = ("https", "http") if app_https() else ("http", "https")
    ok = all(a[served] == "200" and a[refused] != "200" for a in answers.values())
    detail = "; ".join(
        f"{node}: {served} {a[served]}, {refused} {a[refused]}" for node, a in answers.items()
    )
    return Check(name, PASSED if ok else FAILED, detail)


def request_through_load_balancer(lab: Lab) -> Check:
    """The API answers through HAProxy with the environment's live release."""
    name = "request through the load balancer"
    url = lb_url(lab, LB_HTTP_PORT, "/version")
    live = json.loads(
        aws.client("ssm", lab.endpoint).get_parameter(Name=aws.RELEASE_PARAMETER)["Parameter"][
            "Value"
        ]
    )["version"]
    try:
        code, body = get(url)
        version = json.loads(body).get("version") if code == 200 else None
    except (OSError, ValueError) as error:
        return Check(name, FAILED, f"{url}: {error}")
    ok = code == 200 and version == live
    return Check(
        name, PASSED if ok else FAILED, f"{url} -> {code}, version {version} (live {live})"
    )


def record_through_load_balancer(lab: Lab) -> Check:
    """A record posted through HAProxy is acknowledged (a majority write) and listed back: the API
    reaches the replica set (with its node's certificate when the set requires TLS)."""
    name = "record through the load balancer"
    url = lb_url(lab, LB_HTTP_PORT, "/records")
    request = urllib.request.Request(
        url,
        data=json.dumps({"source": "lab smoke check"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with HTTP.open(request, timeout=30) as reply:
            created = json.loads(reply.read())["id"]
        code, body = get(url)
        listed = [record["_id"] for record in json.loads(body)["records"]] if code == 200 else []
    except (OSError, ValueError, KeyError) as error:
        return Check(name, FAILED, f"{url}: {error}")
    ok = created in listed
    detail = f"POST {url} -> {created}; GET -> {code}, {'listed' if ok else 'not listed'}"
    return Check(name, PASSED if ok else FAILED, detail)


@dataclass
class JobRun:
    """A job run on the backup member, the pointer it replaced, and where that pointer lives."""

    member: Host
    pointer: dict[str, Any]
    s3: Any
    bucket: str


def run_job(lab: Lab, name: str, command: str, key: str) -> Check | JobRun:
    """One job run on the backup member (MongoDBMember=hidden) as its cron line runs it, which must
    succeed and replace the pointer at `key`: a failed check, or the run."""
    members = [h for h in lab.by_role("mongodb") if h.tags.get("MongoDBMember") == "hidden"]
    if not members:
        return Check(name, FAILED, "lab/platforms.yml tags no member MongoDBMember=hidden")
    member = members[0]
    s3 = aws.client("s3", lab.endpoint)
    bucket = storage()["clinic_backup_bucket"]
    before = backup_pointer(s3, bucket, key)
    result = ssh(lab, member.address, command, "", timeout=600)
    events = [line.get("event") for line in json_lines(result.stdout)]
    if result.returncode or events[-1:] != ["succeeded"]:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        return Check(name, FAILED, f"{member.container}: exit {result.returncode}: {tail}")
    pointer = backup_pointer(s3, bucket, key)
    if pointer is None or pointer == before:
        return Check(name, FAILED, f"s3://{bucket}/{key} was not replaced")
    return JobRun(member, pointer, s3, bucket)


def first_backup(lab: Lab) -> Check:
    """The backup member takes a backup as its cron job would, and the new `latest` pointer in the
    backup bucket names an SSE-KMS archive whose sha256 it records."""
    name = "first backup"
    run = run_job(lab, name, BACKUP_COMMAND, BACKUP_POINTER)
    if isinstance(run, Check):
        return run
    pointer = run.pointer
    archive = run.s3.get_object(Bucket=run.bucket, Key=pointer["archive"])
    digest = hashlib.sha256(archive["Body"].read()).hexdigest()
    ok = digest == pointer["sha256"] and archive.get("ServerSideEncryption") == "aws:kms"
    detail = (
        f"{run.member.container}: s3://{run.bucket}/{pointer['archive']}, {pointer['bytes']} "
        f"bytes, sha256 {'matches' if digest == pointer['sha256'] else 'DIFFERS'}, "
        f"encryption {archive.get('ServerSideEncryption', 'none')}"
    )
    return Check(name, PASSED if ok else FAILED, detail)


def oplog_archive(lab: Lab) -> Check:
    """The backup member archives its oplog as the job's cron line would (point-in-time recovery):
    `oplog-latest` names a new slice, SSE-KMS, whose manifest's sha256 it matches."""
    name = "oplog archive"
    run = run_job(lab, name, OPLOG_COMMAND, OPLOG_POINTER)
    if isinstance(run, Check):
        return run
    pointer = run.pointer
    manifest_object = run.s3.get_object(Bucket=run.bucket, Key=pointer["manifest"])
    manifest = json.loads(manifest_object["Body"].read())
    piece = run.s3.get_object(Bucket=run.bucket, Key=pointer["slice"])
    digest = hashlib.sha256(piece["Body"].read()).hexdigest()
    ok = digest == manifest["sha256"] and piece.get("ServerSideEncryption") == "aws:kms"
    detail = (
        f"{run.member.container}: s3://{run.bucket}/{pointer['slice']}, {manifest['entries']} "
        f"entries up to {pointer['last']}, "
        f"sha256 {'matches' if digest == manifest['sha256'] else 'DIFFERS'}, "
        f"encryption {piece.get('ServerSideEncryption', 'none')}"
    )
    return Check(name, PASSED if ok else FAILED, detail)


def backup_pointer(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def run(lab: Lab) -> list[dict[str, Any]]:
    checks = [
        replica_set,
        load_balancer,
        api_nodes_protocol,
        request_through_load_balancer,
        record_through_load_balancer,
        first_backup,
        oplog_archive,
    ]
    return [asdict(check(lab)) for check in checks]


def report(results: list[dict[str, Any]]) -> str:
    width = max(len(r["check"]) for r in results)
    return "\n".join(
        f"  {r['status'].upper():<17} {r['check']:<{width}}  {r['detail']}" for r in results
    )
