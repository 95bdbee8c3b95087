"""A verbose run of the role never prints a secret: not the keyFile, not a password."""

from __future__ import annotations

from collections.abc import Callable
from subprocess import CompletedProcess

import pytest

SECRETS = ("keyfile", "admin_password", "app_password", "backup_password", "monitor_password")


def test_a_vvv_converge_prints_no_secret(
    converge: Callable[..., CompletedProcess[str]],
    secret: Callable[[str], str],
    tail: Callable[..., str],
) -> None:
    result = converge("-vvv")
    assert result.returncode == 0, tail(result)
    output = result.stdout + result.stderr
    # The run really handled the secrets: the censored keyFile and user tasks are in the output.
    assert "the output has been hidden due to the fact that" in output
    leaked = [name for name in SECRETS if secret(name) in output]
    if leaked:  # never let the assertion print a value
        pytest.fail(f"secret values appear in the -vvv output: {', '.join(leaked)}")
