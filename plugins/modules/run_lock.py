#!/usr/bin/python
"""Take or give back an environment's run lock: an SSM parameter created without overwrite."""

from __future__ import annotations

import contextlib
import getpass
import json
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # reported by main()
    boto3 = None

DOCUMENTATION = r"""
---
module: run_lock
short_description: Take or give back an environment's run lock, held in SSM Parameter Store
version_added: 0.1.0
description:
  - One run at a time changes an environment's API nodes and database (a deploy, site.yml's API
    tier, a restore drill). Each takes the lock before its first change and gives it back at its
    end.
  - The lock is an SSM parameter. Taking it creates the parameter without overwrite, which SSM does
    for one caller only; the value names the holder (C(run_id), C(owner) as user@controller,
    C(purpose), C(started)). Giving it back deletes the parameter if it still names this run.
  - A lock held by another run is waited for (I(wait)), then refused with the holder's name and
    age. A lock older than I(stale_after) is called stale in that message.
  - A lock is never taken from its holder by time alone, since a long run is still changing the
    environment. A run that died (killed, its controller lost) leaves its lock; whoever has checked
    that the run is gone breaks it by naming its run id (I(break_run_id)). The refusal message
    gives the id.
  - In check mode nothing is written; the holder, if any, is returned and warned about.
options:
  name:
    description: The SSM parameter that is the lock (one per environment).
    type: str
    required: true
  state:
    description: C(held) takes the lock (again, if this run holds it); C(absent) gives it back.
    type: str
    choices: [held, absent]
    default: held
  run_id:
    description:
      - This run's id. Required for C(absent). For C(held), a new one is made when omitted; pass
        the returned one back to give the lock back.
    type: str
  purpose:
    description: What the run does, shown to whoever finds the lock held.
    type: str
    default: ""
  wait:
    description: Seconds to wait for a lock another run holds before refusing. 0 refuses at once.
    type: int
    default: 0
  poll_interval:
    description: Seconds between two attempts while waiting.
    type: int
    default: 5
  stale_after:
    description: Age in seconds from which a held lock is called stale in the refusal message.
    type: int
    default: 7200
  break_run_id:
    description:
      - The run id of a lock to break. If the lock names exactly this run, it is deleted and taken;
        a lock held by any other run is refused as usual.
    type: str
    default: ""
  break_hint:
    description:
      - How the refusal message tells the user to break a lock, C(%s) standing for the holder's run
        id (the role clinic.infra.run_lock gives C(-e run_lock_break=%s)).
    type: str
    default: break_run_id=%s
  region:
    description: The AWS region of the parameter.
    type: str
    required: true
requirements:
  - boto3
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - clinic platform team
"""

EXAMPLES = r"""
- name: Take the environment's run lock, waiting up to 10 minutes
  clinic.infra.run_lock:
    name: /clinic/stage/run-lock
    purpose: deploy 2.0.0
    wait: 600
    region: ap-south-1
  register: lock

- name: Give the lock back
  clinic.infra.run_lock:
    name: /clinic/stage/run-lock
    state: absent
    run_id: "{{ lock.lock.run_id }}"
    region: ap-south-1
"""

RETURN = r"""
lock:
  description: The lock this run holds (C(held)), or held (check mode).
  returned: when held
  type: dict
  contains:
    run_id: {description: The holder's run id, type: str}
    owner: {description: user@controller of the holder, type: str}
    purpose: {description: What the holder does, type: str}
    started: {description: When the lock was taken (UTC, ISO 8601), type: str}
holder:
  description: The run that holds the lock, when it is not this one (refused, or check mode).
  returned: when another run holds the lock
  type: dict
broken:
  description: The lock that was broken to take this one (I(break_run_id)).
  returned: when a lock was broken
  type: dict
waited:
  description: Seconds spent waiting for the lock.
  returned: when held
  type: int
"""


class LockHeld(Exception):
    """Another run holds the lock; its record is the argument."""


