"""The imperative shell of the libvirt exporter: one persistent connection, one bulk stats call
per collection, domain XML cached and refreshed on libvirt events, a deadline on every scrape.

libvirt calls block when libvirtd hangs, so a collection runs on its own thread and the scrape
waits for it only until its deadline. Concurrent scrapes share the collection in flight
(single-flight), so two Prometheus servers do not double the load on libvirtd.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import libvirt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.libvirt.metrics import build_metrics
from exporters.libvirt.parse import (
    DomainStats,
    DomainXml,
    DomainXmlError,
    group_stats,
    parse_domain_xml,
)
from exporters.libvirt.procfs import ProcReader, QemuProcess
from zcp.inventory.cache import InventoryCache
from zcp.logs import FailureLog

log = logging.getLogger(__name__)

GROUP_FLAGS = {
    "state": libvirt.VIR_DOMAIN_STATS_STATE,
    "cpu": libvirt.VIR_DOMAIN_STATS_CPU_TOTAL,
    "balloon": libvirt.VIR_DOMAIN_STATS_BALLOON,
    "vcpu": libvirt.VIR_DOMAIN_STATS_VCPU,
    "interface": libvirt.VIR_DOMAIN_STATS_INTERFACE,
    "block": libvirt.VIR_DOMAIN_STATS_BLOCK,
}
# Ask libvirt to skip what would block on a busy domain (libvirt >= 4.5) instead of waiting.
NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)


def is_local_uri(uri: str) -> bool:
    """True for a QEMU driver URI of a libvirtd on this host (``qemu:///system``)."""
    parsed = urlsplit(uri)
    return parsed.scheme in ("qemu", "qemu+unix") and not parsed.hostname


_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (keepalives and domain events)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        # libvirt prints every error to stderr by default; ours are logged where handled
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


@dataclass
class Collection:
    """The outcome of one collection: grouped stats of every domain, or an error."""

    domains: list[DomainStats] = field(default_factory=list)
    xml: dict[str, DomainXml] = field(default_factory=dict)
    error: str = ""
    duration: float = 0.0
    group_success: dict[str, bool] = field(default_factory=dict)
    incomplete: int = 0
    procfs_domains: int = 0


def _close_all(conns: Any) -> None:
    for conn in conns:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


class LibvirtSource:
    """Connection, XML cache and single-flight collection against one libvirtd."""

    def __init__(
        self,
        uri: str,
        groups: tuple[str, ...] = tuple(GROUP_FLAGS),
        keepalive: tuple[int, int] = (5, 3),
        open_conn: Callable[[str], Any] | None = None,
        chunks: int = 4,
        connections: int = 2,
        procfs: bool | None = None,
        proc_reader: ProcReader | None = None,
    ) -> None:
        unknown = set(groups) - set(GROUP_FLAGS)
        if unknown:
            raise ValueError(f"unknown stat groups: {', '.join(sorted(unknown))}")
        self.uri = uri
        self.groups = groups
        self.stats_flags = 0
        for g in groups:
            self.stats_flags |= GROUP_FLAGS[g]
        self.keepalive = keepalive
        # Fan-out: the domains are split into chunks, each fetched with one bulk
        # domainListGetStats call for all its groups; the calls run concurrently over a few
        # connections so libvirtd's workers and the guests' monitors work in parallel. Splitting
        # by group instead would make the calls fight over each domain's job (NOWAIT then skips
        # stats). chunks=1 is one bulk call for all domains.
        self.chunks = max(1, chunks)
        # cpu, vCPU and RSS figures from /proc for a libvirtd on this host (None: decide by
        # the URI); see exporters/libvirt/procfs.py for why and how
        if procfs is None:
            procfs = is_local_uri(uri)
        self.procfs = (proc_reader or ProcReader()) if procfs else None
        self.procfs_domains = 0
        self.n_connections = max(1, connections)
        self._extra: list[Any] = []
        self._handles: list[dict[str, Any]] = []
        self._pool = (
            ThreadPoolExecutor(max_workers=self.chunks, thread_name_prefix="libvirt-stats")
            if self.chunks > 1
            else None
        )
        # read-only is enough for stats, events and XML (and cannot change a domain)
        self._open = open_conn or libvirt.openReadOnly
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._closed = False
        self._failures = FailureLog(log, "libvirt collection failed")
        self._xml: dict[str, DomainXml] = {}
        self._xml_ids: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._inflight: Future[Collection] | None = None
        self._inflight_lock = threading.Lock()
        self.shared_scrapes = 0  # scrapes that joined the collection in flight
        # Test seam: called in every collection with the domains just listed, before their XML
        # and stats are read, on the collection's thread (tests destroy a guest there, or hold
        # the collection on an Event so that scrapes overlap). Always None in production.
        self.after_listing: Callable[[list[Any]], None] | None = None
        # counters for self-metrics
        self.collections = 0
        self.collection_errors = 0
        self.scrape_timeouts = 0
        self.reconnects = 0
        self.xml_reads = 0
        self.last_success = 0.0

    # -- connection ----------------------------------------------------------------------------
    def _connection(self) -> Any:
        """The primary connection, opening all of them first if there is none.

        Opening happens outside ``_conn_lock`` (under ``_open_lock``, one opener at a time):
        a hung libvirtd then blocks only the opener, never :meth:`close` (SIGTERM). And the
        connections are installed only once every one of them is open, so a failure on the
        second leaves nothing half-made for the next scrape to trip on."""
        with self._conn_lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                self._drop_connection_locked()
        with self._open_lock:
            with self._conn_lock:  # another opener may have finished meanwhile
                if self._conn is not None:
                    return self._conn
                if self._closed:
                    raise libvirt.libvirtError("the libvirt source is closed")
            start_event_loop()
            opened: list[Any] = []
            try:
                for _ in range(self.n_connections):
                    conn = self._open(self.uri)
                    if conn is None:
                        raise libvirt.libvirtError(f"cannot open {self.uri}")
                    opened.append(conn)
                    try:
                        conn.setKeepAlive(*self.keepalive)
                    except libvirt.libvirtError:
                        pass  # e.g. test:/// drivers have no keepalive
                primary = opened[0]
                for event in (
                    "LIFECYCLE",
                    "DEVICE_ADDED",
                    "DEVICE_REMOVED",
                    "METADATA_CHANGE",
                    "BALLOON_CHANGE",
                ):
                    event_id = getattr(libvirt, f"VIR_DOMAIN_EVENT_ID_{event}", None)
                    if event_id is not None:
                        try:
                            primary.domainEventRegisterAny(None, event_id, self._on_event, None)
                        except libvirt.libvirtError:
                            pass
            except BaseException:
                _close_all(opened)
                raise
            with self._conn_lock:
                if self._closed:  # closed while we were opening: do not keep them
                    _close_all(opened)
                    raise libvirt.libvirtError("the libvirt source is closed")
                self.reconnects += 1
                with self._dirty_lock:
                    self._xml_ids.clear()  # events were missed while disconnected
                self._conn, self._extra = primary, opened[1:]
                self._handles = [{} for _ in opened]
            log.info("connected to libvirt", extra={"uri": self.uri})
            return primary

    def _drop_connection_locked(self) -> None:
        conns = [self._conn, *self._extra]
        self._conn, self._extra, self._handles = None, [], []
        _close_all(c for c in conns if c is not None)

    def _on_event(self, conn: Any, dom: Any, *args: Any) -> None:
        """Any lifecycle/device/metadata event: re-read that domain's XML next time."""
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._dirty_lock:
            self._dirty.add(uuid)

    def close(self) -> None:
        """Close the connections (never waits for an open in progress: that one is closed
        when it completes)."""
        with self._conn_lock:
            self._closed = True
            self._drop_connection_locked()

    # -- collection ----------------------------------------------------------------------------
    def _domain_xml(self, dom: Any, uuid: str) -> DomainXml | None:
        with self._dirty_lock:
            dirty = uuid in self._dirty
            self._dirty.discard(uuid)
            same = self._xml_ids.get(uuid) == dom.ID() and uuid in self._xml
        if same and not dirty:
            return self._xml[uuid]
        try:
            parsed = parse_domain_xml(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:
            # the domain vanished between the stats call and now: keep the old copy if any
            log.debug("domain XML unavailable", extra={"vm_id": uuid, "error": str(exc)})
            return self._xml.get(uuid)
        except DomainXmlError as exc:
            log.warning("bad domain XML", extra={"vm_id": uuid, "error": str(exc)})
            return None
        self.xml_reads += 1
        with self._dirty_lock:
            self._xml[uuid] = parsed
            self._xml_ids[uuid] = dom.ID()
        return parsed

    def collect_now(self) -> Collection:
        """One collection on the calling thread (blocks while libvirtd does)."""
        start = time.monotonic()
        result = Collection()
        try:
            conn = self._connection()
            records = self._fetch(conn, result.xml)
        except libvirt.libvirtError as exc:
            result.error = str(exc).splitlines()[0] if str(exc) else "libvirt error"
            self.collection_errors += 1
            with self._conn_lock:
                if self._conn is not None:
                    try:
                        alive = self._conn.isAlive()
                    except libvirt.libvirtError:
                        alive = False
                    if not alive:
                        self._drop_connection_locked()
            result.duration = time.monotonic() - start
            self._failures.failed("libvirt", result.error, uri=self.uri)
            return result
        self._failures.ok("libvirt", uri=self.uri)
        ok = dict.fromkeys(self.groups, True)
        for uuid, name, stats in records:
            rec = group_stats(uuid, name, stats)
            result.domains.append(rec)
            if rec.state in RUNNING:
                missing = [g for g in self.groups if g not in rec.groups]
                for g in missing:
                    ok[g] = False
                if missing:
                    result.incomplete += 1
        with self._dirty_lock:
            for uuid in set(self._xml) - set(result.xml):
                self._xml.pop(uuid, None)
                self._xml_ids.pop(uuid, None)
        result.group_success = ok
        result.procfs_domains = self.procfs_domains
        result.duration = time.monotonic() - start
        self.collections += 1
        self.last_success = time.time()
        return result

    def _on_connection(self, index: int, doms: list[Any]) -> list[Any]:
        """The same domains as handles of connection ``index`` (looked up once, then cached)."""
        if index == 0:
            return doms
        conn, handles = self._extra[index - 1], self._handles[index]
        out = []
        for dom in doms:
            uuid = dom.UUIDString()
            handle = handles.get(uuid)
            if handle is None:
                try:
                    handle = conn.lookupByUUIDString(uuid)
                except libvirt.libvirtError:
                    continue  # gone since listAllDomains
                handles[uuid] = handle
            out.append(handle)
        return out

    def _plan(
        self,
        doms: list[Any],
        xml: dict[str, DomainXml],
    ) -> tuple[dict[int, list[Any]], dict[str, QemuProcess]]:
        """Which stat groups to ask libvirt for, per domain: ``{flags: [domain]}``; and the
        local QEMU processes whose cpu/vCPU/RSS figures are read from /proc instead."""
        procs: dict[str, QemuProcess] = {}
        if self.procfs is not None:
            procs = self.procfs.locate({d.UUIDString(): d.ID() for d in doms if d.ID() >= 0})
        plan: dict[int, list[Any]] = {}
        for dom in doms:
            uuid = dom.UUIDString()
            flags = self.stats_flags
            if dom.ID() < 0:
                flags &= GROUP_FLAGS["state"]  # off: nothing but its state is exported
            elif uuid in procs:
                flags &= ~(GROUP_FLAGS["cpu"] | GROUP_FLAGS["vcpu"])
                dxml = xml.get(uuid)
                # guest-reported memory needs the monitor, and only exists when the guest was
                # told to report it (<memballoon><stats period>); the rest is XML and /proc
                if dxml is not None and not (dxml.balloon and dxml.balloon_stats_period > 0):
                    flags &= ~GROUP_FLAGS["balloon"]
            plan.setdefault(flags, []).append(dom)
        return plan, procs

    def _fetch(self, conn: Any, xml: dict[str, DomainXml]) -> list[tuple[str, str, dict[str, Any]]]:
        """(uuid, name, flat stats) of every domain, fetched with concurrent bulk calls (one
        per chunk of domains), completed from /proc and the cached XML; fills ``xml``."""
        doms = conn.listAllDomains(0)
        if self.after_listing is not None:
            self.after_listing(doms)
        live = {d.UUIDString() for d in doms}
        for handles in self._handles[1:]:
            for uuid in set(handles) - live:
                del handles[uuid]
        for dom in doms:
            dxml = self._domain_xml(dom, dom.UUIDString())
            if dxml is not None:
                xml[dom.UUIDString()] = dxml
        plan, procs = self._plan(doms, xml)
        calls: list[tuple[int, list[Any]]] = []
        for flags, group in plan.items():
            n = max(1, round(self.chunks * len(group) / len(doms)))
            calls += [(flags, group[k::n]) for k in range(min(n, len(group)))]
        futures = []
        for k, (flags, group) in enumerate(calls):
            index = k % self.n_connections
            target = conn if index == 0 else self._extra[index - 1]
            targets = self._on_connection(index, group)
            if self._pool is None:
                fut: Future[Any] = Future()
                try:
                    fut.set_result(target.domainListGetStats(targets, flags, NOWAIT))
                except libvirt.libvirtError as exc:
                    fut.set_exception(exc)
                futures.append(fut)
            else:
                futures.append(self._pool.submit(target.domainListGetStats, targets, flags, NOWAIT))
        merged: dict[str, tuple[str, dict[str, Any]]] = {}
        failures = []
        for fut in futures:
            try:
                part = fut.result()
            except libvirt.libvirtError as exc:
                failures.append(exc)
                continue
            for dom, stats in part:
                try:
                    merged[dom.UUIDString()] = (dom.name(), stats)
                except libvirt.libvirtError:
                    continue  # disappeared mid-scrape: only its own series are lost
        if failures and len(failures) == len(futures):
            raise failures[0]
        out = []
        n_procfs = 0
        for dom in doms:
            uuid = dom.UUIDString()
            if uuid not in merged:
                continue
            name, stats = merged[uuid]
            proc = procs.get(uuid)
            if proc is not None and self.procfs is not None and dom.ID() >= 0:
                extra = self.procfs.read(
                    proc,
                    vcpus="vcpu" in self.groups,
                    cpu="cpu" in self.groups,
                    rss="balloon" in self.groups,
                )
                if extra is None:
                    self.procfs.forget(uuid)
                else:
                    n_procfs += 1
                    dxml = xml.get(uuid)
                    base = {
                        k: v
                        for k, v in (dxml.xml_stats() if dxml else {}).items()
                        if k.split(".", 1)[0] in self.groups
                    }
                    stats = {**base, **stats, **extra}
            out.append((uuid, name, stats))
        self.procfs_domains = n_procfs
        return out

    def collect(self, timeout: float) -> Collection:
        """Join the collection in flight or start one; give up after ``timeout`` seconds."""
        with self._inflight_lock:
            fut = self._inflight
            if fut is None or fut.done():
                fut = Future()
                self._inflight = fut
                threading.Thread(
                    target=self._run, args=(fut,), name="libvirt-collect", daemon=True
                ).start()
            else:
                self.shared_scrapes += 1
        try:
            return fut.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            self.scrape_timeouts += 1
            return Collection(
                error=f"libvirt did not answer within {timeout:.1f}s", duration=timeout
            )

    def _run(self, fut: Future[Collection]) -> None:
        try:
            fut.set_result(self.collect_now())
        except Exception as exc:  # never leave a scrape waiting on a dead thread
            log.exception("libvirt collection crashed")
            fut.set_result(Collection(error=f"{type(exc).__name__}: {exc}"))


class LibvirtCollector:
    """Prometheus collector: fresh counters per scrape, identity from the cached inventory."""

    def __init__(
        self, source: LibvirtSource, inventory: InventoryCache, host: str, timeout: float = 8.0
    ) -> None:
        self.source = source
        self.inventory = inventory
        self.host = host
        self.timeout = timeout

    def collect(self, timeout: float | None = None) -> Iterator[Metric]:
        """Families for one scrape, within ``timeout`` (default: the configured deadline)."""
        start = time.monotonic()
        result = self.source.collect(self.timeout if timeout is None else timeout)
        if not result.error:
            yield from build_metrics(
                result.domains, result.xml, self.inventory.current(), self.host
            )
        yield from self._self_metrics(result, time.monotonic() - start)

    def _self_metrics(self, result: Collection, elapsed: float) -> Iterator[Metric]:
        src = self.source
        yield GaugeMetricFamily(
            "libvirt_up",
            "1 if libvirt answered this scrape in time.",
            value=0 if result.error else 1,
        )
        yield GaugeMetricFamily(
            "libvirt_exporter_scrape_duration_seconds",
            "Time this scrape waited for libvirt.",
            value=elapsed,
        )
        yield GaugeMetricFamily(
            "libvirt_exporter_collection_duration_seconds",
            "Duration of the libvirt collection used by this scrape.",
            value=result.duration,
        )
        success = GaugeMetricFamily(
            "libvirt_exporter_group_success",
            "1 if every running domain returned this stat group in the last collection.",
            labels=["group"],
        )
        for group in src.groups:
            success.add_metric([group], 1 if result.group_success.get(group) else 0)
        yield success
        yield GaugeMetricFamily(
            "libvirt_exporter_domains_timed_out",
            "Running domains whose stats were skipped in time (busy monitor, NOWAIT).",
            value=result.incomplete,
        )
        yield GaugeMetricFamily(
            "libvirt_exporter_domains", "Domains in the last collection.", value=len(result.domains)
        )
        yield GaugeMetricFamily(
            "libvirt_exporter_last_success_timestamp_seconds",
            "Unix time of the last successful collection.",
            value=src.last_success,
        )
        yield CounterMetricFamily(
            "libvirt_exporter_collections", "Collections run.", value=src.collections
        )
        yield CounterMetricFamily(
            "libvirt_exporter_collection_errors",
            "Collections that failed with a libvirt error.",
            value=src.collection_errors,
        )
        yield CounterMetricFamily(
            "libvirt_exporter_scrape_timeouts",
            "Scrapes that gave up waiting for libvirt.",
            value=src.scrape_timeouts,
        )
        yield CounterMetricFamily(
            "libvirt_exporter_connects", "Connections opened to libvirtd.", value=src.reconnects
        )
        yield CounterMetricFamily(
            "libvirt_exporter_domain_xml_reads",
            "Domain XML documents read (cache misses).",
            value=src.xml_reads,
        )
        yield GaugeMetricFamily(
            "libvirt_exporter_procfs_domains",
            "Running domains whose CPU/vCPU/RSS figures came from /proc in the last collection.",
            value=result.procfs_domains,
        )
        if src.procfs is not None:
            yield CounterMetricFamily(
                "libvirt_exporter_procfs_scans",
                "Scans of /proc for the QEMU processes of new domains.",
                value=src.procfs.scans,
            )
            yield CounterMetricFamily(
                "libvirt_exporter_procfs_read_errors",
                "Failed reads of a QEMU process's /proc figures.",
                value=src.procfs.read_errors,
            )
        yield from self.inventory.collect()
