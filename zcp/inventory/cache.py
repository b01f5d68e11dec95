"""A cached inventory that callers read without ever waiting on its source.

A background thread refreshes it on a schedule; a failed refresh keeps the last good copy (also
kept on disk when ``cache_file`` is set, so a restart during a CloudStack outage still has it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import ValidationError

from zcp.errors import InventoryError, ZcpError
from zcp.files import write_atomic
from zcp.inventory.model import Inventory
from zcp.logs import FailureLog

log = logging.getLogger(__name__)

EMPTY = Inventory(source="none")


class InventoryCache:
    """Holds the last good :class:`Inventory` and refreshes it in the background."""

    def __init__(
        self,
        loader: Callable[[], Inventory],
        *,
        refresh_interval: float = 300.0,
        cache_file: Path | None = None,
        min_retry: float = 5.0,
    ) -> None:
        self._loader = loader
        self._interval = refresh_interval
        self._min_retry = min(min_retry, refresh_interval)
        self._cache_file = cache_file
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._inventory = EMPTY
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.failures = 0
        self.last_error = ""
        self.last_duration = 0.0
        self.last_success: float | None = None
        self.cache_write_failures = 0
        self._write_log = FailureLog(log, "cannot write the inventory cache file")
        if cache_file is not None:
            self._load_cache_file(cache_file)

    # -- reading: never blocks on the source ------------------------------------------------
    def current(self) -> Inventory:
        """The last good inventory (an empty one before the first successful load)."""
        with self._lock:
            return self._inventory

    def age_seconds(self) -> float | None:
        """Seconds since the current copy was fetched from its source, or None if none yet."""
        fetched = self.current().fetched_at
        if fetched is None:
            return None
        return max(0.0, (datetime.now(UTC) - fetched).total_seconds())

    def wait_loaded(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a first good copy; True if there is one."""
        return self._loaded.wait(timeout)

    # -- refreshing ---------------------------------------------------------------------------
    def refresh(self) -> Inventory:
        """Load from the source now; on success replace the copy, on failure raise and keep it."""
        with self._refresh_lock:
            start = time.monotonic()
            try:
                inventory = self._loader()
            except ZcpError as exc:
                self._failed(str(exc), start)
                raise
            except Exception as exc:  # a bug or an unexpected answer must not kill the thread
                self._failed(f"{type(exc).__name__}: {exc}", start)
                raise InventoryError(
                    f"inventory refresh failed: {type(exc).__name__}: {exc}"
                ) from exc
            self.last_duration = time.monotonic() - start
            with self._lock:
                self._inventory = inventory
            self.refreshes += 1
            self.last_success = time.time()
            self.last_error = ""
            self._loaded.set()
            log.info(
                "inventory refreshed",
                extra={
                    "source": inventory.source,
                    "duration_s": round(self.last_duration, 3),
                    **inventory.counts(),
                },
            )
            if self._cache_file is not None:
                self._write_cache_file(self._cache_file, inventory)
            return inventory

    def _failed(self, message: str, start: float) -> None:
        self.last_duration = time.monotonic() - start
        self.failures += 1
        self.last_error = message
        age = self.age_seconds()
        log.warning(
            "inventory refresh failed; serving last good copy",
            extra={"error": message, "age_s": None if age is None else round(age, 1)},
        )

    def start(self) -> None:
        """Start the background refresher (first load at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="inventory-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresher."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        retry = self._min_retry
        while not self._stop.is_set():
            try:
                self.refresh()
            except ZcpError:
                delay = retry
                retry = min(retry * 2, self._interval)
            else:
                delay = self._interval
                retry = self._min_retry
            self._wake.wait(delay)
            self._wake.clear()

    # -- persistence ----------------------------------------------------------------------------
    def _load_cache_file(self, path: Path) -> None:
        try:
            inventory = Inventory.model_validate_json(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValidationError, ValueError) as exc:
            log.warning(
                "ignoring unreadable inventory cache",
                extra={"path": str(path), "error": str(exc)[:200]},
            )
            return
        with self._lock:
            self._inventory = inventory
        self._loaded.set()
        log.info("inventory loaded from cache file", extra={"path": str(path)})

    def _write_cache_file(self, path: Path, inventory: Inventory) -> None:
        """Keep the copy on disk; a disk that refuses (read-only, full) costs only the copy on
        disk: the refresh itself stands, the failure is counted and logged on change."""
        try:
            write_atomic(path, inventory.model_dump_json())
        except OSError as exc:
            self.cache_write_failures += 1
            self._write_log.failed(str(path), exc.strerror or str(exc), path=str(path))
        else:
            self._write_log.ok(str(path), path=str(path))

    # -- self metrics ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """Prometheus collector for the cache's own health."""
        inventory = self.current()
        age = self.age_seconds()
        yield GaugeMetricFamily(
            "zcp_inventory_age_seconds",
            "Age of the inventory copy in use (NaN before the first load).",
            value=float("nan") if age is None else age,
        )
        yield GaugeMetricFamily(
            "zcp_inventory_last_success_timestamp_seconds",
            "Unix time of the last successful inventory refresh by this process.",
            value=self.last_success or 0.0,
        )
        yield CounterMetricFamily(
            "zcp_inventory_refreshes", "Successful inventory refreshes.", value=self.refreshes
        )
        yield CounterMetricFamily(
            "zcp_inventory_refresh_failures", "Failed inventory refreshes.", value=self.failures
        )
        yield CounterMetricFamily(
            "zcp_inventory_cache_write_failures",
            "Refreshes whose copy could not be written to the cache file (read-only or full "
            "disk); the refresh itself stood.",
            value=self.cache_write_failures,
        )
        yield GaugeMetricFamily(
            "zcp_inventory_refresh_duration_seconds",
            "Duration of the last inventory refresh.",
            value=self.last_duration,
        )
        objects = GaugeMetricFamily(
            "zcp_inventory_objects", "Records in the inventory in use, by kind.", labels=["kind"]
        )
        for kind, count in inventory.counts().items():
            objects.add_metric([kind], count)
        yield objects
