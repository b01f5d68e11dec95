"""An in-memory replica of the OVSDB tables the exporter reads, kept by the ``ovs`` library's
IDL over one persistent connection (RFC 7047 ``monitor``): ovsdb-server pushes changes, the
IDL reconnects by itself, and a scrape reads the replica without a database round-trip.

ovs-vswitchd writes Interface ``statistics`` into OVSDB every 5 s (``stats-update-interval``),
so the replica's counters are as fresh as what ``ovs-vsctl list Interface`` would print.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ovs.db.idl
import ovs.jsonrpc
import ovs.poller
import ovs.stream

from exporters.ovs.parse import Interface, interface_from_row
from zcp.logs import FailureLog

log = logging.getLogger(__name__)

COLUMNS = {
    "Open_vSwitch": ["ovs_version", "db_version", "bridges"],
    "Bridge": ["name", "ports", "datapath_type", "datapath_id", "fail_mode"],
    "Port": ["name", "interfaces"],
    "Interface": [
        "name",
        "type",
        "statistics",
        "link_state",
        "admin_state",
        "mtu",
        "ofport",
        "link_resets",
        "external_ids",
        "options",
        "bfd_status",
        "cfm_fault",
        "error",
    ],
}


@dataclass
class Bridge:
    name: str
    datapath_type: str = ""
    datapath_id: str = ""
    fail_mode: str = ""
    ports: int = 0


@dataclass
class Snapshot:
    """What one scrape reads: interfaces (with their bridge/port), bridges, versions."""

    interfaces: list[Interface] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    ovs_version: str = ""
    db_version: str = ""


def _value(v: Any) -> Any:
    """IDL optional columns are lists of 0 or 1 element: the element or None."""
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _row(row: Any, columns: list[str]) -> dict[str, Any]:
    out = {}
    for col in columns:
        try:
            out[col] = _value(getattr(row, col))
        except AttributeError:  # a column this server's schema does not have
            out[col] = None
    return out


def fetch_schema(remote: str, timeout: float) -> dict[str, Any]:
    """The Open_vSwitch schema from the server (``get_schema``), with a connect deadline."""
    error, stream = ovs.stream.Stream.open_block(
        ovs.stream.Stream.open(remote), int(timeout * 1000)
    )
    if error:
        raise ConnectionError(f"cannot connect to {remote}: error {error}")
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        error, reply = rpc.transact_block(
            ovs.jsonrpc.Message.create_request("get_schema", ["Open_vSwitch"])
        )
    finally:
        rpc.close()
    if error or reply is None or reply.error is not None:
        raise ConnectionError(f"get_schema on {remote} failed: {error or reply.error}")
    return dict(reply.result)


class OvsdbReplica:
    """A background thread that keeps the replica; :meth:`snapshot` reads it."""

    def __init__(
        self, remote: str, probe_interval_ms: int = 5000, stuck_after: float = 10.0
    ) -> None:
        self.remote = remote
        self.probe_interval_ms = probe_interval_ms
        self._idl: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.errors = 0
        self.last_change = 0.0
        self._seqno = 0
        self._was_connected = False
        self._connected = False  # as the loop last saw it (read without the lock)
        self._snapshot: Snapshot | None = None
        self.rebuilds = 0
        # the loop's heartbeat: it wakes at least every 0.5 s; older than ``stuck_after``
        # means the thread is dead or stuck (in the IDL, or building a snapshot)
        self.stuck_after = stuck_after
        self.heartbeat = time.monotonic()
        self._failures = FailureLog(log, "ovsdb replica failed")

    def start(self) -> OvsdbReplica:
        # the library's own vlog stays uninitialised (silent): connection changes are logged
        # here as structured lines
        self._thread = threading.Thread(target=self._loop, name="ovsdb-replica", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            if self._thread.is_alive():  # stuck inside the IDL: it is a daemon thread
                return
        with self._lock:
            self._close_idl_locked()

    @property
    def connected(self) -> bool:
        return self._connected and self.healthy

    @property
    def healthy(self) -> bool:
        """The replica's thread runs and its loop turned recently (not dead, not stuck)."""
        thread = self._thread
        return bool(
            thread is not None
            and thread.is_alive()
            and time.monotonic() - self.heartbeat < self.stuck_after
        )

    def _connected_locked(self) -> bool:
        idl = self._idl
        return bool(idl is not None and idl.has_ever_connected() and idl._session.is_connected())

    def _close_idl_locked(self) -> None:
        if self._idl is not None:
            try:
                self._idl.close()
            except Exception:  # a broken IDL: dropped either way
                pass
            self._idl = None

    def _loop(self) -> None:
        """Connect, then follow the database; any error drops the IDL and starts over (with
        a backoff), so the thread never dies of one and never serves stale data as fresh."""
        backoff = 0.5
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                if self._idl is None:
                    self._open()
                    backoff = 0.5
                self._turn()
            except Exception as exc:
                self.errors += 1
                self._connected = False
                self._failures.failed(self.remote, f"{type(exc).__name__}: {exc}"[:300])
                with self._lock:
                    self._close_idl_locked()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _open(self) -> None:
        helper = ovs.db.idl.SchemaHelper(schema_json=fetch_schema(self.remote, 2.0))
        for table, cols in COLUMNS.items():
            helper.register_columns(table, cols)
        with self._lock:
            self._idl = ovs.db.idl.Idl(self.remote, helper, probe_interval=self.probe_interval_ms)
        self._seqno = 0

    def _turn(self) -> None:
        """One turn of the loop: run the IDL, rebuild the snapshot on a change, then sleep
        until the IDL has news (or 0.5 s)."""
        with self._lock:
            self._idl.run()
            connected = self._connected_locked()
        if self._idl.change_seqno != self._seqno and connected:
            # converting IDL rows to Python values is the costly part (~0.1 ms per
            # interface): done here once per change (statistics change every 5 s), never
            # in a scrape, and without the lock (only this thread touches the IDL)
            self._seqno = self._idl.change_seqno
            self._snapshot = self._build()
            self.last_change = time.time()
            self.rebuilds += 1
        self._connected = connected
        if connected:
            self._failures.ok(self.remote)
        with self._lock:
            if connected and not self._was_connected:
                self.connects += 1
                log.info("ovsdb replica connected", extra={"remote": self.remote})
            elif self._was_connected and not connected:
                log.warning("ovsdb connection lost", extra={"remote": self.remote})
            self._was_connected = connected
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
        poller.timer_wait(500)  # also wake to notice stop()
        poller.block()

    def snapshot(self) -> Snapshot | None:
        """The replica as of its last change; None while not connected to ovsdb-server, and
        while the replica's thread is dead or stuck (its data would be stale). Never waits
        for the replica's lock (the thread may be stuck holding it)."""
        if not self.connected:
            return None
        return self._snapshot

    def _build(self) -> Snapshot:
        tables = self._idl.tables
        snap = Snapshot()
        for row in tables["Open_vSwitch"].rows.values():
            snap.ovs_version = str(_value(row.ovs_version) or "")
            snap.db_version = str(_value(row.db_version) or "")
        attached: set[Any] = set()
        for br in tables["Bridge"].rows.values():
            ports = list(br.ports)
            snap.bridges.append(
                Bridge(
                    name=br.name,
                    datapath_type=str(br.datapath_type or ""),
                    datapath_id=str(_value(br.datapath_id) or ""),
                    fail_mode=str(_value(br.fail_mode) or ""),
                    ports=len(ports),
                )
            )
            for port in ports:
                for iface in port.interfaces:
                    attached.add(iface.uuid)
                    snap.interfaces.append(
                        interface_from_row(_row(iface, COLUMNS["Interface"]), br.name, port.name)
                    )
        for iface in tables["Interface"].rows.values():
            if iface.uuid not in attached:  # mid-change: a port being added or removed
                snap.interfaces.append(interface_from_row(_row(iface, COLUMNS["Interface"])))
        return snap
