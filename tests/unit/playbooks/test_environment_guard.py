"""The environment guard stops every play before it changes a host of another environment.

site.yml runs against a static inventory written into tmp_path: hosts that carry ec2_tags as the
aws_ec2 inventories give them, ansible_connection local (this machine stands in for the hosts),
and clinic_env in the inventory's group_vars, as inventories/<env>/group_vars/all/environment.yml
sets it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
GUARD = "tasks/environment_guard.yml"
CONTROLLER_GUARD = "tasks/controller_guard.yml"
GUARD_PREFIX = "environment_guard | "
REFUSE_TASK = "environment_guard | Refuse a host whose Environment tag is not clinic_env"
STAGE_APP = "i-0aaaaaaaaaaaaaaa1-clinic-stage-app"
PROD_APP = "i-0bbbbbbbbbbbbbbb2-clinic-prod-app"


def ec2_host(**tags: str) -> dict[str, Any]:
    return {"ec2_tags": {"Project": "clinic", "Role": "app", **tags}}


def write_inventory(
    tmp_path: Path, hosts: dict[str, dict[str, Any]], clinic_env: str | None = "stage"
) -> Path:
    """A static inventory of hosts run on this machine, with clinic_env in its group_vars."""
    directory = tmp_path / "inventory"
    (directory / "group_vars" / "all").mkdir(parents=True)
    if clinic_env is not None:
        environment = directory / "group_vars" / "all" / "environment.yml"
        environment.write_text(yaml.safe_dump({"clinic_env": clinic_env}, explicit_start=True))
    connection = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # No privilege escalation on the machine that runs the tests (overrides the play's become).
        "ansible_become": False,
    }
    inventory = directory / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": connection}}))
    return inventory


def run_site(tmp_path: Path, inventory: Path, *args: str) -> tuple[int, str]:
    """Run site.yml; return its exit status and its output (stdout and stderr, uncoloured)."""
    env = os.environ | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # Facts of the stand-in hosts stay out of the checkout's fact cache.
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "site.yml", *args]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    return result.returncode, result.stdout + result.stderr


def tasks_run(output: str) -> list[str]:
    """Names of the tasks the run started, in order (Gathering Facts included)."""
    return re.findall(r"^TASK \[(.+?)\] \*+$", output, flags=re.MULTILINE)


def recap(output: str, host: str) -> dict[str, int]:
    line = re.search(rf"^{re.escape(host)}\s+:(.*)$", output, flags=re.MULTILINE)
    assert line, f"no recap line for {host}:\n{output}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def flat(output: str) -> str:
    """Output with whitespace runs collapsed (long messages are wrapped in the YAML results)."""
    return " ".join(output.split())


def assert_stopped_at_the_guard(rc: int, output: str, hosts: list[str]) -> None:
    """Non-zero exit, nothing changed, and no task past the guard's checks ran for any host."""
    assert rc != 0, output
    for host in hosts:
        counts = recap(output, host)
        assert counts["changed"] == 0, output
    started = tasks_run(output)
    assert started, output
    assert all(name.startswith(GUARD_PREFIX) for name in started), started
    assert "Gathering Facts" not in output
    assert "environment_guard | Gather facts" not in output


# These runs are real runs (no --check): the refusal is what keeps this machine unchanged. Should
# the guard ever let a host through, the run would go on to gather facts and into base_hardening,
# whose argument validation refuses this inventory (it sets none of the role's required inputs)
# before any change; the assertions on the task list would then fail.


@pytest.mark.slow
def test_a_host_tagged_for_another_environment_stops_the_run(tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path, {STAGE_APP: ec2_host(Environment="stage"), PROD_APP: ec2_host(Environment="prod")}
    )

    rc, output = run_site(tmp_path, inventory)

    assert_stopped_at_the_guard(rc, output, [STAGE_APP, PROD_APP])
    assert (
        f"Host {PROD_APP} is tagged Environment=prod but this run is for clinic_env=stage"
        in flat(output)
    )
    assert recap(output, PROD_APP)["failed"] == 1
    # The refusal stops the play for every host: the stage host did not go past the guard either.
    assert tasks_run(output)[-1] == REFUSE_TASK
    assert recap(output, STAGE_APP)["failed"] == 0


@pytest.mark.slow
def test_a_host_without_an_environment_tag_is_refused(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, {"i-0ccccccccccccccc3": ec2_host(), "i-0ddd": {}})

    rc, output = run_site(tmp_path, inventory)

    assert_stopped_at_the_guard(rc, output, ["i-0ccccccccccccccc3", "i-0ddd"])
    for host in ("i-0ccccccccccccccc3", "i-0ddd"):
        message = f"Host {host} has no Environment tag but this run is for clinic_env=stage"
        assert message in flat(output)
        assert recap(output, host)["failed"] == 1