class Lock:
    """The lock parameter, read and written through an SSM client."""

    def __init__(self, ssm: Any, name: str) -> None:
        self.ssm = ssm
        self.name = name

    def read(self) -> dict[str, str] | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        try:
            record = json.loads(value)
        except ValueError:
            record = None
        # A value this module did not write still locks: its holder is unknown.
        return record if isinstance(record, dict) else {"run_id": "", "owner": value}

    def create(self, record: dict[str, str]) -> bool:
        """Write the record if no lock exists; False if one does (SSM decides, atomically)."""
        try:
            self.ssm.put_parameter(
                Name=self.name,
                Value=json.dumps(record, sort_keys=True),
                Type="String",
                Overwrite=False,
                Description="Run lock: the run that changes this environment now",
            )
        except self.ssm.exceptions.ParameterAlreadyExists:
            return False
        return True

    def delete(self) -> None:
        with contextlib.suppress(self.ssm.exceptions.ParameterNotFound):
            self.ssm.delete_parameter(Name=self.name)


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_record(purpose: str, run_id: str | None, now: datetime) -> dict[str, str]:
    return {
        "run_id": run_id or secrets.token_hex(6),
        "owner": f"{getpass.getuser()}@{socket.gethostname()}",
        "purpose": purpose,
        "started": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def age_seconds(record: dict[str, str], now: datetime) -> int | None:
    try:
        started = datetime.strptime(record.get("started", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return int((now - started.replace(tzinfo=UTC)).total_seconds())


def refusal(
    name: str,
    holder: dict[str, str],
    now: datetime,
    stale_after: int,
    waited: int,
    break_hint: str = "break_run_id=%s",
) -> str:
    """The message of a refused run: who holds the lock, for how long, what to do."""
    age = age_seconds(holder, now)
    since = f"since {holder['started']} ({age // 60} min ago)" if age is not None else ""
    who = " ".join(
        part
        for part in (
            holder.get("purpose") and f"'{holder['purpose']}'",
            f"by {holder.get('owner') or 'an unknown owner'}",
            since,
        )
        if part
    )
    stale = (
        f" It is older than {stale_after // 60} min, which no run of this platform should take:"
        " it is probably stale."
        if age is not None and age >= stale_after
        else ""
    )
    waited_text = f" after waiting {waited} s" if waited else ""
    run_id = holder.get("run_id") or "(none: the parameter was not written by this module)"
    return (
        f"Another run holds the run lock {name}{waited_text}: {who}.{stale} Nothing was changed."
        f" Wait for it to finish, or, once you have made sure that run is gone (killed, its"
        f" controller lost), break its lock by giving its run id: {break_hint % run_id}"
    )


def take(
    lock: Lock,
    record: dict[str, str],
    *,
    wait: int,
    poll_interval: int,
    break_run_id: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Take the lock for `record`; raise LockHeld with the holder when it cannot be had in time."""
    result: dict[str, Any] = {"changed": False, "lock": record, "waited": 0}
    start = clock()
    while True:
        if lock.create(record):
            result["changed"] = True
            return result
        holder = lock.read()
        if holder is None:  # given back between the two calls: try again at once
            continue
        if holder.get("run_id") == record["run_id"]:
            result["lock"] = holder
            return result
        if break_run_id and holder.get("run_id") == break_run_id:
            lock.delete()
            result["broken"] = holder
            break_run_id = ""
            continue
        result["waited"] = int(clock() - start)
        if clock() - start + poll_interval > wait:
            raise LockHeld(holder, result["waited"])
        sleep(poll_interval)


def give_back(lock: Lock, run_id: str) -> dict[str, Any]:
    """Delete the lock if this run holds it; a lock of another run is left alone and returned."""
    holder = lock.read()
    if holder is None:
        return {"changed": False}
    if holder.get("run_id") != run_id:
        return {"changed": False, "holder": holder}
    lock.delete()
    return {"changed": True}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["held", "absent"], "default": "held"},
            "run_id": {"type": "str"},
            "purpose": {"type": "str", "default": ""},
            "wait": {"type": "int", "default": 0},
            "poll_interval": {"type": "int", "default": 5},
            "stale_after": {"type": "int", "default": 7200},
            "break_run_id": {"type": "str", "default": ""},
            "break_hint": {"type": "str", "default": "break_run_id=%s"},
            "region": {"type": "str", "required": True},
        },
        required_if=[("state", "absent", ["run_id"])],
        supports_check_mode=True,
    )
    if boto3 is None:
        module.fail_json(msg="clinic.infra.run_lock needs boto3 on the controller")
    params = module.params
    for number in ("wait", "poll_interval", "stale_after"):
        if params[number] < (1 if number == "poll_interval" else 0):
            module.fail_json(
                msg=f"{number} must be a positive number of seconds, not {params[number]}"
            )
    lock = Lock(boto3.client("ssm", region_name=params["region"]), params["name"])
    now = now_utc()
    try:
        if module.check_mode:
            holder = lock.read()
            if holder and holder.get("run_id") != params["run_id"]:
                module.warn(
                    refusal(
                        params["name"], holder, now, params["stale_after"], 0, params["break_hint"]
                    )
                )
                module.exit_json(changed=False, holder=holder)
            module.exit_json(changed=False)
        if params["state"] == "absent":
            result = give_back(lock, params["run_id"])
            if "holder" in result:
                module.warn(
                    f"The run lock {params['name']} is held by run {result['holder'].get('run_id')}"
                    f" ({result['holder'].get('owner')}), not by this run ({params['run_id']}):"
                    " it was left alone."
                )
            module.exit_json(**result)
        record = new_record(params["purpose"], params["run_id"], now)
        try:
            result = take(
                lock,
                record,
                wait=params["wait"],
                poll_interval=params["poll_interval"],
                break_run_id=params["break_run_id"],
            )
        except LockHeld as held:
            holder, waited = held.args
            module.fail_json(
                msg=refusal(
                    params["name"],
                    holder,
                    now_utc(),
                    params["stale_after"],
                    waited,
                    params["break_hint"],
                ),
                holder=holder,
            )
        if "broken" in result:
            module.warn(
                f"The run lock {params['name']} of run {result['broken'].get('run_id')}"
                f" ({result['broken'].get('owner')}, since {result['broken'].get('started')}) was"
                " broken on request; this run holds it now."
            )
        module.exit_json(**result)
    except (BotoCoreError, ClientError) as err:
        module.fail_json(msg=f"The run lock {params['name']} could not be read or written: {err}")


if __name__ == "__main__":
    main()
