"""lab/stack.py: everything started is stopped, in reverse order, even when a stop fails."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from lab.stack import Stack, write_private
from zcp.errors import DaemonError


def test_every_stop_runs_in_reverse_order_even_when_one_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stopped: list[str] = []

    def failing() -> None:
        stopped.append("b")
        raise DaemonError("b would not stop")

    stack = Stack(tmp_path)
    stack.on_close("a", lambda: stopped.append("a"))
    stack.on_close("b", failing)
    stack.on_close("c", lambda: stopped.append("c"))
    with caplog.at_level(logging.ERROR):
        stack.close()
    assert stopped == ["c", "b", "a"]
    assert [(r.getMessage(), getattr(r, "what", "")) for r in caplog.records] == [
        ("stop failed", "b")
    ]


def test_exporters_need_the_inventory_service_first(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack, pytest.raises(DaemonError, match="inventory service"):
        stack.hypervisor_config()


def test_configs_are_written_private(tmp_path: Path) -> None:
    path = write_private(tmp_path / "c.yaml", {"cloudstack": {"secret_key": "s"}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "secret_key: s" in path.read_text()
