"""The .deb recipe: real package name and layout, and the built package runs the double."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.doubles.cloudwatch_agent import packaging as recipe

from . import configs
from .conftest import REGION, REPO, Agent, pid_alive

AGENT_DIR = "/opt/aws/amazon-cloudwatch-agent"


def test_package_spec_describes_the_real_package(schema_path: Path) -> None:
    spec = recipe.package_spec(schema_path, "1.300070.0-1")
    assert spec["name"] == "amazon-cloudwatch-agent"
    assert spec["depends"] == ["python3", "python3-jsonschema"]
    files = {f.path: f for f in spec["files"]}
    for path in (
        f"{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl",
        f"{AGENT_DIR}/bin/start-amazon-cloudwatch-agent",
    ):
        assert files[path].mode == 0o755
    assert files[f"{AGENT_DIR}/bin/CWAGENT_VERSION"].content == b"1.300070.0\n"
    assert files[f"{AGENT_DIR}/doc/amazon-cloudwatch-agent-schema.json"].source == schema_path
    assert spec["conffiles"] == [f"{AGENT_DIR}/etc/common-config.toml"]
    unit = files["/etc/systemd/system/amazon-cloudwatch-agent.service"].content.decode()
    for line in (
        "Type=simple",
        f"ExecStart={AGENT_DIR}/bin/start-amazon-cloudwatch-agent",
        "Restart=on-failure",
        "RestartSec=60s",
        "WantedBy=multi-user.target",
    ):
        assert line in unit.splitlines()
    postinst = spec["maintainer_scripts"]["postinst"]
    assert f"ln -sfn {AGENT_DIR}/etc /etc/amazon/amazon-cloudwatch-agent" in postinst
    assert f"{AGENT_DIR}/etc/amazon-cloudwatch-agent.d" in postinst
    assert "useradd -r -M" in spec["maintainer_scripts"]["preinst"]
    modules = sorted(Path(p).name for p in files if "/lib/double/cwagent_double/" in p)
    assert "packaging.py" not in modules
    assert {"ctl.py", "config.py", "service.py", "__main__.py"} <= set(modules)


def test_the_default_schema_is_the_projects_own() -> None:
    """The package installs agent_schema.json from this repository, a valid draft-04 schema."""
    assert recipe.DEFAULT_SCHEMA == REPO / "tests/doubles/cloudwatch_agent/agent_schema.json"
    schema = json.loads(recipe.DEFAULT_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    jsonschema.Draft4Validator.check_schema(schema)
    assert "clinic.infra" in schema["description"]


def test_package_spec_needs_the_schema(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"schema\.json"):
        recipe.package_spec(tmp_path / "schema.json", "1.0")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recipe.build(recipe.DEFAULT_SCHEMA, "1.300070.0-1", tmp_path_factory.mktemp("deb"))


def dpkg(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_built_deb_control_and_contents(deb: Path) -> None:
    info = dpkg("-I", str(deb))
    assert "Package: amazon-cloudwatch-agent" in info
    assert "Depends: python3, python3-jsonschema" in info
    assert "Architecture: all" in info
    assert "TEST DOUBLE" in info
    listing = dpkg("-c", str(deb))
    for path in (
        f".{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl",
        f".{AGENT_DIR}/bin/start-amazon-cloudwatch-agent",
        f".{AGENT_DIR}/doc/amazon-cloudwatch-agent-schema.json",
        f".{AGENT_DIR}/etc/common-config.toml",
        f".{AGENT_DIR}/lib/double/cwagent_double/ctl.py",
        "./etc/systemd/system/amazon-cloudwatch-agent.service",
    ):
        assert path in listing
    assert "-rwxr-xr-x root/root" in next(
        line for line in listing.splitlines() if line.endswith("bin/amazon-cloudwatch-agent-ctl")
    )
    assert "packaging.py" not in listing
    assert "/tests/" not in listing
    assert dpkg("--field", str(deb), "Version").strip() == "1.300070.0-1"


def test_extracted_package_runs_the_ctl_and_the_service(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "host"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=60)
    for sub in ("etc/amazon-cloudwatch-agent.d", "logs", "var"):
        (root / AGENT_DIR.lstrip("/") / sub).mkdir(parents=True, exist_ok=True)
    knob = root / "etc/amazon-cloudwatch-agent-double/imds-region"
    knob.parent.mkdir(parents=True)
    knob.write_text(f"{REGION}\n", encoding="ascii")
    installed_schema = root / AGENT_DIR.lstrip("/") / "doc" / "amazon-cloudwatch-agent-schema.json"
    assert installed_schema.read_bytes() == recipe.DEFAULT_SCHEMA.read_bytes()
    ctl = root / AGENT_DIR.lstrip("/") / "bin" / "amazon-cloudwatch-agent-ctl"
    installed = Agent(root, command=[sys.executable, str(ctl)])
    installed.extra_env["PYTHONPATH"] = str(root / AGENT_DIR.lstrip("/") / "lib" / "double")
    try:
        assert installed.status()["configstatus"] == "not configured"
        result = installed.fetch(configs.FULL, "-s")
        assert result.rc == 0, result.output
        status = installed.status()
        assert (status["status"], status["configstatus"]) == ("running", "configured")
        assert status["version"] == "1.300070.0"
        pid = installed.agent_pid()
        assert pid_alive(pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"cwagent_double" in cmdline
        assert installed.ctl("-a", "stop").rc == 0
        assert installed.status()["status"] == "stopped"
        assert json.loads(installed.ctl("-a", "status").stdout)["starttime"] == ""
    finally:
        installed.cleanup()
