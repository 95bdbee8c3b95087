"""Every plugin's DOCUMENTATION, EXAMPLES and RETURN parse as YAML (ansible-doc reads them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOC_NAMES = {"DOCUMENTATION", "EXAMPLES", "RETURN"}
PLUGINS = sorted(p for p in (ROOT / "plugins").rglob("*.py") if p.name != "__init__.py")


def doc_blocks(path: Path) -> dict[str, str]:
    blocks = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in DOC_NAMES:
                    blocks[target.id] = node.value.value
    return blocks


@pytest.mark.parametrize("path", PLUGINS, ids=[str(p.relative_to(ROOT)) for p in PLUGINS])
def test_documentation_blocks_parse(path: Path) -> None:
    blocks = doc_blocks(path)
    if path.parent.name in {"modules", "filter"}:
        assert "DOCUMENTATION" in blocks, f"{path.name} has no DOCUMENTATION"
    for name, text in blocks.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as err:
            pytest.fail(f"{path.name} {name}: {err}")
