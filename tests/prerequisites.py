"""One rule for tests whose prerequisite is missing on the machine that runs them.

Elsewhere the test is skipped with a reason that names what is missing; under CI (`CI=true`) it
fails instead, so that a CI run cannot pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Skip the calling test because `what` is missing (fail it under CI=true)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing prerequisite fails)", pytrace=False)
    pytest.skip(what)
