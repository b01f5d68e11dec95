"""The OVS exporter's collector: interfaces and bridges from the OVSDB replica, datapath,
coverage, memory and the tunnels' underlay routes from ovs-vswitchd's unixctl socket (each
call with its own deadline), CloudStack identity from the cached inventory. Each of the five
sources succeeds or fails on its own; a failed one costs only its own families."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.ovs.parse import (
    STATS,
    Datapath,
    OvsOutputError,
    parse_coverage,
    parse_dpctl_show,
    parse_memory,
)
from exporters.ovs.replica import OvsdbReplica, Snapshot
from exporters.ovs.underlay import (
    REASONS,
    RouteCache,
    Underlays,
    destination,
    devices,
    summary,
    underlays,
)
from exporters.ovs.unixctl import UnixctlError, UnixctlTimeout, call
from zcp.inventory.cache import InventoryCache
from zcp.inventory.metrics import inventory_info_metrics
from zcp.inventory.model import Nic
from zcp.logs import FailureLog

log = logging.getLogger(__name__)
IFACE = ["interface", "bridge", "type", "vm_id", "iface_id", "attached_mac", "nic_id"]
SOURCES = ("ovsdb", "datapath", "coverage", "memory", "underlay")
SYSFS_NET = Path("/sys/class/net")


def vswitchd_pid(rundir: Path) -> int | None:
    """ovs-vswitchd's pid from ``<rundir>/ovs-vswitchd.pid`` (read once per scrape: a restart
    changes it); None if unreadable."""
    try:
        return int((rundir / "ovs-vswitchd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def vswitchd_rss(pid: int) -> int | None:
    """Resident memory of process ``pid`` (bytes), from /proc; None if not found."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sysfs_mtu(device: str, root: Path = SYSFS_NET) -> int | None:
    """The MTU of network device ``device`` from ``/sys/class/net``; None if there is no such
    device. sysfs shows the devices of the network namespace it was mounted in (the
    exporter's own, as a systemd service on the host): a device that exists only in another
    namespace, where ovs-vswitchd may run, is not seen."""
    if not device or "/" in device or device in (".", ".."):
        return None
    try:
        return int((root / device / "mtu").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class SourceResult:
    ok: bool = False
    duration: float = 0.0
    error: str = ""


@dataclass
class Collection:
    snapshot: Snapshot | None = None
    datapaths: list[Datapath] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    rss: int | None = None
    underlays: Underlays = field(default_factory=Underlays)
    results: dict[str, SourceResult] = field(default_factory=dict)


class OvsCollector:
    """Prometheus collector for one host's Open vSwitch."""

    def __init__(
        self,
        replica: OvsdbReplica,
        inventory: InventoryCache,
        rundir: Path,
        ctl: str | None = None,
        call_timeout: float = 2.0,
        device_mtu: Callable[[str], int | None] = sysfs_mtu,
    ) -> None:
        self.replica = replica
        self.inventory = inventory
        self.rundir = rundir
        self.ctl = ctl
        self.call_timeout = call_timeout
        self.failures = dict.fromkeys(SOURCES, 0)
        self.last_success = dict.fromkeys(SOURCES, 0.0)
        self._failure_log = FailureLog(log, "ovs source failed")
        self.device_mtu = device_mtu
        self.routes = RouteCache()
        # keyed by reason; the message names the tunnels, so a change of them is logged
        self._unresolved_log = FailureLog(log, "ovs tunnel underlay unresolved")
        self._inflight: Future[Collection] | None = None
        self._inflight_lock = threading.Lock()
        self.collections = 0  # collections run
        self.shared_scrapes = 0  # scrapes that joined one in flight

    def gather(self, timeout: float | None = None) -> Collection:
        """Read every source; none waits past its own deadline (nor the scrape's).

        Concurrent scrapes share the collection in flight (as the libvirt exporter does):
        ovs-vswitchd answers one set of unixctl calls however many scrapers there are. A
        scrape that joins one waits at most its own deadline."""
        wait = timeout if timeout is not None else 8.0
        with self._inflight_lock:
            shared = self._inflight
            if shared is None:
                shared = self._inflight = Future()
                owner = True
            else:
                owner = False
                self.shared_scrapes += 1
        if not owner:
            try:
                return shared.result(timeout=wait)
            except FutureTimeout:
                out = Collection()
                out.results = {
                    s: SourceResult(False, wait, "the shared collection did not finish in time")
                    for s in SOURCES
                }
                return out
        try:
            result = self._gather(timeout)
        except BaseException as exc:
            shared.set_exception(exc)
            raise
        finally:
            with self._inflight_lock:
                self._inflight = None
        shared.set_result(result)
        return result

    def _gather(self, timeout: float | None) -> Collection:
        self.collections += 1
        budget_end = time.monotonic() + (timeout if timeout is not None else 8.0)
        out = Collection()
        start = time.monotonic()
        out.snapshot = self.replica.snapshot()
        error = ""
        if out.snapshot is None:
            error = (
                f"not connected to {self.replica.remote}"
                if self.replica.healthy
                else "the OVSDB replica's thread is dead or stuck (its data is not served)"
            )
        out.results["ovsdb"] = SourceResult(
            out.snapshot is not None, time.monotonic() - start, error
        )
        pid = vswitchd_pid(self.rundir)
        ctl = self.ctl or (str(self.rundir / f"ovs-vswitchd.{pid}.ctl") if pid else "")
        hung = ""
        for source, method in (
            ("datapath", "dpctl/show"),
            ("coverage", "coverage/show"),
            ("memory", "memory/show"),
        ):
            start = time.monotonic()
            remaining = min(self.call_timeout, budget_end - start)
            res = SourceResult()
            try:
                if hung:  # one call timed out: do not wait for the others too
                    raise UnixctlError(hung)
                if not ctl:
                    raise UnixctlError(f"no readable ovs-vswitchd.pid in {self.rundir}")
                if remaining <= 0:
                    raise UnixctlError("no time left in this scrape")
                text = call(ctl, method, [], remaining)
                if source == "datapath":
                    out.datapaths = parse_dpctl_show(text)
                elif source == "coverage":
                    out.coverage = parse_coverage(text)
                else:
                    out.memory = parse_memory(text)
                    out.rss = vswitchd_rss(pid) if pid else None
                res.ok = True
            except UnixctlTimeout as exc:
                res.error = str(exc)
                hung = f"ovs-vswitchd did not answer {method} in time"
            except UnixctlError as exc:
                res.error = str(exc)
            res.duration = time.monotonic() - start
            out.results[source] = res
        start = time.monotonic()
        res = SourceResult()
        try:
            if out.snapshot is None:
                res.error = "no OVSDB data: the tunnels are not known"
            else:
                out.underlays = self._underlays(out.snapshot, ctl, budget_end, hung)
                res.ok = True
        except (UnixctlError, OvsOutputError) as exc:
            res.error = str(exc)
        res.duration = time.monotonic() - start
        out.results["underlay"] = res
        if res.ok:
            for reason in REASONS:
                if unresolved := out.underlays.unresolved[reason]:
                    self._unresolved_log.failed(reason, summary(unresolved))
                else:
                    self._unresolved_log.ok(reason)
        for source, res in out.results.items():
            if res.ok:
                self.last_success[source] = time.time()
                self._failure_log.ok(source)
            else:
                self.failures[source] += 1
                self._failure_log.failed(source, res.error)
        return out

    def _underlays(self, snap: Snapshot, ctl: str, budget_end: float, hung: str) -> Underlays:
        """Each tunnel's underlay device and its MTU. Routes come from ovs-vswitchd (cached
        while its routing table is unchanged), MTUs from the OVSDB replica, else from sysfs."""
        tunnels = [i for i in snap.interfaces if i.tunnel]
        wanted = {d for d in map(destination, tunnels) if d is not None}
        if not wanted:
            return Underlays()
        if hung:
            raise UnixctlError(hung)
        if not ctl:
            raise UnixctlError(f"no readable ovs-vswitchd.pid in {self.rundir}")

        def ask(method: str, params: list[str]) -> str:
            remaining = min(self.call_timeout, budget_end - time.monotonic())
            if remaining <= 0:
                raise UnixctlError("no time left in this scrape")
            return call(ctl, method, params, remaining)

        answers = self.routes.resolve(wanted, ask)
        ovs_mtu = {i.name: i.mtu for i in snap.interfaces if i.mtu is not None}
        system_mtu: dict[str, int] = {}
        for dev in devices(answers) - ovs_mtu.keys():
            if (mtu := self.device_mtu(dev)) is not None:
                system_mtu[dev] = mtu
        return underlays(tunnels, answers, ovs_mtu, system_mtu)

    def collect(self, timeout: float | None = None) -> Iterator[Metric]:
        c = self.gather(timeout)
        inv = self.inventory.current()
        if c.snapshot is not None:
            yield from _ovsdb_families(c.snapshot, inv.nic_by_mac)
            vm_ids = {i.vm_id for i in c.snapshot.interfaces if i.vm_id in inv.vm_by_id}
            for fam in inventory_info_metrics(inv, vm_ids):
                if fam.name == "zcp_nic_info":
                    yield fam
        if c.results["datapath"].ok:
            yield from _datapath_families(c.datapaths)
        if c.results["coverage"].ok:
            cov = CounterMetricFamily(
                "ovs_coverage", "ovs-vswitchd coverage event counters.", labels=["event"]
            )
            for event, total in sorted(c.coverage.items()):
                cov.add_metric([event], total)
            yield cov
        if c.results["memory"].ok:
            objs = GaugeMetricFamily(
                "ovs_vswitchd_objects", "Objects ovs-vswitchd holds (memory/show).", labels=["kind"]
            )
            for kind, n in sorted(c.memory.items()):
                objs.add_metric([kind], n)
            yield objs
            if c.rss is not None:
                yield GaugeMetricFamily(
                    "ovs_vswitchd_resident_memory_bytes",
                    "Resident memory of ovs-vswitchd.",
                    value=c.rss,
                )
        if c.results["underlay"].ok:
            yield from _underlay_families(c.underlays)
        yield from self._self_metrics(c)
        yield from self.inventory.collect()

    def _self_metrics(self, c: Collection) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ovs_up",
            "1 if OVSDB and ovs-vswitchd both answered.",
            value=1 if all(r.ok for r in c.results.values()) else 0,
        )
        ok = GaugeMetricFamily(
            "ovs_collector_success", "1 if this source answered in time.", labels=["collector"]
        )
        dur = GaugeMetricFamily(
            "ovs_collector_duration_seconds",
            "Time this source took in this scrape.",
            labels=["collector"],
        )
        last = GaugeMetricFamily(
            "ovs_collector_last_success_timestamp_seconds",
            "Unix time of this source's last success.",
            labels=["collector"],
        )
        fails = CounterMetricFamily(
            "ovs_collector_failures", "Failed reads of this source.", labels=["collector"]
        )
        for source in SOURCES:
            res = c.results[source]
            ok.add_metric([source], 1 if res.ok else 0)
            dur.add_metric([source], res.duration)
            last.add_metric([source], self.last_success[source])
            fails.add_metric([source], self.failures[source])
        yield from (ok, dur, last, fails)
        yield CounterMetricFamily(
            "ovs_exporter_ovsdb_connects",
            "Connections made to ovsdb-server.",
            value=self.replica.connects,
        )
        yield GaugeMetricFamily(
            "ovs_exporter_replica_up",
            "1 while the OVSDB replica's thread runs and its loop "
            "turned within the last few seconds (0: dead or stuck; its data is not served).",
            value=1 if self.replica.healthy else 0,
        )
        yield CounterMetricFamily(
            "ovs_exporter_replica_errors",
            "Errors that made the OVSDB replica start over.",
            value=self.replica.errors,
        )
        yield CounterMetricFamily(
            "ovs_exporter_route_lookups",
            "ovs/route/lookup calls made (for a new tunnel destination, or after OVS's "
            "routing table changed).",
            value=self.routes.lookups,
        )
        yield CounterMetricFamily(
            "ovs_exporter_collections",
            "Collections run (concurrent scrapes share one).",
            value=self.collections,
        )
        yield GaugeMetricFamily(
            "ovs_exporter_ovsdb_last_change_timestamp_seconds",
            "Unix time the OVSDB replica last changed (statistics change every 5 s while "
            "ovs-vswitchd runs).",
            value=self.replica.last_change,
        )


