"""The OVS collector without daemons: scrapes that overlap share one collection, so
ovs-vswitchd answers one set of unixctl calls however many scrapers there are; the tunnels'
underlay source on recorded ovs-vswitchd answers."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from exporters.ovs import collector as ovs_collector
from exporters.ovs.collector import Collection, OvsCollector
from exporters.ovs.parse import Interface
from exporters.ovs.replica import Snapshot
from exporters.ovs.unixctl import UnixctlReplyError
from tests.samples import from_families, series, value
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory
from zcp.wait import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ovs"


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


class SnapshotReplica:
    remote = "unix:/db.sock"
    healthy = True
    connects = errors = 0
    last_change = 0.0

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def snapshot(self) -> Snapshot:
        return self.snap


def test_tunnel_underlays_from_recorded_answers(
    tmp_path: Path,
    default_inventory: Inventory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    answers = {
        ("ovs/route/show",): (FIXTURES / "route_show.txt").read_text(),
        ("ovs/route/lookup", "192.0.2.7"): (FIXTURES / "route_lookup.txt").read_text(),
        ("ovs/route/lookup", "198.51.100.7"): (FIXTURES / "route_lookup_gateway.txt").read_text(),
        ("ovs/route/lookup", "198.51.100.8"): "src 192.0.2.1\ngateway ::\ndev eth7\n",
        ("ovs/route/lookup", "192.0.2.99"): "Usage: who knows\n",
    }
    calls: list[tuple[str, ...]] = []

    def call(_ctl: str, method: str, params: list[str], _timeout: float) -> str:
        calls.append((method, *params))
        if method in ("dpctl/show", "coverage/show", "memory/show"):
            return ""
        if (method, *params) in answers:
            return answers[(method, *params)]
        raise UnixctlReplyError(f"ctl: {method}: Not found", "Not found")

    monkeypatch.setattr(ovs_collector, "call", call)
    tunnels = [
        Interface("vx-a", "vxlan", "br-int", options={"remote_ip": "192.0.2.7"}),
        Interface("vx-b", "geneve", "br-int", options={"remote_ip": "198.51.100.7"}),
        Interface("vx-c", "vxlan", "br-int", options={"remote_ip": "203.0.113.9"}),
        Interface("vx-d", "gre", "br-tun", options={"remote_ip": "198.51.100.8"}),
        Interface("vx-flow", "vxlan", "br-int", options={"remote_ip": "flow"}),
    ]
    snap = Snapshot(interfaces=[*tunnels, Interface("br-phy", "internal", "br-phy", mtu=9000)])
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    sysfs = {"eth7": 1550}
    collector = OvsCollector(
        SnapshotReplica(snap),  # type: ignore[arg-type]
        cache,
        tmp_path,
        device_mtu=sysfs.get,
    )
    with caplog.at_level(logging.INFO, logger="exporters.ovs.collector"):
        got = from_families(collector.collect(5))
        assert value(got, "ovs_collector_success", collector="underlay") == 1
        mtu = "ovs_tunnel_underlay_mtu_bytes"
        assert series(got, mtu) == [
            {
                "interface": "vx-a",
                "bridge": "br-int",
                "remote_ip": "192.0.2.7",
                "underlay": "br-phy",
            },
            {
                "interface": "vx-b",
                "bridge": "br-int",
                "remote_ip": "198.51.100.7",
                "underlay": "br-phy",
            },
            {
                "interface": "vx-d",
                "bridge": "br-tun",
                "remote_ip": "198.51.100.8",
                "underlay": "eth7",
            },
        ]
        assert value(got, mtu, interface="vx-a") == 9000  # from the OVS Interface
        assert value(got, mtu, interface="vx-d") == 1550  # not in OVS: from the system
        assert value(got, "ovs_tunnel_underlay_unresolved", reason="no_route") == 1
        assert value(got, "ovs_tunnel_underlay_unresolved", reason="no_mtu") == 0
        assert value(got, "ovs_exporter_route_lookups_total") == 4
        # the next scrapes: the table is the same, so no lookup; vx-c is logged once
        for _ in range(3):
            calls.clear()
            again = from_families(collector.collect(5))
            assert [c for c in calls if c[0].startswith("ovs/")] == [("ovs/route/show",)]
        assert value(again, "ovs_exporter_route_lookups_total") == 4
        warned = [r for r in caplog.records if r.msg == "ovs tunnel underlay unresolved"]
        assert len(warned) == 1 and warned[0].__dict__["source"] == "no_route"
        assert warned[0].__dict__["error"] == "vx-c to 203.0.113.9: Not found"
        # eth7 goes away (or was never in this namespace): no_mtu, vx-d's series gone
        del sysfs["eth7"]
        gone = from_families(collector.collect(5))
        assert not series(gone, mtu, interface="vx-d")
        assert value(gone, "ovs_tunnel_underlay_unresolved", reason="no_mtu") == 1
        # an answer that is not one fails the underlay source only, with one clear line
        snap.interfaces.append(
            Interface("vx-e", "vxlan", "br-int", options={"remote_ip": "192.0.2.99"})
        )
        bad = from_families(collector.collect(5))
    assert value(bad, "ovs_collector_success", collector="underlay") == 0
    assert value(bad, "ovs_collector_success", collector="ovsdb") == 1
    assert not series(bad, mtu) and not series(bad, "ovs_tunnel_underlay_unresolved")
    (failed,) = [r for r in caplog.records if r.__dict__.get("source") == "underlay"]
    assert failed.__dict__["error"].startswith("ovs/route/lookup: expected src/gateway/dev")
    assert failed.exc_info is None
