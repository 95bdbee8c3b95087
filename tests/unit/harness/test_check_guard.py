"""The check-mode guard callback turns changes reported in --check into a failing exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PLAYBOOK = """
- name: Write a file
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write it
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ target }}"
        mode: "0600"
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = os.environ | {
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "tests/harness/callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "clinic_check_guard",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(playbook)]
    command += ["-e", f"target={tmp_path / 'out.txt'} ansible_python_interpreter={sys.executable}"]
    command += list(args)
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.slow
def test_check_mode_with_changes_fails(tmp_path: Path) -> None:
    result = run(tmp_path, "--check")
    assert result.returncode == 2
    assert "check mode on a converged host reported changes" in result.stdout + result.stderr
    assert "localhost: Write it" in result.stdout + result.stderr


@pytest.mark.slow
def test_converged_host_passes_and_normal_runs_are_untouched(tmp_path: Path) -> None:
    first = run(tmp_path)  # a real change outside check mode is fine
    assert first.returncode == 0, first.stdout
    assert run(tmp_path, "--check").returncode == 0