def _ovsdb_families(snap: Snapshot, nic_by_mac: Mapping[str, Nic]) -> Iterator[Metric]:
    counters = {
        suffix: CounterMetricFamily(
            f"ovs_interface_{suffix}",
            f"Interface {suffix.replace('_', ' ')} (OVSDB statistics).",
            labels=IFACE,
        )
        for suffix in STATS.values()
    }
    link = GaugeMetricFamily("ovs_interface_link_up", "1 if the link is up.", labels=IFACE)
    admin = GaugeMetricFamily("ovs_interface_admin_up", "1 if administratively up.", labels=IFACE)
    mtu = GaugeMetricFamily("ovs_interface_mtu_bytes", "Interface MTU.", labels=IFACE)
    ofport = GaugeMetricFamily(
        "ovs_interface_ofport", "OpenFlow port number (-1: failed).", labels=IFACE
    )
    resets = CounterMetricFamily("ovs_interface_link_resets", "Link state changes.", labels=IFACE)
    err = GaugeMetricFamily(
        "ovs_interface_error",
        "1 if OVS could not configure the interface (see its error).",
        labels=[*IFACE, "error"],
    )
    tunnel = GaugeMetricFamily(
        "ovs_tunnel_info",
        "A tunnel interface (value 1).",
        labels=["interface", "bridge", "type", "remote_ip", "local_ip", "key"],
    )
    bfd = GaugeMetricFamily(
        "ovs_interface_bfd_up", "1 if BFD is up (where BFD is enabled).", labels=IFACE
    )
    bfd_fwd = GaugeMetricFamily(
        "ovs_interface_bfd_forwarding", "1 if BFD says the link can forward.", labels=IFACE
    )
    cfm = GaugeMetricFamily("ovs_interface_cfm_fault", "1 if CFM reports a fault.", labels=IFACE)
    for i in snap.interfaces:
        nic = nic_by_mac.get(i.attached_mac) if i.attached_mac else None
        labels = [
            i.name,
            i.bridge,
            i.type,
            i.vm_id,
            i.iface_id,
            i.attached_mac,
            nic.id if nic is not None else "",
        ]
        for key, suffix in STATS.items():
            if key in i.stats:
                counters[suffix].add_metric(labels, i.stats[key])
        for fam, value in (
            (link, i.link_up),
            (admin, i.admin_up),
            (mtu, i.mtu),
            (ofport, i.ofport),
            (resets, i.link_resets),
            (cfm, i.cfm_fault),
        ):
            if value is not None:
                fam.add_metric(labels, value)
        if i.error:
            err.add_metric([*labels, i.error], 1)
        if i.tunnel:
            tunnel.add_metric(
                [
                    i.name,
                    i.bridge,
                    i.type,
                    i.options.get("remote_ip", ""),
                    i.options.get("local_ip", ""),
                    i.options.get("key", ""),
                ],
                1,
            )
        if "state" in i.bfd:
            bfd.add_metric(labels, 1 if i.bfd["state"] == "up" else 0)
            bfd_fwd.add_metric(labels, 1 if i.bfd.get("forwarding") == "true" else 0)
    yield from counters.values()
    yield from (link, admin, mtu, ofport, resets, err, tunnel, bfd, bfd_fwd, cfm)
    bridges = GaugeMetricFamily(
        "ovs_bridge_info",
        "A bridge (value 1).",
        labels=["bridge", "datapath_type", "datapath_id", "fail_mode"],
    )
    ports = GaugeMetricFamily("ovs_bridge_ports", "Ports on the bridge.", labels=["bridge"])
    for b in snap.bridges:
        bridges.add_metric([b.name, b.datapath_type, b.datapath_id, b.fail_mode], 1)
        ports.add_metric([b.name], b.ports)
    yield from (bridges, ports)
    yield _info(snap)


