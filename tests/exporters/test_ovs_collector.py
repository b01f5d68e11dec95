"""The OVS collector's concurrency: scrapes that overlap share one collection, so
ovs-vswitchd answers one set of unixctl calls however many scrapers there are."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from exporters.ovs import collector as ovs_collector
from exporters.ovs.collector import Collection, OvsCollector
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory
from zcp.wait import wait_until


class StubReplica:
    remote = "unix:/nowhere"
    healthy = True
    connects = errors = 0
    last_change = 0.0

    def snapshot(self) -> None:
        return None


def test_concurrent_scrapes_share_one_collection(
    tmp_path: Path, default_inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def call(_ctl: str, method: str, _params: Any, _timeout: float) -> str:
        calls.append(method)
        entered.set()
        release.wait(30)  # ovs-vswitchd is slow to answer
        return ""

    monkeypatch.setattr(ovs_collector, "call", call)
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    collector = OvsCollector(StubReplica(), cache, tmp_path)  # type: ignore[arg-type]
    got: list[Collection] = []
    threads = [threading.Thread(target=lambda: got.append(collector.gather(20))) for _ in range(4)]
    threads[0].start()
    assert entered.wait(10)  # the first scrape is inside its first unixctl call
    for t in threads[1:]:
        t.start()
    assert wait_until(lambda: collector.shared_scrapes == 3, 10)  # the others joined it
    release.set()
    for t in threads:
        t.join(10)
    assert len(got) == 4 and all(c is got[0] for c in got)
    assert collector.collections == 1
    assert calls == ["dpctl/show", "coverage/show", "memory/show"]
    # the next scrape, alone, collects again
    collector.gather(5)
    assert collector.collections == 2
