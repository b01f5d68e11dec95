"""The OVS exporter against a real ovsdb-server + ovs-vswitchd (userspace datapath) with real
traffic between two network namespaces, and a VXLAN tunnel over a real underlay (``br-phy``)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporters.http import ExporterServer
from exporters.ovs import OvsCollector, OvsdbReplica
from exporters.ovs.collector import sysfs_mtu
from lab.ovs import UNDERLAY_BRIDGE, UNDERLAY_MTU, OvsLab
from tests.samples import Samples, parse, series, value, wait_until
from tests.support import need_binary
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory

pytestmark = pytest.mark.integration
BR = "br-zcp"
UNDERLAY_MTU_SERIES = "ovs_tunnel_underlay_mtu_bytes"


class Exporter:
    def __init__(
        self,
        lab: OvsLab,
        inventory: Inventory,
        call_timeout: float = 2.0,
        device_mtu: Callable[[str], int | None] | None = None,
    ) -> None:
        self.cache = InventoryCache(lambda: inventory, refresh_interval=3600)
        self.cache.refresh()
        self.replica = OvsdbReplica(lab.db).start()
        self.collector = OvsCollector(
            self.replica,
            self.cache,
            lab.workdir,
            str(lab.vswitchd_ctl),
            call_timeout=call_timeout,
            device_mtu=device_mtu or sysfs_mtu,
        )
        self.server = ExporterServer("ovs", self.collector, "127.0.0.1", 0, 8.0).start()
        self.url = f"http://127.0.0.1:{self.server.port}/metrics"
        wait_until(lambda: self.replica.connected, timeout=20, interval=0.1)

    def text(self) -> str:
        resp = requests.get(self.url, timeout=30)
        resp.raise_for_status()
        return resp.text

    def scrape(self) -> Samples:
        return parse(self.text())

    def close(self) -> None:
        self.server.shutdown()
        self.replica.stop()


@pytest.fixture(scope="module")
def topo(ovs_lab: OvsLab, default_inventory: Inventory) -> dict[str, Any]:
    """A bridge with two "VM" ports (one a CloudStack NIC), an internal port, a VXLAN tunnel
    with BFD towards a peer that does not exist over the lab's underlay (``br-phy``, routed
    192.0.2.0/24), and an interface of an unknown type."""
    need_binary("ping", "iputils-ping")
    web1 = next(v for v in default_inventory.vms if v.name == "web-1")
    nic = next(n for n in default_inventory.nics if n.vm_id == web1.id)
    ovs_lab.add_bridge(BR)
    ns0 = ovs_lab.add_vm_port(
        BR, "vnet10", "10.77.0.1/24", vm_id=web1.id, iface_id=nic.id, mac=nic.mac
    )
    ns1 = ovs_lab.add_vm_port(
        BR,
        "vnet11",
        "10.77.0.2/24",
        vm_id="stranger-vm",
        iface_id="stranger-nic",
        mac="02:00:00:77:00:02",
    )
    ovs_lab.add_internal_port(BR, "mgmt0")
    ovs_lab.add_tunnel(BR, "vx-kvm02", "192.0.2.12", key="5001", bfd=True)
    ovs_lab.vsctl("add-port", BR, "odd0", "--", "set", "Interface", "odd0", "type=bogus")
    ovs_lab.ping(ns0, "10.77.0.2", count=2)  # ARP settled
    return {"ns0": ns0, "ns1": ns1, "vm": web1.id, "nic": nic.id, "mac": nic.mac}


@pytest.fixture
def exporter(
    ovs_lab: OvsLab, default_inventory: Inventory, topo: dict[str, Any]
) -> Iterator[Exporter]:
    exp = Exporter(ovs_lab, default_inventory)
    yield exp
    exp.close()


def cli_stats(lab: OvsLab, iface: str) -> dict[str, int]:
    out = lab.vsctl("get", "Interface", iface, "statistics").strip().strip("{}")
    return {k: int(v) for k, v in (kv.split("=") for kv in out.split(", ") if "=" in kv)}


def scrape_until(exporter: Exporter, ok: Callable[[Samples], bool], timeout: float = 15) -> Samples:
    """The first scrape for which ``ok`` holds (polled); fails with the last one's story."""
    last: list[Samples] = []

    def attempt() -> Samples | None:
        last[:] = [exporter.scrape()]
        return last[0] if ok(last[0]) else None

    got = wait_until(attempt, timeout, interval=0.2)
    assert got is not None, f"never seen within {timeout}s; last scrape had " + str(
        {k: v for k, v in last[0].items() if k[0].startswith("ovs_tunnel_underlay")}
    )
    return got


