"""Scripts that roles install on hosts (roles/<role>/files/*.py), loaded as modules for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def load(role: str, name: str) -> ModuleType:
    """roles/<role>/files/<name>.py as a module named <name>."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "roles" / role / "files" / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
