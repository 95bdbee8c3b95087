#!/usr/bin/python
"""Apply kernel parameters to the running kernel where the host allows it."""

from __future__ import annotations

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: sysctl_runtime
short_description: Apply kernel parameters to the running kernel, reporting what cannot be applied
version_added: 0.1.0
description:
  - Compares each parameter with its live value under C(/proc/sys) and writes those that differ.
  - Forwarding switches are written first, because changing one makes the kernel reset other
    per-interface parameters (C(net.ipv4.ip_forward) rewrites C(accept_redirects)).
  - Persisting parameters is not this module's job; write them to C(/etc/sysctl.d) first, so that
    they also apply at boot.
  - A parameter the host does not let this process change (read-only in a container, where only the
    network namespace's parameters are the container's own) or that the kernel does not know is not
    an error. It is returned in RV(not_applied) and reported as a warning on every run, so that
    nothing is skipped silently.
options:
  settings:
    description: Parameters to apply, as dotted names (C(net.ipv4.tcp_syncookies)) and values.
    type: dict
    required: true
  proc_root:
    description: Where the kernel parameters are mounted.
    type: path
    default: /proc/sys
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - clinic platform team
"""

EXAMPLES = r"""
- name: Apply the hardening parameters to the running kernel
  clinic.infra.sysctl_runtime:
    settings:
      net.ipv4.tcp_syncookies: 1
      kernel.kptr_restrict: 2
"""

RETURN = r"""
applied:
  description: Parameters whose live value was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
not_applied:
  description: Parameters that could not be applied, with the reason.
  returned: always
  type: dict
"""


def normalise(value: object) -> str:
    """Kernel values are whitespace-separated fields: compare them field by field."""
    return " ".join(str(value).split())


def apply_order(names: list[str]) -> list[str]:
    """Forwarding switches first: setting one makes the kernel reset other per-interface values
    (ip_forward rewrites conf.*.accept_redirects), which must then be applied after it."""
    return sorted(names, key=lambda name: ("forward" not in name, name))


def apply(settings: dict, proc_root: Path, check_mode: bool) -> tuple[list[str], dict[str, str]]:
    applied: list[str] = []
    not_applied: dict[str, str] = {}
    for name in apply_order(list(settings)):
        wanted = normalise(settings[name])
        path = proc_root.joinpath(*name.split("."))
        try:
            current = normalise(path.read_text())
        except FileNotFoundError:
            not_applied[name] = "the running kernel has no such parameter"
            continue
        except OSError as err:
            not_applied[name] = f"unreadable: {err.strerror}"
            continue
        if current == wanted:
            continue
        if not os.access(path, os.W_OK):
            not_applied[name] = f"read-only here (live value {current!r}, wanted {wanted!r})"
            continue
        if not check_mode:
            try:
                path.write_text(wanted + "\n")
            except OSError as err:
                not_applied[name] = f"{err.strerror} (live value {current!r}, wanted {wanted!r})"
                continue
        applied.append(name)
    return applied, not_applied


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "settings": {"type": "dict", "required": True},
            "proc_root": {"type": "path", "default": "/proc/sys"},
        },
        supports_check_mode=True,
    )
    applied, not_applied = apply(
        module.params["settings"], Path(module.params["proc_root"]), module.check_mode
    )
    for name, reason in not_applied.items():
        module.warn(f"kernel parameter {name} not applied to the running kernel: {reason}")
    module.exit_json(changed=bool(applied), applied=applied, not_applied=not_applied)


if __name__ == "__main__":
    main()