def underlay_mtu(samples: Samples, tunnel: str) -> float | None:
    found = [
        v
        for (n, ls), v in samples.items()
        if n == UNDERLAY_MTU_SERIES and ("interface", tunnel) in ls
    ]
    return found[0] if len(found) == 1 else None


def set_mtu_request(lab: OvsLab, iface: str, mtu: int) -> None:
    lab.vsctl("set", "Interface", iface, f"mtu_request={mtu}")
    assert wait_until(lambda: lab.device_mtu(iface) == mtu, 10), f"{iface} never got MTU {mtu}"


def test_counters_move_by_the_traffic_sent(
    exporter: Exporter, ovs_lab: OvsLab, topo: dict[str, Any]
) -> None:
    ovs_lab.wait_stats()
    before = exporter.scrape()
    count, size = 20, 400
    ovs_lab.ping(topo["ns0"], "10.77.0.2", count=count, size=size)
    ovs_lab.wait_stats()
    # the switch's own counters, read around the scrape until nothing moved in between (a
    # stray IPv6 router solicitation or ARP from the namespace can land at any time)
    for _ in range(20):
        cli = cli_stats(ovs_lab, "vnet10")
        after = exporter.scrape()
        if cli_stats(ovs_lab, "vnet10") == cli:
            break
    else:
        raise AssertionError("vnet10's counters never held still over one scrape")

    def delta(name: str, iface: str) -> float:
        return value(after, name, interface=iface) - value(before, name, interface=iface)

    frame = size + 8 + 20 + 14  # ICMP payload + ICMP + IPv4 + Ethernet headers
    # vnet10 receives (from the VM into the switch) the echo requests, vnet11 sends them on
    for name, iface in (
        ("ovs_interface_receive_packets_total", "vnet10"),
        ("ovs_interface_transmit_packets_total", "vnet11"),
        ("ovs_interface_transmit_packets_total", "vnet10"),
    ):
        # plus the odd ARP exchange
        assert count <= delta(name, iface) <= count + 10, (name, iface, delta(name, iface))
    assert (
        count * frame
        <= delta("ovs_interface_receive_bytes_total", "vnet10")
        <= count * frame + 10 * 100
    )
    # the same numbers ovs-vsctl shows, read while they held still
    assert (
        value(after, "ovs_interface_receive_packets_total", interface="vnet10") == cli["rx_packets"]
    )
    assert value(after, "ovs_interface_transmit_bytes_total", interface="vnet10") == cli["tx_bytes"]
    assert value(after, "ovs_interface_receive_errors_total", interface="vnet10") == 0


def test_ports_carry_stable_ids_and_cloudstack_identity(
    exporter: Exporter, topo: dict[str, Any]
) -> None:
    samples = exporter.scrape()
    (port,) = series(samples, "ovs_interface_link_up", interface="vnet10")
    assert port == {
        "interface": "vnet10",
        "bridge": BR,
        "type": "system",
        "vm_id": topo["vm"],
        "iface_id": topo["nic"],
        "attached_mac": topo["mac"],
        "nic_id": topo["nic"],
    }
    (stranger,) = series(samples, "ovs_interface_link_up", interface="vnet11")
    assert stranger["vm_id"] == "stranger-vm" and stranger["nic_id"] == ""
    assert value(samples, "ovs_interface_link_up", interface="vnet10") == 1
    assert value(samples, "ovs_interface_mtu_bytes", interface="vnet10") == 1500
    assert value(samples, "ovs_interface_ofport", interface="vnet10") >= 1
    assert series(samples, "zcp_nic_info", nic_id=topo["nic"], vm_id=topo["vm"])
    assert value(samples, "ovs_bridge_ports", bridge=BR) >= 5
    (br,) = series(samples, "ovs_bridge_info", bridge=BR)
    assert br["datapath_type"] == "netdev"


def test_tunnels_and_an_unknown_interface_type(exporter: Exporter) -> None:
    samples = exporter.scrape()
    (tun,) = series(samples, "ovs_tunnel_info", interface="vx-kvm02")
    assert tun == {
        "interface": "vx-kvm02",
        "bridge": BR,
        "type": "vxlan",
        "remote_ip": "192.0.2.12",
        "local_ip": "",
        "key": "5001",
    }
    # BFD is enabled and the peer does not exist: the tunnel cannot forward
    assert value(samples, "ovs_interface_bfd_up", interface="vx-kvm02") == 0
    assert value(samples, "ovs_interface_bfd_forwarding", interface="vx-kvm02") == 0
    # OVS cannot open an interface of an unknown type: it says so, the rest is unaffected
    (odd,) = series(samples, "ovs_interface_error", interface="odd0")
    assert odd["type"] == "bogus" and "could not open network device odd0" in odd["error"]
    assert value(samples, "ovs_collector_success", collector="ovsdb") == 1


