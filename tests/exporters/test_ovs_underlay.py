"""Tunnel underlays: which lookup a tunnel gets, the route cache (fed recorded real
``ovs/route/show`` and ``ovs/route/lookup`` answers), and the join with the devices' MTUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.ovs.collector import sysfs_mtu
from exporters.ovs.parse import Interface, OvsOutputError, Route
from exporters.ovs.underlay import (
    NO_MTU,
    NO_ROUTE,
    Destination,
    Lookup,
    RouteCache,
    TunnelUnderlay,
    Unresolved,
    destination,
    devices,
    summary,
    underlays,
)
from exporters.ovs.unixctl import UnixctlError, UnixctlReplyError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ovs"
TABLE = (FIXTURES / "route_show.txt").read_text()
ROUTED = {  # what the recorded OVS answered for each destination
    "192.0.2.7": (FIXTURES / "route_lookup.txt").read_text(),
    "198.51.100.7": (FIXTURES / "route_lookup_gateway.txt").read_text(),
    "2001:db8::7": (FIXTURES / "route_lookup_ipv6.txt").read_text(),
}


def tunnel(name: str, remote: str, **options: str) -> Interface:
    return Interface(name, "vxlan", "br-int", name, options={"remote_ip": remote, **options})


class FakeVswitchd:
    """Answers like the recorded ovs-vswitchd; "Not found" for any other destination."""

    def __init__(self) -> None:
        self.table = TABLE
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_lookups = False

    def __call__(self, method: str, params: list[str]) -> str:
        self.calls.append((method, params))
        if method == "ovs/route/show":
            return self.table
        if self.fail_lookups:
            raise UnixctlError("ovs-vswitchd.ctl: ovs/route/lookup: Connection refused")
        if params[0] in ROUTED and len(params) == 1:
            return ROUTED[params[0]]
        raise UnixctlReplyError("ovs-vswitchd.ctl: ovs/route/lookup: Not found", "Not found")

    def lookups(self) -> list[list[str]]:
        return [p for m, p in self.calls if m == "ovs/route/lookup"]


def test_the_lookup_a_tunnel_gets() -> None:
    assert destination(tunnel("vx0", "192.0.2.7")) == Destination("192.0.2.7")
    assert destination(tunnel("vx6", "2001:db8::7")) == Destination("2001:db8::7")
    # OVS marks the packets with egress_pkt_mark before its route lookup
    marked = destination(tunnel("vx1", "192.0.2.7", egress_pkt_mark="7"))
    assert marked is not None and marked.lookup_args() == ["192.0.2.7", "pkt_mark=7"]
    # OpenFlow sets the remote per packet: nothing to look up
    assert destination(tunnel("vxf", "flow")) is None
    assert destination(Interface("vxn", "vxlan")) is None


def test_lookups_are_made_once_while_the_routing_table_holds() -> None:
    ovs, cache = FakeVswitchd(), RouteCache()
    wanted = {Destination("192.0.2.7"), Destination("198.51.100.7")}
    first = cache.resolve(wanted, ovs)
    assert first[Destination("192.0.2.7")] == Lookup(Route("br-phy", "192.0.2.1", ""))
    assert first[Destination("198.51.100.7")].route == Route("br-phy", "192.0.2.1", "192.0.2.254")
    assert sorted(ovs.lookups()) == [["192.0.2.7"], ["198.51.100.7"]]
    # the same table: one route/show, no lookup
    ovs.calls.clear()
    assert cache.resolve(wanted, ovs) == first
    assert ovs.calls == [("ovs/route/show", [])]
    # a new destination is looked up alone; one no tunnel has any more is forgotten
    ovs.calls.clear()
    now = cache.resolve({Destination("192.0.2.7"), Destination("2001:db8::7")}, ovs)
    assert ovs.lookups() == [["2001:db8::7"]]
    assert set(now) == {Destination("192.0.2.7"), Destination("2001:db8::7")}
    # the table changed (a route added): everything is looked up again
    ovs.calls.clear()
    ovs.table = TABLE + "User: 203.0.113.0/24 dev br-phy GW 192.0.2.253 SRC 192.0.2.1\n"
    cache.resolve(now, ovs)
    assert sorted(ovs.lookups()) == [["192.0.2.7"], ["2001:db8::7"]]
    assert cache.lookups == 5
    # no tunnel destination: not even route/show
    ovs.calls.clear()
    assert cache.resolve(set(), ovs) == {} and ovs.calls == []


def test_no_route_is_an_answer_a_broken_channel_is_not() -> None:
    ovs, cache = FakeVswitchd(), RouteCache()
    got = cache.resolve({Destination("203.0.113.9"), Destination("192.0.2.7", "3")}, ovs)
    assert got[Destination("203.0.113.9")] == Lookup(None, "Not found")
    assert got[Destination("192.0.2.7", "3")] == Lookup(None, "Not found")
    ovs.table += "Cached: 10.0.0.0/8 dev br-phy SRC 192.0.2.1\n"
    ovs.fail_lookups = True
    with pytest.raises(UnixctlError, match="Connection refused"):
        cache.resolve({Destination("192.0.2.7")}, ovs)
    # nothing from the old table is kept as if it held under the new one
    ovs.fail_lookups = False
    ovs.calls.clear()
    cache.resolve({Destination("192.0.2.7")}, ovs)
    assert ovs.lookups() == [["192.0.2.7"]]


def test_unreadable_lookup_output_propagates() -> None:
    cache = RouteCache()
    with pytest.raises(OvsOutputError, match="ovs/route/lookup"):
        cache.resolve(
            {Destination("192.0.2.7")},
            lambda method, _: TABLE if method == "ovs/route/show" else "something else\n",
        )


def test_each_tunnel_gets_its_device_mtu_from_ovs_else_the_system() -> None:
    tunnels = [
        tunnel("vx-a", "192.0.2.7"),
        tunnel("vx-b", "198.51.100.7"),
        tunnel("vx-c", "203.0.113.9"),
        tunnel("vx-d", "192.0.2.8"),
        tunnel("vx-e", "192.0.2.9"),
        tunnel("vx-flow", "flow"),
    ]
    answers = {
        Destination("192.0.2.7"): Lookup(Route("br-phy", "192.0.2.1")),
        Destination("198.51.100.7"): Lookup(Route("br-phy", "192.0.2.1", "192.0.2.254")),
        Destination("203.0.113.9"): Lookup(None, "Not found"),
        Destination("192.0.2.8"): Lookup(Route("bond0.100", "192.0.2.1")),
        Destination("192.0.2.9"): Lookup(Route("eth9", "192.0.2.1")),
    }
    assert devices(answers) == {"br-phy", "bond0.100", "eth9"}
    got = underlays(tunnels, answers, {"br-phy": 9000, "vx-a": 1500}, {"bond0.100": 1600})
    assert got.resolved == [
        TunnelUnderlay("vx-a", "br-int", "192.0.2.7", "br-phy", 9000),
        TunnelUnderlay("vx-b", "br-int", "198.51.100.7", "br-phy", 9000),
        TunnelUnderlay("vx-d", "br-int", "192.0.2.8", "bond0.100", 1600),
    ]
    assert got.unresolved[NO_ROUTE] == [Unresolved("vx-c", "203.0.113.9", "Not found")]
    assert [u.interface for u in got.unresolved[NO_MTU]] == ["vx-e"]
    assert "eth9 is neither an OVS interface" in got.unresolved[NO_MTU][0].why


def test_the_log_line_names_the_first_tunnels_only() -> None:
    many = [Unresolved(f"vx{n:02}", f"203.0.113.{n}", "Not found") for n in range(12, 0, -1)]
    line = summary(many, limit=3)
    assert line == (
        "vx01 to 203.0.113.1: Not found, vx02 to 203.0.113.2: Not found, "
        "vx03 to 203.0.113.3: Not found, and 9 more"
    )


def test_sysfs_mtu(tmp_path: Path) -> None:
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth1" / "mtu").write_text("9000\n")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "mtu").write_text("many\n")
    assert sysfs_mtu("eth1", tmp_path) == 9000
    assert sysfs_mtu("eth2", tmp_path) is None  # in another network namespace, or gone
    assert sysfs_mtu("odd", tmp_path) is None
    assert sysfs_mtu("../eth1", tmp_path) is None and sysfs_mtu("", tmp_path) is None
    assert sysfs_mtu("lo") == 65536  # the real one
