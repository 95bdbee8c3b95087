"""Bad input is refused before the role changes anything, with a message that says what to fix.

Each case runs bad_input.yml (the role alone, with the scenario's vars.yml) against the converged
nodes with one input changed by -e; the missing-secret case gives a copy of vars.yml without
app_node_jwt_secret instead (see the header of bad_input.yml).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

NODES = ["app1", "app2"]
SCENARIO = Path(__file__).resolve().parents[1]
MISSING = object()  # marks a variable the case removes from vars.yml

# case: (overrides, the role's message)
CASES = {
    "checksum-empty": (
        {"app_node_release_sha256": ""},
        "app_node_release_sha256 the artifact's sha256 as 64 lowercase hex digits (got ''): "
        "a release is never installed unverified.",
    ),
    "checksum-not-hex": (
        {"app_node_release_sha256": "z" * 64},
        "app_node_release_sha256 the artifact's sha256 as 64 lowercase hex digits "
        f"(got '{'z' * 64}')",
    ),
    "unknown-source": (
        {"app_node_release_source": "ftp"},
        "value of app_node_release_source must be one of: s3, url, got: ftp",
    ),
    "missing-jwt-secret": (
        {"app_node_jwt_secret": MISSING},
        "missing required arguments: app_node_jwt_secret",
    ),
    "keep-one-release": (
        {"app_node_keep_releases": 1},
        "app_node_keep_releases at least 2 (the current and the previous release, for rollback)",
    ),
    "url-source-without-url": (
        {"app_node_release_source": "url"},
        "app_node_release_source 'url' needs app_node_release_url (http or https).",
    ),
    "https-without-ca": (
        {
            "app_node_https_certificate_key_file": "/etc/clinic/tls/host.pem",
            "app_node_tls_group": "x",
        },
        "app_node_https_certificate_key_file, when set, needs app_node_https_ca_file",
    ),
    "https-file-not-on-host": (
        {
            "app_node_https_certificate_key_file": "/etc/clinic/tls/host.pem",
            "app_node_https_ca_file": "/etc/clinic/tls/ca.pem",
            "app_node_tls_group": "clinic-tls",
        },
        "must exist on the host, the certificate owned by the group app_node_tls_group "
        "(clinic-tls): run tls_certificate on the host first.",
    ),
}


def bad_input_args(overrides: dict, workdir: Path) -> list[str]:
    """ansible-playbook arguments of a case: -e for changed values, a vars file for missing ones."""
    changed = {name: value for name, value in overrides.items() if value is not MISSING}
    missing = [name for name, value in overrides.items() if value is MISSING]
    args = ["-e", json.dumps(changed)] if changed else []
    if missing:
        inputs = yaml.safe_load((SCENARIO / "vars.yml").read_text())
        assert set(missing) <= inputs.keys(), missing  # the case removes something real
        varsfile = workdir / "vars.yml"
        varsfile.write_text(yaml.safe_dump({k: v for k, v in inputs.items() if k not in missing}))
        args += ["-e", f"bad_input_vars_file={varsfile}"]
    return args


@pytest.mark.parametrize(("overrides", "message"), CASES.values(), ids=CASES.keys())
def test_refused_early(ansible_playbook, recap, tail, tasks, tmp_path, overrides, message):  # noqa: ANN001, ANN201
    result = ansible_playbook("bad_input.yml", *bad_input_args(overrides, tmp_path), timeout=600)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, tail(result)
    assert message in output, tail(result)
    counters = recap(result)
    assert sorted(counters) == NODES
    assert {host: (c["changed"], c["failed"]) for host, c in counters.items()} == dict.fromkeys(
        NODES, (0, 1)
    ), tail(result)
    # No node got past the role's checks (its argument spec and tasks/assert.yml).
    started = tasks(result)
    assert started, tail(result)
    checks = ("Validating arguments against arg spec", "assert | ")
    assert all(name.startswith(checks) for name in started), started
