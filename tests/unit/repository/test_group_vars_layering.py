"""Wiring (root group_vars) and environment facts (inventories/<env>/group_vars) never overlap.

Playbook-adjacent group_vars take precedence over the inventory's, so a variable defined in both
places would silently replace the environment's value in every environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ENVIRONMENTS = ("dev", "stage", "prod")
YAML_SUFFIXES = {".yml", ".yaml", ".json"}


class _TaggedLoader(yaml.SafeLoader):
    """Safe loader that reads values tagged !vault or !unsafe as opaque scalars."""


_TaggedLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def vars_files(group_vars: Path) -> list[Path]:
    """Files Ansible reads from a group_vars tree: <group>, <group>.yml, <group>/** (recursive).

    As Ansible's loader does: hidden names and backups (name~) are skipped, files need a YAML or
    JSON suffix or none, and only directories without a suffix are descended into.
    """
    if not group_vars.is_dir():
        return []
    found = []
    for path in sorted(group_vars.iterdir()):
        if path.name.startswith(".") or path.name.endswith("~"):
            continue
        if path.is_dir() and not path.suffix:
            found.extend(vars_files(path))
        elif path.is_file() and (not path.suffix or path.suffix in YAML_SUFFIXES):
            found.append(path)
    return found


def defined_names(group_vars: Path) -> dict[str, list[Path]]:
    """Variable name -> the files in a group_vars tree that define it."""
    names: dict[str, list[Path]] = {}
    for path in vars_files(group_vars):
        data: Any = yaml.load(path.read_text(), Loader=_TaggedLoader)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a mapping of variables (an encrypted file?)")
        for name in data:
            names.setdefault(str(name), []).append(path)
    return names


def overlaps(wiring: Path, facts: list[Path]) -> dict[str, list[Path]]:
    """Names defined both in the wiring tree and in any of the facts trees, with their files."""
    root_names = defined_names(wiring)
    found: dict[str, list[Path]] = {}
    for tree in facts:
        for name, paths in defined_names(tree).items():
            if name in root_names:
                found.setdefault(name, list(root_names[name])).extend(paths)
    return found


def group_of(path: Path) -> str:
    """The group a vars file belongs to: <group>.yml, <group> or anything under <group>/."""
    tree = next(p for p in path.parents if p.name == "group_vars")
    top = path.relative_to(tree).parts[0]
    return top if (tree / top).is_dir() else Path(top).stem


def describe(clashes: dict[str, list[Path]], base: Path) -> str:
    """One line per duplicated variable: its name, then each file and group defining it."""
    return "\n".join(
        f"{name}: " + ", ".join(f"{p.relative_to(base)} ({group_of(p)})" for p in paths)
        for name, paths in sorted(clashes.items())
    )


def inventory_trees() -> list[Path]:
    """group_vars of every inventory directory, so a new environment is covered too."""
    return sorted(ROOT.glob("inventories/*/group_vars"))


def test_no_variable_is_defined_in_root_and_inventory_group_vars() -> None:
    # Stricter than comparing group by group: a name defined in both trees clashes whatever the
    # groups (root `all` against an inventory's `role_app` too), since which value wins would then
    # hang on group and playbook precedence rules that no reader should have to work out.
    facts = inventory_trees()
    assert {tree.parent.name for tree in facts} >= {*ENVIRONMENTS, "lab"}
    assert all(vars_files(tree) for tree in facts), "an environment has no group_vars"
    assert vars_files(ROOT / "group_vars"), "the root group_vars tree is empty"
    clashes = overlaps(ROOT / "group_vars", facts)
    heading = "defined both in group_vars/ and inventories/*/group_vars/ (file (group)):"
    assert not clashes, f"{heading}\n{describe(clashes, ROOT)}"


@pytest.mark.parametrize("playbooks", ["playbooks", "lab"])
def test_playbook_group_vars_is_the_root_tree(playbooks: str) -> None:
    # The lab's own playbooks (lab/up.yml, lab/lb.yml) see the same wiring as playbooks/.
    link = ROOT / playbooks / "group_vars"
    assert link.is_symlink()
    assert link.readlink() == Path("../group_vars")
    assert link.resolve() == (ROOT / "group_vars").resolve()


@pytest.mark.parametrize("env", [*ENVIRONMENTS, "lab"])
def test_clinic_env_names_the_inventory_directory(env: str) -> None:
    tree = ROOT / "inventories" / env / "group_vars"
    files = defined_names(tree).get("clinic_env", [])
    assert len(files) == 1, files
    assert yaml.safe_load(files[0].read_text())["clinic_env"] == env


def test_overlaps_are_found_in_both_layouts(tmp_path: Path) -> None:
    wiring = tmp_path / "group_vars"
    (wiring / "all").mkdir(parents=True)
    (wiring / "all" / "wiring.yml").write_text("---\nclinic_ssm_prefix: x\nshared_a: 1\n")
    (wiring / "role_app.yml").write_text("---\nshared_b: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n")
    facts = tmp_path / "inventories" / "dev" / "group_vars"
    (facts / "all" / "nested").mkdir(parents=True)
    (facts / "all" / "nested" / "deep.yaml").write_text("---\nshared_a: 2\nonly_here: 3\n")
    (facts / "role_app").write_text("---\nshared_b: 4\n")
    (facts / "all" / "notes.txt").write_text("shared_a: not a vars file\n")
    (facts / "all" / "old.yml~").write_text("---\nclinic_ssm_prefix: a backup\n")

    found = overlaps(wiring, [facts])

    assert set(found) == {"shared_a", "shared_b"}
    assert found["shared_a"] == [wiring / "all" / "wiring.yml", facts / "all/nested/deep.yaml"]
    assert found["shared_b"] == [wiring / "role_app.yml", facts / "role_app"]
    assert overlaps(wiring, [tmp_path / "missing"]) == {}
    assert describe(found, tmp_path).splitlines() == [
        "shared_a: group_vars/all/wiring.yml (all), "
        "inventories/dev/group_vars/all/nested/deep.yaml (all)",
        "shared_b: group_vars/role_app.yml (role_app), "
        "inventories/dev/group_vars/role_app (role_app)",
    ]


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "all.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    with pytest.raises(ValueError, match="not a mapping"):
        defined_names(tmp_path)
