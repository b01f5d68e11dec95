"""Pure parsing core of the OVS exporter: OVSDB rows and ovs-vswitchd's unixctl text in, plain
records out. Tests feed it recorded real output (tests/fixtures/ovs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from zcp.errors import ZcpError


class OvsOutputError(ZcpError):
    """ovs-vswitchd answered something that is not what Open vSwitch 3.1 prints."""


TUNNEL_TYPES = frozenset(
    {
        "vxlan",
        "geneve",
        "gre",
        "stt",
        "lisp",
        "erspan",
        "ip6gre",
        "ip6erspan",
        "gtpu",
        "bareudp",
        "srv6",
    }
)
# OVSDB Interface.statistics key -> (family suffix, direction)
STATS = {
    "rx_bytes": "receive_bytes",
    "tx_bytes": "transmit_bytes",
    "rx_packets": "receive_packets",
    "tx_packets": "transmit_packets",
    "rx_errors": "receive_errors",
    "tx_errors": "transmit_errors",
    "rx_dropped": "receive_drops",
    "tx_dropped": "transmit_drops",
}


@dataclass
class Interface:
    """One OVSDB Interface row, with what the exporter needs."""

    name: str
    type: str = ""
    bridge: str = ""
    port: str = ""
    link_up: int | None = None
    admin_up: int | None = None
    mtu: int | None = None
    ofport: int | None = None
    link_resets: int | None = None
    stats: dict[str, int] = field(default_factory=dict)
    vm_id: str = ""
    iface_id: str = ""
    attached_mac: str = ""
    options: dict[str, str] = field(default_factory=dict)
    bfd: dict[str, str] = field(default_factory=dict)
    cfm_fault: int | None = None
    error: str = ""

    @property
    def tunnel(self) -> bool:
        return self.type in TUNNEL_TYPES


def _updown(value: Any) -> int | None:
    if value == "up":
        return 1
    if value == "down":
        return 0
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def interface_from_row(row: dict[str, Any], bridge: str = "", port: str = "") -> Interface:
    """An :class:`Interface` from a row as plain Python values (maps as dicts, empty optional
    columns as None or empty); unknown types and missing columns are kept, not fatal."""
    ext = row.get("external_ids") or {}
    stats = {k: v for k, v in (row.get("statistics") or {}).items() if _int(v) is not None}
    cfm = row.get("cfm_fault")
    return Interface(
        name=str(row.get("name", "")),
        type=str(row.get("type") or "system"),
        bridge=bridge,
        port=port,
        link_up=_updown(row.get("link_state")),
        admin_up=_updown(row.get("admin_state")),
        mtu=_int(row.get("mtu")),
        ofport=_int(row.get("ofport")),
        link_resets=_int(row.get("link_resets")),
        stats=stats,
        vm_id=str(ext.get("vm-id", "")),
        iface_id=str(ext.get("iface-id", "")),
        attached_mac=str(ext.get("attached-mac", "")).lower(),
        options={str(k): str(v) for k, v in (row.get("options") or {}).items()},
        bfd={str(k): str(v) for k, v in (row.get("bfd_status") or {}).items()},
        cfm_fault=int(cfm) if isinstance(cfm, bool) else None,
        error=str(row.get("error") or ""),
    )


@dataclass
class Datapath:
    """One datapath of ``dpctl/show``."""

    name: str
    hit: int | None = None
    missed: int | None = None
    lost: int | None = None
    flows: int | None = None
    masks_hit: int | None = None
    masks_total: int | None = None


_DP = re.compile(r"^(\S+@\S+):\s*$")
_LOOKUPS = re.compile(r"^\s+lookups: hit:(\d+) missed:(\d+) lost:(\d+)")
_FLOWS = re.compile(r"^\s+flows: (\d+)")
_MASKS = re.compile(r"^\s+masks: hit:(\d+) total:(\d+)")


def parse_dpctl_show(text: str) -> list[Datapath]:
    """``ovs-appctl dpctl/show``: lookups, flows and masks of each datapath."""
    out: list[Datapath] = []
    for line in text.splitlines():
        if m := _DP.match(line):
            out.append(Datapath(m.group(1)))
        elif out and (m := _LOOKUPS.match(line)):
            out[-1].hit, out[-1].missed, out[-1].lost = (int(g) for g in m.groups())
        elif out and (m := _FLOWS.match(line)):
            out[-1].flows = int(m.group(1))
        elif out and (m := _MASKS.match(line)):
            out[-1].masks_hit, out[-1].masks_total = int(m.group(1)), int(m.group(2))
    return out


_COVERAGE = re.compile(r"^(\w+)\s+.*total: (\d+)\s*$")


def parse_coverage(text: str) -> dict[str, int]:
    """``ovs-appctl coverage/show``: the total of every event counter it lists."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if m := _COVERAGE.match(line):
            out[m.group(1)] = int(m.group(2))
    return out


_MEMORY = re.compile(r"([\w-]+(?: keys)?):(\d+)")


def parse_memory(text: str) -> dict[str, int]:
    """``ovs-appctl memory/show``: object counts (``handlers:1 ports:4 udpif keys:11``)."""
    return {k.replace(" ", "_").replace("-", "_"): int(v) for k, v in _MEMORY.findall(text)}


@dataclass(frozen=True)
class Route:
    """OVS's answer to ``ovs/route/lookup IP``: the device packets to IP leave by, the source
    address they get and the next hop ("" when IP is on the device's own subnet)."""

    device: str
    source: str = ""
    gateway: str = ""


_NO_GATEWAY = frozenset({"", "::", "0.0.0.0"})
# a device name: no "/" (it becomes a path under /sys/class/net) and no white space
_IFNAME = re.compile(r"^[^/\s]+$")


def parse_route_lookup(text: str) -> Route:
    """``ovs-appctl ovs/route/lookup IP`` (``src A``, ``gateway G``, ``dev D`` lines; G is
    ``::`` without a gateway). "No route" is an error reply, not text: the caller sees it."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, val = line.strip().partition(" ")
        if key:
            fields[key] = val.strip()
    device = fields.get("dev", "")
    if not _IFNAME.match(device) or device in (".", ".."):
        raise OvsOutputError(
            f"ovs/route/lookup: expected src/gateway/dev lines with a device name, got {text!r:.120}"
        )
    gateway = fields.get("gateway", "")
    return Route(device, fields.get("src", ""), "" if gateway in _NO_GATEWAY else gateway)
