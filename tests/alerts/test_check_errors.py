"""`alerts check` when a tool hangs: one line naming it, not a TimeoutExpired traceback."""

from __future__ import annotations

import os
from dataclasses import astuple
from pathlib import Path

import pytest

from alerts.build import Built, check
from zcp.errors import ZcpError


def test_a_hanging_promtool_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("promtool", "amtool"):
        script = bin_dir / tool
        script.write_text("#!/bin/sh\nexec sleep 60\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    for path in astuple(Built.at(out)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[]\n")
    with pytest.raises(ZcpError) as exc:
        check(out, timeout=0.5)
    assert str(exc.value) == "promtool check rules did not finish within 0.5 s"
