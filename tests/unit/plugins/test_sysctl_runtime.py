"""clinic.infra.sysctl_runtime against a fake /proc/sys tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins.modules.sysctl_runtime import apply, apply_order


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    values = {
        "net/ipv4/ip_forward": "1",
        "net/ipv4/conf/all/accept_redirects": "1",
        "net/ipv4/tcp_syncookies": "1",
        "kernel/kptr_restrict": "0",
        "net/ipv4/ip_local_port_range": "32768\t60999",
    }
    for name, value in values.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    (tmp_path / "kernel/kptr_restrict").chmod(0o444)
    return tmp_path


def read(proc: Path, name: str) -> str:
    return proc.joinpath(*name.split(".")).read_text().strip()


def test_read_only_parameter_is_reported_not_failed(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc/sys mounted read-only answers access(W_OK) with EROFS, for root too.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: "kptr" not in str(path) and real_access(path, mode)
    )
    applied, not_applied = apply({"kernel.kptr_restrict": 2}, proc, check_mode=False)
    assert applied == []
    assert "read-only here" in not_applied["kernel.kptr_restrict"]


def test_differing_values_are_written_and_equal_ones_left(proc: Path) -> None:
    settings = {"net.ipv4.tcp_syncookies": 1, "net.ipv4.conf.all.accept_redirects": 0}
    applied, not_applied = apply(settings, proc, check_mode=False)
    assert applied == ["net.ipv4.conf.all.accept_redirects"]
    assert not_applied == {}
    assert read(proc, "net.ipv4.conf.all.accept_redirects") == "0"


def test_second_run_changes_nothing(proc: Path) -> None:
    settings = {
        "net.ipv4.conf.all.accept_redirects": 0,
        "net.ipv4.ip_local_port_range": "1024 65000",
    }
    assert apply(settings, proc, check_mode=False)[0]
    assert apply(settings, proc, check_mode=False) == ([], {})


def test_whitespace_separated_values_compare_by_field(proc: Path) -> None:
    settings = {"net.ipv4.ip_local_port_range": "32768 60999"}
    assert apply(settings, proc, check_mode=False) == ([], {})


def test_check_mode_reports_without_writing(proc: Path) -> None:
    applied, _ = apply({"net.ipv4.conf.all.accept_redirects": 0}, proc, check_mode=True)
    assert applied == ["net.ipv4.conf.all.accept_redirects"]
    assert read(proc, "net.ipv4.conf.all.accept_redirects") == "1"


def test_unknown_parameter_is_reported(proc: Path) -> None:
    applied, not_applied = apply({"kernel.yama.ptrace_scope": 1}, proc, check_mode=False)
    assert applied == []
    assert not_applied == {"kernel.yama.ptrace_scope": "the running kernel has no such parameter"}


def test_write_error_is_reported(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "write_text", refuse)
    applied, not_applied = apply({"net.ipv4.tcp_syncookies": 0}, proc, check_mode=False)
    assert applied == []
    assert not_applied["net.ipv4.tcp_syncookies"].startswith("Operation not permitted")


def test_unreadable_parameter_is_reported(proc: Path) -> None:
    (proc / "net/ipv4/tcp_syncookies").unlink()
    (proc / "net/ipv4/tcp_syncookies").mkdir()
    applied, not_applied = apply({"net.ipv4.tcp_syncookies": 1}, proc, check_mode=False)
    assert applied == []
    assert not_applied["net.ipv4.tcp_syncookies"] == "unreadable: Is a directory"


def test_forwarding_switches_are_applied_first() -> None:
    names = ["net.ipv4.conf.all.accept_redirects", "kernel.sysrq", "net.ipv4.ip_forward"]
    assert apply_order(names)[0] == "net.ipv4.ip_forward"
