"""Helpers test modules import (conftest.py holds only fixtures and hooks): the lab's CloudStack
keys and the "is this daemon installed" checks."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

from zcp.binaries import missing

ADMIN_KEY, ADMIN_SECRET = "admin-api-key", "admin-secret-key"
MIB = 1024 * 1024


def unavailable(message: str) -> NoReturn:
    """A daemon a test needs is missing: a failure in CI, a skip (saying why) elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def need_binary(name: str, package: str) -> str:
    """Path of a daemon's binary (see :func:`unavailable` when it is not installed)."""
    reason = missing(name)
    if reason:
        unavailable(f"{reason}: install Debian package {package} (make test does)")
    return str(shutil.which(name))
