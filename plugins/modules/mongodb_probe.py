#!/usr/bin/python
"""Read a mongod's hello reply and check which credentials authenticate, changing nothing."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

DOCUMENTATION = r"""
---
module: mongodb_probe
short_description: Read a mongod's topology and check credentials without changing anything
version_added: 0.1.0
description:
  - Connects directly to one mongod (no replica set discovery) and returns its C(hello) reply,
    which needs no authentication; it tells whether the mongod is the writable primary, which
    member is primary, and the set name.
  - For each entry of O(credentials), tries to authenticate and reports whether the password is
    accepted. A wrong password and an unknown user give the same answer (MongoDB does not tell
    them apart), so the result reads "does not authenticate".
  - Fills two gaps of community.mongodb while the first admin user does not exist yet
    (the localhost exception); C(mongodb_status) needs credentials, and C(mongodb_user) with
    C(update_password=always) reports a change on every run. Roles wait on RV(hello) for the first
    primary and update a password only when it no longer authenticates.
  - Never changes anything; C(changed) is always false.
requirements:
  - pymongo >= 4.0 on the managed host
options:
  login_host:
    description: Address of the mongod.
    type: str
    default: localhost
  login_port:
    description: Port of the mongod.
    type: int
    default: 27017
  credentials:
    description: Users to try, each with the database that holds it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: User name.
        type: str
        required: true
      password:
        description: Password to try.
        type: str
        required: true
        no_log: true
      database:
        description: Authentication database.
        type: str
        default: admin
  read_config:
    description:
      - Also return the members of the replica set config (C(replSetGetConfig)), authenticating
        as the first entry of O(credentials).
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for the connection and for server selection.
    type: float
    default: 5
  ssl:
    description:
      - Connect with TLS, verifying the server's certificate against O(ssl_ca_certs) and its name
        against O(login_host). The option names are community.mongodb's, so that one
        C(module_defaults) entry serves both.
    type: bool
    default: false
    aliases: [tls]
  ssl_ca_certs:
    description: CA bundle the server's certificate is verified with (default the system's CAs).
    type: path
    aliases: [tlsCAFile]
  ssl_certfile:
    description:
      - Client certificate and its key in one PEM file; mongod asks for one when it has a CA file
        and does not allow connections without certificates.
    type: path
    aliases: [tlsCertificateKeyFile]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - clinic platform team
"""

EXAMPLES = r"""
- name: Wait until the first member knows a primary
  clinic.infra.mongodb_probe:
    login_host: localhost
  register: probe
  until: probe.hello.primary is defined
  retries: 30
  delay: 1

- name: Check whether the admin password still authenticates
  clinic.infra.mongodb_probe:
    credentials:
      - name: admin
        password: "{{ admin_password }}"
  register: probe
  no_log: true
"""

RETURN = r"""
hello:
  description: The C(hello) reply of the mongod, with BSON values made plain (timestamps as
    strings).
  returned: always
  type: dict
authenticated:
  description: For each user of O(credentials) (as C(name@database)), whether the password was
    accepted.
  returned: always
  type: dict
members:
  description: With O(read_config), the members of the set's config as C(host), C(priority),
    C(votes) and C(hidden).
  returned: when O(read_config) is true
  type: list
  elements: dict
errors:
  description: For each user that did not authenticate, the server's error code and message.
  returned: always
  type: dict
"""

PYMONGO_IMPORT_ERROR = None
try:
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError
except ImportError:
    PYMONGO_IMPORT_ERROR = traceback.format_exc()

AUTH_FAILED = 18


def plain(value: object) -> object:
    """JSON-friendly copy of a BSON document: anything that is not a basic type becomes a string."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def tls_options(params: dict) -> dict:
    """pymongo's TLS options from the module's (none unless O(ssl))."""
    if not params["ssl"]:
        return {}
    options: dict = {"tls": True}
    if params["ssl_ca_certs"]:
        options["tlsCAFile"] = params["ssl_ca_certs"]
    if params["ssl_certfile"]:
        options["tlsCertificateKeyFile"] = params["ssl_certfile"]
    return options


def client_for(params: dict, **auth: str) -> MongoClient:
    timeout_ms = int(params["connect_timeout"] * 1000)
    return MongoClient(
        host=params["login_host"],
        port=params["login_port"],
        directConnection=True,
        connectTimeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
        **tls_options(params),
        **auth,
    )


def check(params: dict, user: dict) -> tuple[bool, dict | None]:
    client = client_for(
        params, username=user["name"], password=user["password"], authSource=user["database"]
    )
    try:
        # Authentication happens on the first command; connectionStatus needs no privilege.
        client[user["database"]].command("connectionStatus")
        return True, None
    except OperationFailure as err:
        if err.code == AUTH_FAILED:
            return False, {"code": err.code, "message": str(err)}
        raise
    finally:
        client.close()


def config_members(params: dict) -> list[dict]:
    user = params["credentials"][0]
    client = client_for(
        params, username=user["name"], password=user["password"], authSource=user["database"]
    )
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    finally:
        client.close()
    return [
        {
            "host": member["host"],
            "priority": float(member.get("priority", 1.0)),
            "votes": int(member.get("votes", 1)),
            "hidden": bool(member.get("hidden", False)),
        }
        for member in config["members"]
    ]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "login_host": {"type": "str", "default": "localhost"},
            "login_port": {"type": "int", "default": 27017},
            "credentials": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                    "database": {"type": "str", "default": "admin"},
                },
            },
            "read_config": {"type": "bool", "default": False},
            "connect_timeout": {"type": "float", "default": 5},
            "ssl": {"type": "bool", "default": False, "aliases": ["tls"]},
            "ssl_ca_certs": {"type": "path", "aliases": ["tlsCAFile"]},
            "ssl_certfile": {"type": "path", "aliases": ["tlsCertificateKeyFile"]},
        },
        supports_check_mode=True,
    )
    if PYMONGO_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("pymongo"), exception=PYMONGO_IMPORT_ERROR)
    params = module.params
    if params["read_config"] and not params["credentials"]:
        module.fail_json(msg="read_config needs credentials (a user who may run replSetGetConfig)")
    client = client_for(params)
    try:
        hello = client.admin.command("hello")
        authenticated: dict[str, bool] = {}
        errors: dict[str, dict] = {}
        for user in params["credentials"]:
            key = f"{user['name']}@{user['database']}"
            authenticated[key], error = check(params, user)
            if error:
                errors[key] = error
        result = {"hello": plain(hello), "authenticated": authenticated, "errors": errors}
        if params["read_config"]:
            result["members"] = config_members(params)
    except PyMongoError as err:
        module.fail_json(msg=f"mongod at {params['login_host']}:{params['login_port']}: {err}")
    finally:
        client.close()
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
