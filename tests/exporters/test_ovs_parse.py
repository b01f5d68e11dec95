"""The OVS exporter's parsing core on recorded real ovs-vswitchd output (tests/fixtures/ovs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.ovs.parse import (
    OvsOutputError,
    Route,
    interface_from_row,
    parse_coverage,
    parse_dpctl_show,
    parse_memory,
    parse_route_lookup,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ovs"


def test_dpctl_show_of_the_userspace_datapath() -> None:
    (dp,) = parse_dpctl_show((FIXTURES / "dpctl_show.txt").read_text())
    assert (dp.name, dp.hit, dp.missed, dp.lost, dp.flows) == ("netdev@ovs-netdev", 15, 13, 0, 11)
    assert dp.masks_hit is None and dp.masks_total is None  # netdev prints no masks line


def test_dpctl_show_of_the_kernel_datapath_with_masks() -> None:
    # the kernel datapath's form (documented in ovs-dpctl(8)), appended to the real one
    text = (FIXTURES / "dpctl_show.txt").read_text() + (
        "system@ovs-system:\n  lookups: hit:1000 missed:20 lost:3\n  flows: 7\n"
        "  masks: hit:1500 total:4 hit/pkt:1.46\n  port 0: ovs-system (internal)\n"
    )
    dps = {d.name: d for d in parse_dpctl_show(text)}
    kernel = dps["system@ovs-system"]
    assert (kernel.hit, kernel.missed, kernel.lost, kernel.flows) == (1000, 20, 3, 7)
    assert (kernel.masks_hit, kernel.masks_total) == (1500, 4)
    assert dps["netdev@ovs-netdev"].hit == 15


def test_coverage_totals() -> None:
    text = (FIXTURES / "coverage_show.txt").read_text()
    cov = parse_coverage(text)
    assert cov["bridge_reconfigure"] == 20 and cov["ofproto_update_port"] == 11
    listed = [line for line in text.splitlines() if "total:" in line]
    assert len(cov) == len(listed) > 10
    assert "Event" not in cov and all(v >= 0 for v in cov.values())


def test_memory_object_counts() -> None:
    mem = parse_memory((FIXTURES / "memory_show.txt").read_text())
    assert mem == {
        "handlers": 1,
        "idl_cells_Open_vSwitch": 324,
        "ports": 5,
        "revalidators": 1,
        "rules": 5,
        "udpif_keys": 11,
    }


def test_interface_row_as_the_idl_gives_it() -> None:
    row = {
        "name": "vnet0",
        "type": "",
        "link_state": "up",
        "admin_state": "down",
        "mtu": 1500,
        "ofport": 3,
        "link_resets": 2,
        "error": None,
        "cfm_fault": None,
        "statistics": {"rx_bytes": 852, "tx_packets": 16, "rx_crc_err": 0},
        "external_ids": {"vm-id": "vm-a", "iface-id": "nic-a", "attached-mac": "02:00:00:00:00:0A"},
        "options": {},
        "bfd_status": {},
    }
    i = interface_from_row(row, "br-int", "vnet0")
    assert (i.type, i.link_up, i.admin_up, i.mtu, i.ofport, i.link_resets) == (
        "system",
        1,
        0,
        1500,
        3,
        2,
    )
    assert (i.vm_id, i.iface_id, i.attached_mac) == ("vm-a", "nic-a", "02:00:00:00:00:0a")
    assert i.stats == {"rx_bytes": 852, "tx_packets": 16, "rx_crc_err": 0}
    assert not i.tunnel


def test_interface_row_with_missing_columns_and_odd_values() -> None:
    # a row mid-creation: no statistics yet, link state unknown, ofport not assigned
    i = interface_from_row(
        {
            "name": "vx0",
            "type": "vxlan",
            "link_state": None,
            "ofport": None,
            "statistics": None,
            "options": {"remote_ip": "192.0.2.7", "key": "flow"},
            "bfd_status": {"state": "down", "forwarding": "false"},
            "cfm_fault": True,
            "mtu": "weird",
        }
    )
    assert i.tunnel and i.link_up is None and i.ofport is None and i.mtu is None
    assert i.stats == {} and i.cfm_fault == 1 and i.bfd["state"] == "down"
    assert i.options["remote_ip"] == "192.0.2.7"


def test_route_lookup_on_the_underlay_subnet_through_a_gateway_and_over_ipv6() -> None:
    def lookup(name: str) -> Route:
        return parse_route_lookup((FIXTURES / f"{name}.txt").read_text())

    # "gateway ::" is how OVS says there is none
    assert lookup("route_lookup") == Route("br-phy", "192.0.2.1", "")
    assert lookup("route_lookup_gateway") == Route("br-phy", "192.0.2.1", "192.0.2.254")
    assert lookup("route_lookup_ipv6") == Route("br-phy", "2001:db8::1", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Not found\n",
        "src 192.0.2.1\ngateway ::\n",  # no device
        "src 192.0.2.1\ngateway ::\ndev\n",
        "src 192.0.2.1\ngateway ::\ndev ../../etc\n",  # would escape /sys/class/net
        "src 192.0.2.1\ngateway ::\ndev ..\n",
    ],
)
def test_route_lookup_that_is_not_an_answer_is_one_clear_error(text: str) -> None:
    with pytest.raises(OvsOutputError, match=r"^ovs/route/lookup: expected src/gateway/dev") as e:
        parse_route_lookup(text)
    assert "\n" not in str(e.value)  # one line, the answer quoted
