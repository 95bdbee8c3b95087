"""Optional cross-checks against reference files in `shared`, the folder beside the checkout.

That folder is not part of the repository and no test depends on it: the project states the facts
its tests rely on in its own files. A cross-check compares those statements with a reference copy
(a vendor's schema, a transcript) when one is there, and is skipped, naming the missing file, when
it is not, also under CI (`CI=true`), because the comparison is optional by design.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_file(relative: str) -> Path:
    """The path of `relative` below SHARED; skips the calling cross-check if it is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"cross-check skipped: reference file {path} is absent (optional)")
    return path
