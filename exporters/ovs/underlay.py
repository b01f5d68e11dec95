"""Each tunnel's underlay: the device OVS sends the tunnel's encapsulated packets out of, found
in OVS's own routing table (``ovs/route/lookup <remote_ip>``: what the userspace datapath
routes by, a mirror of the kernel's main table for the kernel datapath), and that device's MTU.

A VXLAN overlay that promises MTU 1500 never fragments only if that MTU is at least 1500 + the
encapsulation (50 bytes for VXLAN over IPv4). The lookups are cached: one ``ovs/route/show``
per collection tells whether OVS's table changed; a destination is looked up again only then,
or when a tunnel brings a new one. The I/O (the unixctl call) is passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from exporters.ovs.parse import Interface, Route, parse_route_lookup
from exporters.ovs.unixctl import UnixctlReplyError

#: why a tunnel with a fixed remote_ip has no underlay MTU exported
NO_ROUTE = "no_route"  # OVS has no route to remote_ip
NO_MTU = "no_mtu"  # the route's device is neither an OVS interface nor a device seen here
REASONS = (NO_ROUTE, NO_MTU)

#: ask(method, params) -> text: one unixctl call to ovs-vswitchd
Ask = Callable[[str, list[str]], str]


@dataclass(frozen=True, order=True)
class Destination:
    """What OVS routes a tunnel's packets by: its remote_ip and the packet mark its
    ``egress_pkt_mark`` option sets on them before the lookup ("" when unset)."""

    remote_ip: str
    pkt_mark: str = ""

    def lookup_args(self) -> list[str]:
        return [self.remote_ip, *([f"pkt_mark={self.pkt_mark}"] if self.pkt_mark else [])]


def destination(tunnel: Interface) -> Destination | None:
    """The route lookup ``tunnel``'s packets get; None when it has no fixed ``remote_ip``
    (``remote_ip=flow``: OpenFlow picks it per packet, there is nothing to look up)."""
    remote = tunnel.options.get("remote_ip", "")
    try:
        ipaddress.ip_address(remote)
    except ValueError:
        return None
    mark = tunnel.options.get("egress_pkt_mark", "")
    return Destination(remote, mark if mark.isdigit() else "")


@dataclass(frozen=True)
class Lookup:
    """OVS's answer for one destination: its route, or None and what OVS said instead."""

    route: Route | None
    said: str = ""


class RouteCache:
    """``ovs/route/lookup`` answers per destination, kept while OVS's routing table (the text
    of ``ovs/route/show``) stays the same. Not thread-safe: one collection at a time uses it
    (concurrent scrapes share the collection in flight)."""

    def __init__(self) -> None:
        self._table: str | None = None
        self._answers: dict[Destination, Lookup] = {}
        self.lookups = 0  # ovs/route/lookup calls made

    def resolve(self, wanted: Iterable[Destination], ask: Ask) -> dict[Destination, Lookup]:
        """An answer for every destination in ``wanted``: one ``ovs/route/show``, then a lookup
        for each destination not answered under that same table. A failed call (a
        :class:`UnixctlError` other than OVS's "no route" answer, or unreadable output)
        propagates; the answers got before it stay, valid for the table they were got under."""
        wanted = set(wanted)
        if not wanted:
            return {}
        table = ask("ovs/route/show", [])
        if table != self._table:
            self._answers.clear()
            self._table = table
        for gone in self._answers.keys() - wanted:
            del self._answers[gone]
        for dest in sorted(wanted - self._answers.keys()):
            self.lookups += 1
            try:
                lookup = Lookup(parse_route_lookup(ask("ovs/route/lookup", dest.lookup_args())))
            except UnixctlReplyError as exc:  # OVS answered: no route ("Not found")
                lookup = Lookup(None, exc.reply)
            self._answers[dest] = lookup
        return dict(self._answers)


@dataclass(frozen=True)
class TunnelUnderlay:
    """A tunnel and the device its packets leave by, with that device's MTU."""

    interface: str
    bridge: str
    remote_ip: str
    device: str
    mtu: int


@dataclass(frozen=True)
class Unresolved:
    """A tunnel whose underlay MTU is not known, and why (for the log)."""

    interface: str
    remote_ip: str
    why: str


@dataclass
class Underlays:
    """Every tunnel with a fixed remote_ip, resolved or (by reason) not."""

    resolved: list[TunnelUnderlay] = field(default_factory=list)
    unresolved: dict[str, list[Unresolved]] = field(
        default_factory=lambda: {reason: [] for reason in REASONS}
    )


def devices(answers: Mapping[Destination, Lookup]) -> set[str]:
    """The devices the answers route through."""
    return {a.route.device for a in answers.values() if a.route is not None}


def underlays(
    tunnels: Iterable[Interface],
    answers: Mapping[Destination, Lookup],
    ovs_mtu: Mapping[str, int],
    device_mtu: Mapping[str, int],
) -> Underlays:
    """Join the tunnels with their route answers and their devices' MTUs: from the OVS
    Interface of that name first (``ovs_mtu``), else from the system (``device_mtu``).
    Tunnels without a fixed remote_ip, or not in ``answers``, are left out."""
    out = Underlays()
    for tunnel in tunnels:
        dest = destination(tunnel)
        answer = answers.get(dest) if dest is not None else None
        if dest is None or answer is None:
            continue
        if answer.route is None:
            out.unresolved[NO_ROUTE].append(
                Unresolved(tunnel.name, dest.remote_ip, answer.said or "no route")
            )
            continue
        dev = answer.route.device
        mtu = ovs_mtu.get(dev, device_mtu.get(dev))
        if mtu is None:
            out.unresolved[NO_MTU].append(
                Unresolved(
                    tunnel.name,
                    dest.remote_ip,
                    f"{dev} is neither an OVS interface nor a network device here",
                )
            )
            continue
        out.resolved.append(TunnelUnderlay(tunnel.name, tunnel.bridge, dest.remote_ip, dev, mtu))
    return out


def summary(unresolved: list[Unresolved], limit: int = 10) -> str:
    """One line naming the unresolved tunnels (the first ``limit``, by name), for the log."""
    items = sorted(unresolved, key=lambda u: u.interface)
    text = ", ".join(f"{u.interface} to {u.remote_ip}: {u.why}" for u in items[:limit])
    if len(items) > limit:
        text += f", and {len(items) - limit} more"
    return text