@pytest.mark.slow
def test_a_run_without_clinic_env_is_refused(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, {STAGE_APP: ec2_host(Environment="stage")}, None)

    rc, output = run_site(tmp_path, inventory)

    assert_stopped_at_the_guard(rc, output, [STAGE_APP])
    assert f"clinic_env is not set for host {STAGE_APP}" in flat(output)
    assert tasks_run(output) == [REFUSE_TASK]


def role_names() -> list[str]:
    return sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--check"]], ids=["run", "check"])
def test_a_host_of_this_environment_passes_the_guard(tmp_path: Path, mode: list[str]) -> None:
    # Only the guard runs: --tags environment_guard selects it, and --skip-tags of every role keeps
    # out the roles' own always-tagged input checks, so nothing of base_hardening runs on this
    # machine. What runs is read-only (an assert on the controller, then fact gathering), in a
    # normal run and in a --check run alike.
    inventory = write_inventory(tmp_path, {STAGE_APP: ec2_host(Environment="stage")})
    skip = ",".join(role_names())

    rc, output = run_site(
        tmp_path, inventory, "--tags", "environment_guard", "--skip-tags", skip, *mode
    )

    assert rc == 0, output
    guard = [
        REFUSE_TASK,
        "environment_guard | Gather facts of a host that belongs to this environment",
    ]
    # The guard runs at the start of every play of site.yml that the host is in, and only it; the
    # first play gathers the facts, which the later ones reuse.
    plays_run = len(tasks_run(output)) // len(guard)
    assert plays_run >= 2
    assert tasks_run(output) == guard * plays_run, output
    assert f"Host {STAGE_APP} is tagged Environment=stage" in output
    counts = recap(output, STAGE_APP)
    assert (counts["ok"], counts["skipped"], counts["changed"], counts["failed"]) == (
        plays_run + 1,
        plays_run - 1,
        0,
        0,
    ), output


# --- Every play in playbooks/ starts with the guard (covers tier playbooks as they are added) ----


def plays() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for playbook in sorted((ROOT / "playbooks").glob("*.yml")):
        for index, play in enumerate(yaml.safe_load(playbook.read_text())):
            found.append((f"{playbook.name}#{index}", play))
    return found


def is_controller_play(play: dict[str, Any]) -> bool:
    """A play that changes AWS resources from the controller (iam.yml, backup_storage.yml,
    monitoring.yml): no hosts."""
    return play.get("hosts") == "localhost" and play.get("connection") == "local"


@pytest.mark.parametrize(("label", "play"), plays(), ids=[label for label, _ in plays()])
def test_every_play_starts_with_the_guard(label: str, play: dict[str, Any]) -> None:
    assert "import_playbook" not in str(play), f"{label}: site.yml imports, playbooks hold plays"
    # Facts are gathered by the guard, so a refused host is never contacted.
    assert play.get("gather_facts") is False, label
    first = (play.get("pre_tasks") or [{}])[0]
    guard = CONTROLLER_GUARD if is_controller_play(play) else GUARD
    assert first.get("ansible.builtin.import_tasks") == guard, f"{label}: first pre_task {first}"
    assert "always" in first.get("tags", []), label
    for name, tags in roles_applied(play):
        assert name.startswith("clinic.infra."), f"{label}: {name} is not named by FQCN"
        assert name.rsplit(".", 1)[1] in tags, f"{label}: {name} is not tagged with its name"


def roles_applied(play: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(name, tags) of each role a play lists under roles or includes from its tasks; an included
    role's tasks carry the tags only when the include applies them."""
    found = []
    for role in play.get("roles", []):
        found.append((role["role"], role.get("tags", [])) if isinstance(role, dict) else (role, []))
    for task in play.get("tasks", []):
        include = task.get("ansible.builtin.include_role")
        if include:
            applied = include.get("apply", {}).get("tags", [])
            found.append((include["name"], sorted(set(task.get("tags", [])) & set(applied))))
    return found


def test_site_imports_only_existing_playbooks() -> None:
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    assert site
    for entry in site:
        assert set(entry) == {"name", "ansible.builtin.import_playbook"}, entry
        target = entry["ansible.builtin.import_playbook"]
        assert target.startswith("playbooks/"), target
        assert (ROOT / target).is_file(), target
