"""The inventory service: the region's one CloudStack reader.

It keeps the inventory cached (:class:`~zcp.inventory.InventoryCache`) and serves
* ``/metrics``: the identity and state families (``zcp_vm_info``, ``zcp_vm_state``,
  ``zcp_volume_info``, ``zcp_storage_pool_info``, ...) as ``job="zcp-inventory"``, rendered once
  per inventory copy, plus the cache's own health rendered live;
* ``/v1/inventory[?host=NAME]``: the snapshot as JSON for the hypervisor exporters, with a
  strong ``ETag`` (``If-None-Match`` -> 304) and gzip when asked, each view rendered once per copy.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qs

from prometheus_client.core import CounterMetricFamily, Metric

from exporters.http import Reply
from zcp.inventory.cache import InventoryCache
from zcp.inventory.metrics import fleet_metrics, inventory_info_metrics, tenant_info_metrics
from zcp.inventory.model import Inventory
from zcp.inventory.snapshot import FETCHED_AT_HEADER, MEDIA_TYPE, Encoded, encode, host_view


def etag_matches(header: str | None, etag: str) -> bool:
    """Does an ``If-None-Match`` header name ``etag`` (RFC 9110: a list, ``*``, weak tags)?"""
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class InventoryService:
    """Collector (identity families) and the snapshot route of the inventory service."""

    def __init__(self, cache: InventoryCache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._of: Inventory | None = None
        self._views: dict[tuple[str | None, bool], tuple[Encoded, bytes]] = {}
        self.requests: dict[tuple[str, str], int] = {}

    # -- /metrics -----------------------------------------------------------------------------
    def version(self) -> object:
        """Changes when the cache holds a new copy."""
        return id(self.cache.current())

    def collect_versioned(self) -> Iterator[Metric]:
        """The identity and state families of the current copy."""
        inv = self.cache.current()
        yield from tenant_info_metrics(inv)
        yield from inventory_info_metrics(inv)
        yield from fleet_metrics(inv)

    def collect_live(self) -> Iterator[Metric]:
        """The cache's health and the snapshot requests served."""
        yield from self.cache.collect()
        served = CounterMetricFamily(
            "zcp_inventory_service_requests",
            "Snapshot requests answered, by view and status.",
            labels=["view", "code"],
        )
        with self._lock:
            for (view, code), n in sorted(self.requests.items()):
                served.add_metric([view, code], n)
        yield served

    def collect(self, timeout: float | None = None) -> Iterator[Metric]:
        """Everything at once (for a plain registry)."""
        yield from self.collect_versioned()
        yield from self.collect_live()

    # -- /v1/inventory --------------------------------------------------------------------------
    def _view(self, inv: Inventory, host: str | None, gz: bool) -> tuple[Encoded, bytes]:
        """The encoded view and the body to send, rendered once per copy; views of hosts the
        inventory does not know are not kept (the query string is the client's)."""
        key = (host, gz)
        with self._lock:
            if self._of is not inv:
                self._of, self._views = inv, {}
            hit = self._views.get(key)
        if hit is not None:
            return hit
        plain = self._views.get((host, False)) if gz else None
        encoded = plain[0] if plain else encode(inv if host is None else host_view(inv, host))
        body = gzip.compress(encoded.body, 6) if gz else encoded.body
        if host is None or any(vm.host == host for vm in inv.vms):
            with self._lock:
                if self._of is inv:
                    self._views[key] = (encoded, body)
        return encoded, body

    def snapshot(self, query: str, headers: Mapping[str, str]) -> Reply:
        """``GET /v1/inventory[?host=NAME]``."""
        hosts = parse_qs(query).get("host")
        host = hosts[0] if hosts else None
        view = "host" if host is not None else "all"
        reply = self._snapshot(host, headers)
        with self._lock:
            key = (view, str(reply.status))
            self.requests[key] = self.requests.get(key, 0) + 1
        return reply

    def _snapshot(self, host: str | None, headers: Mapping[str, str]) -> Reply:
        inv = self.cache.current()
        if inv.fetched_at is None:
            reason = self.cache.last_error or "first refresh in progress"
            return Reply(
                503,
                "text/plain; charset=utf-8",
                f"no inventory loaded yet: {reason}\n".encode(),
                {"Retry-After": "5"},
            )
        gz = "gzip" in (headers.get("accept-encoding") or "")
        encoded, body = self._view(inv, host, gz)
        meta = {
            "ETag": encoded.etag,
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
            FETCHED_AT_HEADER: encoded.fetched_at.isoformat() if encoded.fetched_at else "",
        }
        if etag_matches(headers.get("if-none-match"), encoded.etag):
            return Reply(304, MEDIA_TYPE, b"", meta)
        if gz:
            meta["Content-Encoding"] = "gzip"
        return Reply(200, MEDIA_TYPE, body, meta)
