"""Agent mode and region detection (common-config.toml, shared AWS config, instance metadata).

The double never opens a socket. Where the real agent asks the EC2 instance metadata service
(IMDS) for the region, the double reads the test-lab knob `Paths.imds_region` instead: a file
holding a region name means "IMDS answers with this region"; no file means "IMDS unreachable",
which is what a container without an emulated identity document looks like to the real agent.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from dataclasses import dataclass

from .paths import Paths

MODE_EC2 = "ec2"
MODE_ON_PREMISE = "onPremise"
MODE_AUTO = "auto"
CTL_MODES = (MODE_EC2, MODE_ON_PREMISE, MODE_AUTO)


class CommonConfigError(Exception):
    """common-config.toml exists but cannot be parsed."""


@dataclass(frozen=True)
class Credentials:
    profile: str | None = None
    shared_file: str | None = None

    @property
    def configured(self) -> bool:
        return self.profile is not None or self.shared_file is not None


def read_common_config(paths: Paths) -> Credentials:
    if not paths.common_config.exists():
        return Credentials()
    try:
        data = tomllib.loads(paths.common_config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommonConfigError(
            f"failed to parse Common Config: {paths.common_config}: {exc}"
        ) from exc
    creds = data.get("credentials", {})
    if not isinstance(creds, dict):
        raise CommonConfigError("failed to parse Common Config: [credentials] is not a table")
    profile = creds.get("shared_credential_profile")
    shared = creds.get("shared_credential_file")
    return Credentials(
        profile=str(profile) if profile else None, shared_file=str(shared) if shared else None
    )


def imds_region(paths: Paths) -> str:
    """The region the (emulated) instance metadata service reports; empty when unreachable."""
    try:
        return paths.imds_region.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def detect_mode(paths: Paths, mode: str) -> str:
    """`auto` resolves to ec2 when IMDS answers, else onPremise (as the agent does)."""
    if mode == MODE_AUTO:
        return MODE_EC2 if imds_region(paths) else MODE_ON_PREMISE
    return mode


def _region_from_shared_config(paths: Paths, creds: Credentials) -> str:
    profile = creds.profile or "default"
    if creds.shared_file:
        shared = paths.host(creds.shared_file)
        files = [shared, shared.parent / "config"]
    else:
        home = paths.host(os.environ.get("HOME") or "/root")
        files = [home / ".aws" / "credentials", home / ".aws" / "config"]
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in (profile, f"profile {profile}"):
            if parser.has_option(section, "region"):
                return parser.get(section, "region").strip()
    return ""


def detect_region(paths: Paths, mode: str) -> str:
    """Shared credentials profile first (only when common-config names one), then IMDS for ec2."""
    creds = read_common_config(paths)
    region = _region_from_shared_config(paths, creds) if creds.configured else ""
    if not region and mode == MODE_EC2:
        region = imds_region(paths)
    return region