def test_datapath_coverage_and_memory(exporter: Exporter) -> None:
    samples = exporter.scrape()
    assert value(samples, "ovs_up") == 1
    for source in ("ovsdb", "datapath", "coverage", "memory", "underlay"):
        assert value(samples, "ovs_collector_success", collector=source) == 1
    dp = "netdev@ovs-netdev"
    assert value(samples, "ovs_datapath_lookups_hit_total", datapath=dp) > 0
    assert value(samples, "ovs_datapath_lookups_missed_total", datapath=dp) > 0
    assert value(samples, "ovs_datapath_flows", datapath=dp) >= 0
    assert value(samples, "ovs_coverage_total", event="bridge_reconfigure") > 0
    assert value(samples, "ovs_vswitchd_objects", kind="ports") >= 5
    assert value(samples, "ovs_vswitchd_resident_memory_bytes") > 1024 * 1024


def test_exposition_passes_promtool(exporter: Exporter) -> None:
    need_binary("promtool", "prometheus")
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exporter.text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_removed_port_loses_only_its_own_series(exporter: Exporter, ovs_lab: OvsLab) -> None:
    ovs_lab.add_internal_port(BR, "tmp0")
    assert wait_until(
        lambda: series(exporter.scrape(), "ovs_interface_link_up", interface="tmp0"), timeout=10
    ), "tmp0 never appeared"
    ovs_lab.del_port(BR, "tmp0")

    def gone() -> Samples | None:
        s = exporter.scrape()
        return None if series(s, "ovs_interface_link_up", interface="tmp0") else s

    samples = wait_until(gone, timeout=10)
    assert samples is not None, "tmp0 never went away"
    assert series(samples, "ovs_interface_link_up", interface="vnet10")
    assert value(samples, "ovs_up") == 1


def test_ovsdb_restart_costs_only_the_ovsdb_part(exporter: Exporter, ovs_lab: OvsLab) -> None:
    assert value(exporter.scrape(), "ovs_collector_success", collector="ovsdb") == 1
    ovs_lab.stop_ovsdb()
    try:
        # the replica notices the lost connection on its own thread, within its loop's turn:
        # poll for the first scrape that shows it, never assume it is already there
        def noticed() -> Samples | None:
            s = exporter.scrape()
            return s if value(s, "ovs_collector_success", collector="ovsdb") == 0 else None

        samples = wait_until(noticed, timeout=20, interval=0.1)
        assert samples is not None, "the replica never noticed that ovsdb-server stopped"
        assert value(samples, "ovs_up") == 0
        assert not series(samples, "ovs_interface_link_up")
        assert value(samples, "ovs_collector_success", collector="datapath") == 1
        assert value(samples, "ovs_datapath_lookups_hit_total", datapath="netdev@ovs-netdev")
    finally:
        ovs_lab.start_ovsdb()

    def reconnected() -> Samples | None:
        s = exporter.scrape()
        return s if value(s, "ovs_collector_success", collector="ovsdb") == 1 else None

    back = wait_until(reconnected, timeout=30, interval=0.3)
    assert back is not None, "never reconnected to ovsdb-server"
    assert series(back, "ovs_interface_link_up", interface="vnet10")
    assert value(back, "ovs_exporter_ovsdb_connects_total") >= 2


def test_hung_vswitchd_costs_one_deadline_not_the_scrape(
    ovs_lab: OvsLab, default_inventory: Inventory
) -> None:
    exp = Exporter(ovs_lab, default_inventory, call_timeout=1.0)
    assert ovs_lab.vswitchd is not None and ovs_lab.vswitchd.pid is not None
    pid = ovs_lab.vswitchd.pid
    # `ip netns exec` execs ovs-vswitchd: the child's pid is the daemon's
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "ovs-vswitchd"
    try:
        ovs_lab.vswitchd.signal(signal.SIGSTOP)
        t0 = time.monotonic()
        samples = exp.scrape()
        elapsed = time.monotonic() - t0
        ovs_lab.vswitchd.signal(signal.SIGCONT)
        assert elapsed < 4, elapsed  # one 1 s call deadline, the other calls skipped
        assert value(samples, "ovs_collector_success", collector="datapath") == 0
        assert value(samples, "ovs_collector_success", collector="memory") == 0
        assert value(samples, "ovs_collector_success", collector="ovsdb") == 1
        assert series(samples, "ovs_interface_link_up", interface="vnet10")
        assert value(samples, "ovs_up") == 0
        samples = exp.scrape()
        assert value(samples, "ovs_up") == 1
    finally:
        ovs_lab.vswitchd.signal(signal.SIGCONT)
        exp.close()


