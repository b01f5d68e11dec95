"""Files written so that nothing is lost on a crash and no secret is ever readable by others:
a temporary file with a unique name in the same directory, created 0600 (``mkstemp``), written
and fsynced, given its final mode, renamed over the target, the directory fsynced. Two writers
of the same path (an exporter running as root and one that is not) never share a temporary
file; a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode`` (use 0o600 for
    anything holding a secret: it is never, even for a moment, more readable than that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp made it 0600; widen only now, if asked
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700), created if needed."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
