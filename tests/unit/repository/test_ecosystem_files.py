"""CI workflows, Dependabot, the execution environment and pre-commit agree with the repository."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTION_PINS = {
    "actions/checkout": "v4",
    "actions/setup-python": "v5",
    "actions/upload-artifact": "v4",
    "aws-actions/configure-aws-credentials": "v4",
}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.relative_to(ROOT)} is not a YAML mapping"
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads a bare `on` key as the boolean true.
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict), "the workflow has no `on:` mapping"
    return value


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def run_lines(job: dict[str, Any]) -> list[str]:
    return [" ".join(step["run"].split()) for step in steps(job) if "run" in step]


def pinned_requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        pins[re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")] = version.strip()
    return pins


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, flags=re.MULTILINE))


def scenario_dirs() -> list[str]:
    return sorted(
        p.parent.name
        for p in (ROOT / "molecule").glob("*/molecule.yml")
        if p.parent.name != "resources"
    )


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load(WORKFLOWS / "lint-test-build.yml")


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return load(WORKFLOWS / "deploy.yml")


# --- lint-test-build.yml -----------------------------------------------------------------------


def test_ci_runs_on_pull_requests_and_pushes_to_main(ci: dict[str, Any]) -> None:
    on = triggers(ci)
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]


def test_ci_is_least_privilege_and_cancels_superseded_runs(ci: dict[str, Any]) -> None:
    assert ci["permissions"] == {"contents": "read"}
    assert ci["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in ci["concurrency"]["group"]
    for name, job in ci["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout"
        assert "permissions" not in job, f"job {name} widens the workflow's permissions"


def test_ci_jobs_run_the_make_targets(ci: dict[str, Any]) -> None:
    jobs = ci["jobs"]
    assert set(jobs) >= {"lint", "unit", "molecule", "build"}
    assert "make lint" in run_lines(jobs["lint"])
    assert "make unit" in run_lines(jobs["unit"])
    assert "make molecule SCENARIO=${{ matrix.scenario }}" in run_lines(jobs["molecule"])
    assert any("ansible-galaxy collection build" in line for line in run_lines(jobs["build"]))
    uploads = [
        s for s in steps(jobs["build"]) if s.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert uploads
    assert uploads[0]["with"]["path"].endswith(".tar.gz")
    targets = makefile_targets()
    for line in (line for job in jobs.values() for line in run_lines(job)):
        for target in re.findall(r"\bmake ([a-z-]+)", line):
            assert target in targets, (
                f"`{line}` calls make target {target}, which the Makefile lacks"
            )


def test_ci_molecule_matrix_lists_every_scenario(ci: dict[str, Any]) -> None:
    matrix = ci["jobs"]["molecule"]["strategy"]["matrix"]["scenario"]
    assert sorted(matrix) == scenario_dirs(), (
        "the molecule matrix in .github/workflows/lint-test-build.yml must list exactly the "
        "directories molecule/<scenario>/molecule.yml"
    )
    assert ci["jobs"]["molecule"]["strategy"]["fail-fast"] is False


def test_ci_uses_python_3_11(ci: dict[str, Any]) -> None:
    assert ci["env"]["PYTHON_VERSION"] == "3.11"
    for job in ci["jobs"].values():
        setups = [s for s in steps(job) if s.get("uses", "").startswith("actions/setup-python")]
        assert setups, "every job sets up Python"
        assert setups[0]["with"]["python-version"] == "${{ env.PYTHON_VERSION }}"


@pytest.mark.parametrize("workflow", ["lint-test-build.yml", "deploy.yml"])
def test_actions_are_pinned_to_their_major_version(workflow: str) -> None:
    used = [
        step["uses"]
        for job in load(WORKFLOWS / workflow)["jobs"].values()
        for step in steps(job)
        if "uses" in step
    ]
    assert used
    for ref in used:
        action, _, version = ref.partition("@")
        assert action in ACTION_PINS, f"{ref}: not an action this repository has reviewed"
        assert version == ACTION_PINS[action], f"{ref}: pin {action}@{ACTION_PINS[action]}"


# --- deploy.yml --------------------------------------------------------------------------------


def test_deploy_runs_on_release_tags_only(deploy: dict[str, Any]) -> None:
    on = triggers(deploy)
    assert set(on) == {"push"}
    assert on["push"] == {"tags": ["v*"]}


def test_deploy_assumes_the_stage_role_through_oidc(deploy: dict[str, Any]) -> None:
    assert deploy["permissions"] == {"id-token": "write", "contents": "read"}
    (job,) = deploy["jobs"].values()
    assert job["environment"] == "stage"
    assert isinstance(job.get("timeout-minutes"), int)
    creds = [s for s in steps(job) if s.get("uses", "").startswith("aws-actions/")]
    assert len(creds) == 1
    assert creds[0]["with"]["role-to-assume"] == "${{ vars.CLINIC_STAGE_DEPLOY_ROLE_ARN }}"
    assert creds[0]["with"]["aws-region"] == "ap-south-1"
    assert not [s for s in steps(job) if "aws-access-key-id" in s.get("with", {})]


def test_deploy_runs_the_rolling_deploy_against_stage(deploy: dict[str, Any]) -> None:
    (job,) = deploy["jobs"].values()
    lines = run_lines(job)
    assert "make venv" in " ".join(lines)
    assert any("ansible-galaxy collection install -r requirements.yml" in line for line in lines)
    (play,) = [line for line in lines if "ansible-playbook playbooks/deploy.yml" in line]
    assert "ansible-playbook playbooks/deploy.yml -i inventories/stage" in play
    assert (ROOT / "playbooks" / "deploy.yml").is_file()
    # The release is the tag without its v, verified against the checksum the build published.
    assert 'version="${CLINIC_RELEASE_VERSION#v}"' in play
    assert '-e "deploy_version=${version}" -e "deploy_sha256=${checksum}"' in play
    assert job["env"]["CLINIC_RELEASE_VERSION"] == "${{ github.ref_name }}"
    assert (ROOT / "inventories" / "stage").is_dir()
    # The tag name reaches the shell only through the environment (no script injection).
    assert not [line for line in lines if "github.ref_name" in line]


# --- dependabot.yml ----------------------------------------------------------------------------


def test_dependabot_covers_pip_and_actions_weekly() -> None:
    config = load(ROOT / ".github" / "dependabot.yml")
    assert config["version"] == 2
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"pip", "github-actions"}
    for ecosystem, update in updates.items():
        assert update["directory"] == "/", ecosystem
        assert update["schedule"]["interval"] == "weekly", ecosystem
        assert 1 <= update["open-pull-requests-limit"] <= 5, ecosystem
        (group,) = update["groups"].values()
        assert sorted(group["update-types"]) == ["minor", "patch"], ecosystem


# --- execution-environment.yml -----------------------------------------------------------------


def test_execution_environment_pins_match_requirements() -> None:
    ee = load(ROOT / "execution-environment.yml")
    pins = pinned_requirements()
    assert ee["version"] == 3
    assert ee["images"]["base_image"]["name"]
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert deps["ansible_runner"]["package_pip"] == "ansible-runner"
    assert (ROOT / deps["galaxy"]).is_file()
    python = dict(item.split("==", 1) for item in deps["python"])
    assert set(python) >= {"boto3", "botocore", "pymongo"}
    for name, version in python.items():
        assert pins.get(name.lower()) == version, (
            f"{name}=={version}: requirements.txt pins {pins.get(name.lower())}"
        )


# --- .pre-commit-config.yaml -------------------------------------------------------------------


def local_hooks() -> list[dict[str, Any]]:
    config = load(ROOT / ".pre-commit-config.yaml")
    local = [repo for repo in config["repos"] if repo["repo"] == "local"]
    assert local, "the essential checks are local hooks"
    return [hook for repo in local for hook in repo["hooks"]]


def test_pre_commit_has_the_lint_checks_and_a_secret_scan() -> None:
    entries = [hook["entry"] for hook in local_hooks() if hook["language"] == "system"]
    for needed in (
        "yamllint --strict",
        "ansible-lint",
        "ruff check",
        "ruff format --check",
        "-m tests.harness.role_docs --check",
    ):
        assert any(needed in entry for entry in entries), f"no local hook runs `{needed}`"
    assert [hook for hook in local_hooks() if hook["language"] == "pygrep"]


@pytest.mark.parametrize("hook", local_hooks(), ids=lambda hook: hook["id"])
def test_pre_commit_hook_entry_exists(hook: dict[str, Any]) -> None:
    if hook["language"] == "pygrep":
        re.compile(hook["entry"])
        return
    assert hook["language"] == "system"
    argv = shlex.split(hook["entry"])
    tool = Path(argv[0]).name
    if tool == "make":
        assert argv[1] in makefile_targets(), f"{hook['id']}: no make target {argv[1]}"
        return
    assert argv[0].startswith(".venv/bin/"), f"{hook['id']}: call the tool from the project's venv"
    assert (Path(sys.executable).parent / tool).exists(), f"{hook['id']}: {tool} is not installed"
    if tool == "python":
        module = argv[argv.index("-m") + 1]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"no module {module}"
    else:
        assert tool in pinned_requirements(), (
            f"{hook['id']}: {tool} is not pinned in requirements.txt"
        )


def test_secret_scan_catches_secrets_and_finds_none_in_the_tree() -> None:
    patterns = {h["id"]: re.compile(h["entry"]) for h in local_hooks() if h["language"] == "pygrep"}
    # Assembled at run time so that this file does not itself hold anything the scan rejects.
    samples = [
        "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "AKIA" + "Z" * 16,
        "aws_secret_access_key = " + "A1b/" * 10,
    ]
    for sample in samples:
        assert any(p.search(sample) for p in patterns.values()), f"not caught: {sample[:16]}..."
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    hits = []
    for name in filter(None, files):
        path = ROOT / name
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            hits += [f"{name}:{number}: {hook}" for hook, p in patterns.items() if p.search(line)]
    assert not hits