def test_an_error_in_the_replica_thread_is_survived(exporter: Exporter) -> None:
    """Before, the replica thread's loop caught nothing: one exception killed it and the
    exporter served the last data as fresh forever. Now it starts over and counts it."""
    replica = exporter.replica
    idl = replica._idl
    real_run = idl.run
    calls = [0]

    def broken_run() -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("a bug in the IDL")
        return real_run()

    idl.run = broken_run
    assert wait_until(lambda: replica.errors >= 1, 10)
    assert wait_until(lambda: replica.connected and replica._idl is not idl, 20)
    got = exporter.scrape()
    assert value(got, "ovs_up") == 1 and value(got, "ovs_exporter_replica_up") == 1
    assert value(got, "ovs_exporter_replica_errors_total") >= 1
    assert series(got, "ovs_interface_link_up")


def test_a_stuck_replica_is_not_served_as_fresh(
    ovs_lab: OvsLab, default_inventory: Inventory, topo: dict[str, Any]
) -> None:
    """A replica thread stuck inside the IDL: within its bound the exporter says so (replica
    down, ovs_up 0, no stale port data) and scrapes still answer; released, it recovers."""
    exp = Exporter(ovs_lab, default_inventory)
    try:
        exp.replica.stuck_after = 2.0
        release = threading.Event()
        idl = exp.replica._idl
        real_run = idl.run

        def stuck_run() -> Any:
            release.wait(60)
            return real_run()

        idl.run = stuck_run
        assert wait_until(lambda: not exp.replica.healthy, 10)
        t = time.monotonic()
        got = exp.scrape()
        assert time.monotonic() - t < 5  # the scrape does not wait for the stuck thread
        assert value(got, "ovs_exporter_replica_up") == 0 and value(got, "ovs_up") == 0
        assert value(got, "ovs_collector_success", collector="ovsdb") == 0
        assert not series(got, "ovs_interface_link_up")  # nothing stale served
        release.set()
        idl.run = real_run
        assert wait_until(lambda: exp.replica.healthy and exp.replica.connected, 10)
        assert value(exp.scrape(), "ovs_up") == 1
    finally:
        release.set()
        exp.close()


def test_tunnel_underlay_mtu_is_the_routed_devices_real_mtu_and_follows_it(
    exporter: Exporter, ovs_lab: OvsLab
) -> None:
    # OVS itself says where the tunnel's packets go
    route = ovs_lab.appctl("ovs/route/lookup", "192.0.2.12")
    assert f"dev {UNDERLAY_BRIDGE}" in route, route
    real = ovs_lab.device_mtu(UNDERLAY_BRIDGE)
    assert real == UNDERLAY_MTU
    samples = scrape_until(exporter, lambda s: underlay_mtu(s, "vx-kvm02") == real)
    assert series(samples, UNDERLAY_MTU_SERIES, interface="vx-kvm02") == [
        {"interface": "vx-kvm02", "bridge": BR, "remote_ip": "192.0.2.12", "underlay": "br-phy"}
    ]
    assert value(samples, "ovs_tunnel_underlay_unresolved", reason="no_route") == 0
    try:
        set_mtu_request(ovs_lab, UNDERLAY_BRIDGE, 1400)
        scrape_until(exporter, lambda s: underlay_mtu(s, "vx-kvm02") == 1400)
    finally:
        set_mtu_request(ovs_lab, UNDERLAY_BRIDGE, UNDERLAY_MTU)
    scrape_until(exporter, lambda s: underlay_mtu(s, "vx-kvm02") == UNDERLAY_MTU)


