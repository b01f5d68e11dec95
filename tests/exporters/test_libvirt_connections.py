"""The libvirt source's connections: all open or none installed, and a SIGTERM's close() never
waits for an open stuck on a hung libvirtd. Fake connections (what is tested is the source's
own locking and bookkeeping; the real libvirtd behaviour is in test_libvirt_integration)."""

from __future__ import annotations

import threading
from typing import Any

import libvirt
import pytest

from exporters.libvirt.source import LibvirtSource


class FakeConn:
    def __init__(self) -> None:
        self.closed = False

    def isAlive(self) -> bool:
        return not self.closed

    def setKeepAlive(self, *_args: Any) -> None:
        pass

    def domainEventRegisterAny(self, *_args: Any) -> int:
        return 1

    def close(self) -> int:
        self.closed = True
        return 0


def test_a_failed_extra_connection_leaves_nothing_half_open() -> None:
    made: list[FakeConn] = []
    plan = ["ok", "fail", "ok", "ok"]

    def open_conn(_uri: str) -> FakeConn:
        if plan.pop(0) == "fail":
            raise libvirt.libvirtError("too many connections")
        made.append(FakeConn())
        return made[-1]

    source = LibvirtSource("qemu:///fake", open_conn=open_conn, connections=2, procfs=False)
    with pytest.raises(libvirt.libvirtError, match="too many connections"):
        source._connection()
    assert source._conn is None and made[0].closed  # nothing kept, the one opened closed
    conn = source._connection()  # the next scrape opens both again
    assert conn is made[1] and source._extra == [made[2]] and len(source._handles) == 2
    assert source.reconnects == 1
    source.close()
    assert all(c.closed for c in made)


def test_close_does_not_wait_for_an_open_stuck_on_libvirtd() -> None:
    entered, release = threading.Event(), threading.Event()
    made: list[FakeConn] = []

    def open_conn(_uri: str) -> FakeConn:
        entered.set()
        release.wait(30)  # libvirtd does not answer
        made.append(FakeConn())
        return made[-1]

    source = LibvirtSource("qemu:///fake", open_conn=open_conn, connections=1, procfs=False)
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            source._connection()
        except libvirt.libvirtError as exc:
            errors.append(exc)

    opener = threading.Thread(target=scrape)
    opener.start()
    assert entered.wait(10)
    closer = threading.Thread(target=source.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() waited for the stuck open"
    release.set()  # libvirtd answers at last: the late connection is closed, not kept
    opener.join(10)
    assert [str(e) for e in errors] == ["the libvirt source is closed"]
    assert made and made[0].closed and source._conn is None


def test_read_only_by_default() -> None:
    assert LibvirtSource("qemu:///system", procfs=False)._open is libvirt.openReadOnly


def test_a_down_libvirtd_is_one_warning_not_one_per_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    def open_conn(_uri: str) -> FakeConn:
        raise libvirt.libvirtError("Failed to connect socket: Connection refused")

    source = LibvirtSource("qemu:///fake", open_conn=open_conn, connections=1, procfs=False)
    with caplog.at_level(logging.WARNING, logger="exporters.libvirt.source"):
        for _ in range(20):
            assert source.collect_now().error.startswith("Failed to connect socket")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warnings] == ["libvirt collection failed"]
    assert source.collection_errors == 20
