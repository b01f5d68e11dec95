"""Is a program installed? The one check the demo, the lab and the tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

from zcp.errors import MissingProgramError


def missing(*names: str) -> str:
    """Why the programs ``names`` (or paths such as ``/dev/kvm``) cannot be used here: the
    first one absent, as a reason; ``""`` if all are present."""
    for name in names:
        if name.startswith("/"):
            if not Path(name).exists():
                return f"{name} missing"
        elif shutil.which(name) is None:
            return f"{name} not installed"
    return ""


def require(name: str, package: str) -> str:
    """Path of ``name`` on PATH, or an error naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise MissingProgramError(f"{name} not found: install the Debian package {package}")
    return path
