"""Atomic writes: the new content or the old, never a torn file; secrets 0600 from the start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zcp.files import private_dir, write_atomic


def test_a_secret_file_is_private_from_creation(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("old")
    path.chmod(0o644)
    old = os.open(path, os.O_RDONLY)  # a reader holding the old file sees the old content
    try:
        write_atomic(path, "secret: 1\n", 0o600)
        assert os.read(old, 100) == b"old"
    finally:
        os.close(old)
    assert path.read_text() == "secret: 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, b"public\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_private_dir(tmp_path: Path) -> None:
    d = private_dir(tmp_path / "work")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
