"""Reference files that the doubles' test suites read from `shared`, the folder beside the checkout.

That folder is not part of the repository. A test that needs a file from it is skipped, with a
reason naming the file, where the file is missing; under CI (`CI=true`) a missing file fails the
test instead, so that a CI run cannot pass by skipping.
"""

from __future__ import annotations

from pathlib import Path

from tests.prerequisites import missing

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_file(relative: str) -> Path:
    """The path of `relative` below SHARED; skips the calling test if it is absent (fails in CI)."""
    path = SHARED / relative
    if not path.exists():
        missing(f"shared reference file {path} is missing")
    return path