def test_a_tunnel_without_a_route_is_counted_then_resolved_when_a_route_comes(
    exporter: Exporter, ovs_lab: OvsLab
) -> None:
    ovs_lab.add_tunnel(BR, "vx-nowhere", "198.51.100.9", key="5002")
    try:
        got = scrape_until(
            exporter,
            lambda s: value(s, "ovs_tunnel_underlay_unresolved", reason="no_route") == 1,
        )
        assert underlay_mtu(got, "vx-nowhere") is None
        assert underlay_mtu(got, "vx-kvm02") == UNDERLAY_MTU  # the other tunnel is unaffected
        assert value(got, "ovs_collector_success", collector="underlay") == 1
        # OVS's table changes (a route of its own, as userspace tunneling setups add one):
        # the exporter looks again, without being told
        ovs_lab.appctl("ovs/route/add", "198.51.100.0/24", UNDERLAY_BRIDGE, "192.0.2.254")
        got = scrape_until(exporter, lambda s: underlay_mtu(s, "vx-nowhere") == UNDERLAY_MTU)
        assert series(got, UNDERLAY_MTU_SERIES, interface="vx-nowhere")[0]["underlay"] == "br-phy"
        assert value(got, "ovs_tunnel_underlay_unresolved", reason="no_route") == 0

        # while the table holds, a scrape makes no lookup (polled: a link-local address
        # appearing in the switch's namespace changes the table too)
        def lookups() -> float:
            return value(exporter.scrape(), "ovs_exporter_route_lookups_total")

        assert wait_until(lambda: lookups() == lookups(), 10)
    finally:
        ovs_lab.appctl("ovs/route/del", "198.51.100.0/24")
        ovs_lab.del_port(BR, "vx-nowhere")
    scrape_until(
        exporter, lambda s: value(s, "ovs_tunnel_underlay_unresolved", reason="no_route") == 0
    )


def test_an_underlay_outside_ovs_needs_the_switchs_network_namespace(
    ovs_lab: OvsLab, default_inventory: Inventory, topo: dict[str, Any]
) -> None:
    """A route out of a device OVS does not own: its MTU comes from /sys/class/net, which
    shows the exporter's own namespace. Here ovs-vswitchd runs in another one: unresolved
    (no_mtu), unless the exporter reads the switch's namespace (as it does in production,
    where both run on the host)."""

    def switch_sysfs_mtu(device: str) -> int | None:
        cat = ovs_lab.in_switch_ns("cat", f"/sys/class/net/{device}/mtu", check=False)
        return int(cat.stdout) if cat.returncode == 0 else None

    exporters: list[Exporter] = []
    try:
        ovs_lab.in_switch_ns(
            "ip", "link", "add", "ul-a", "mtu", "1600", "type", "veth", "peer", "name", "ul-b"
        )
        ovs_lab.in_switch_ns("ip", "addr", "add", "203.0.113.1/24", "dev", "ul-a")
        ovs_lab.in_switch_ns("ip", "link", "set", "ul-b", "up")
        ovs_lab.in_switch_ns("ip", "link", "set", "ul-a", "up")
        ovs_lab.add_tunnel(BR, "vx-outside", "203.0.113.9", key="5003")
        exporters.append(host_ns := Exporter(ovs_lab, default_inventory))
        exporters.append(
            switch_ns := Exporter(ovs_lab, default_inventory, device_mtu=switch_sysfs_mtu)
        )
        got = scrape_until(
            host_ns, lambda s: value(s, "ovs_tunnel_underlay_unresolved", reason="no_mtu") == 1
        )
        assert underlay_mtu(got, "vx-outside") is None
        got = scrape_until(switch_ns, lambda s: underlay_mtu(s, "vx-outside") == 1600)
        assert series(got, UNDERLAY_MTU_SERIES, interface="vx-outside")[0]["underlay"] == "ul-a"
        assert value(got, "ovs_tunnel_underlay_unresolved", reason="no_mtu") == 0
    finally:
        for exp in exporters:
            exp.close()
        ovs_lab.del_port(BR, "vx-outside")
        ovs_lab.in_switch_ns("ip", "link", "delete", "ul-a", check=False)


def test_a_vm_port_mtu_change_shows_with_its_vm(
    exporter: Exporter, ovs_lab: OvsLab, topo: dict[str, Any]
) -> None:
    def port_mtu(s: Samples) -> float:
        return value(s, "ovs_interface_mtu_bytes", interface="vnet10")

    try:
        set_mtu_request(ovs_lab, "vnet10", 9000)
        got = scrape_until(exporter, lambda s: port_mtu(s) == 9000)
        (port,) = series(got, "ovs_interface_mtu_bytes", interface="vnet10")
        assert port["vm_id"] == topo["vm"] and port["nic_id"] == topo["nic"]
    finally:
        set_mtu_request(ovs_lab, "vnet10", 1500)
        ovs_lab.vsctl("clear", "Interface", "vnet10", "mtu_request")  # as it was made
    scrape_until(exporter, lambda s: port_mtu(s) == 1500)