def _underlay_families(found: Underlays) -> Iterator[Metric]:
    mtu = GaugeMetricFamily(
        "ovs_tunnel_underlay_mtu_bytes",
        "MTU of the device a tunnel's encapsulated packets leave by (OVS's route to its "
        "remote_ip): below the overlay's MTU + the encapsulation (50 bytes for VXLAN over "
        "IPv4), full-size tenant packets are dropped or fragmented.",
        labels=["interface", "bridge", "remote_ip", "underlay"],
    )
    for u in found.resolved:
        mtu.add_metric([u.interface, u.bridge, u.remote_ip, u.device], u.mtu)
    unresolved = GaugeMetricFamily(
        "ovs_tunnel_underlay_unresolved",
        "Tunnels with a fixed remote_ip whose underlay MTU is not exported: no_route (OVS "
        "has no route to remote_ip), no_mtu (the route's device is neither an OVS interface "
        "nor in /sys/class/net of the exporter's network namespace).",
        labels=["reason"],
    )
    for reason in REASONS:
        unresolved.add_metric([reason], len(found.unresolved[reason]))
    yield from (mtu, unresolved)


def _info(snap: Snapshot) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(
        "ovs_info", "Open vSwitch versions (value 1).", labels=["ovs_version", "db_version"]
    )
    fam.add_metric([snap.ovs_version, snap.db_version], 1)
    return fam


def _datapath_families(datapaths: list[Datapath]) -> Iterator[Metric]:
    fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        "hit": CounterMetricFamily(
            "ovs_datapath_lookups_hit", "Packets that matched a datapath flow.", labels=["datapath"]
        ),
        "missed": CounterMetricFamily(
            "ovs_datapath_lookups_missed",
            "Packets that went up to ovs-vswitchd.",
            labels=["datapath"],
        ),
        "lost": CounterMetricFamily(
            "ovs_datapath_lookups_lost",
            "Packets dropped before reaching ovs-vswitchd.",
            labels=["datapath"],
        ),
        "flows": GaugeMetricFamily(
            "ovs_datapath_flows", "Flows in the datapath.", labels=["datapath"]
        ),
        "masks_hit": CounterMetricFamily(
            "ovs_datapath_masks_hit", "Mask lookups that hit.", labels=["datapath"]
        ),
        "masks_total": GaugeMetricFamily(
            "ovs_datapath_masks", "Masks in the datapath.", labels=["datapath"]
        ),
    }
    for dp in datapaths:
        for key, fam in fams.items():
            value = getattr(dp, key)
            if value is not None:
                fam.add_metric([dp.name], value)
    yield from fams.values()
