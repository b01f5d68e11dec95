"""Structured logging: one JSON (or key=value) line per event to stderr, and to Loki if configured.

Shipping to Loki goes through python-logging-loki behind a bounded queue: a slow or unreachable
Loki never blocks nor crashes the program; records that do not fit are dropped and counted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from typing import Any

import logging_loki
from logging_loki.emitter import LokiEmitterV1
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zcp.config import LoggingConfig, LokiConfig
from zcp.wait import wait_until

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller attached with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's own fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(record_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """Human-friendly ``ts level logger: msg key=value ...`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of text."""
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class LokiStats:
    """Counters of the Loki shipper, exported as the process's own metrics."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.dropped = 0


class _Emitter(LokiEmitterV1):
    """Loki v1 push with the record's own timestamp, a ``level`` label and a request timeout."""

    level_tag = "level"

    def __init__(self, url: str, tags: dict[str, str], auth: Any, timeout: float) -> None:
        super().__init__(url, tags, auth)
        self.timeout = timeout

    def build_tags(self, record: logging.LogRecord) -> dict[str, Any]:
        """Labels: the configured ones plus ``level``; the logger name stays in the line."""
        tags = super().build_tags(record)
        tags.pop(self.logger_tag, None)
        return tags

    def build_payload(self, record: logging.LogRecord, line: str) -> dict[str, Any]:
        """One stream with one value: [nanosecond timestamp as a string, line]."""
        ts = str(int(record.created * 1_000_000) * 1000)
        return {"streams": [{"stream": self.build_tags(record), "values": [[ts, line]]}]}

    def __call__(self, record: logging.LogRecord, line: str) -> None:
        payload = self.build_payload(record, line)
        resp = self.session.post(self.url, json=payload, timeout=self.timeout)
        if resp.status_code not in (200, 204):
            raise ValueError(f"Loki answered HTTP {resp.status_code}")


class _LokiHandler(logging_loki.LokiHandler):
    """Sends one record per push; a failure is counted, never printed as a traceback."""

    def __init__(self, emitter: _Emitter, stats: LokiStats) -> None:
        logging.Handler.__init__(self)
        self.emitter = emitter
        self.stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        """Push one record to Loki."""
        try:
            self.emitter(record, self.format(record))
        except Exception:
            self.emitter.close()
            self.stats.failed += 1
        else:
            self.stats.sent += 1


class LokiQueueHandler(QueueHandler):
    """Queue records for a background sender; drop and count when the queue is full."""

    def __init__(self, cfg: LokiConfig, labels: dict[str, str], stats: LokiStats) -> None:
        self.records: queue.Queue[logging.LogRecord | None] = queue.Queue(maxsize=cfg.queue_size)
        super().__init__(self.records)
        auth = None
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else ""
            auth = (cfg.username, password)
        self.stats = stats
        self.sender = _LokiHandler(_Emitter(cfg.url, labels, auth, cfg.timeout_seconds), stats)
        self._thread = threading.Thread(target=self._drain, name="loki-sender", daemon=True)
        self._thread.start()

    def enqueue(self, record: logging.LogRecord) -> None:
        """Queue without ever blocking the caller."""
        try:
            self.records.put_nowait(record)
        except queue.Full:
            self.stats.dropped += 1

    def _drain(self) -> None:
        while True:
            record = self.records.get()
            try:
                if record is None:
                    return
                self.sender.handle(record)
            finally:
                self.records.task_done()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s until every queued record was handled; True if so."""
        return wait_until(lambda: self.records.unfinished_tasks == 0, timeout, 0.02)

    def flush(self) -> None:
        """Give queued records a short chance to reach Loki."""
        self.drain(timeout=2.0)

    def close(self) -> None:
        """Send what can be sent within a short deadline, then stop the sender; records still
        queued then (Loki down or hanging) are counted as dropped, never lost silently."""
        self.drain(timeout=2.0)
        left = 0
        while True:  # what the sender will not get to: counted, and out of its way
            try:
                record = self.records.get_nowait()
            except queue.Empty:
                break
            self.records.task_done()
            left += record is not None
        self.stats.dropped += left
        with contextlib.suppress(queue.Full):
            self.records.put_nowait(None)
        self._thread.join(timeout=2.0)
        super().close()


loki_stats = LokiStats()
_installed: list[logging.Handler] = []


def setup_logging(service: str, cfg: LoggingConfig | None = None) -> None:
    """Route the root logger to stderr (and Loki when configured) for ``service``."""
    cfg = cfg or LoggingConfig()
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter(service) if cfg.format == "json" else TextFormatter())
    _installed.append(stderr)
    if cfg.loki is not None:
        labels = {"service": service, "host": socket.gethostname(), **cfg.loki.labels}
        loki = LokiQueueHandler(cfg.loki, labels, loki_stats)
        loki.setFormatter(JsonFormatter(service))
        _installed.append(loki)
    for handler in _installed:
        root.addHandler(handler)
    root.setLevel(cfg.level)
    # Libraries' chatter (urllib3 retries, ...) must not flood the logs nor loop into Loki.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def collect_log_metrics() -> Iterator[Metric]:
    """The Loki shipper's health, for the process's /metrics."""
    yield CounterMetricFamily(
        "zcp_log_loki_sent", "Log records pushed to Loki.", value=loki_stats.sent
    )
    yield CounterMetricFamily(
        "zcp_log_loki_failed", "Log records whose push to Loki failed.", value=loki_stats.failed
    )
    yield CounterMetricFamily(
        "zcp_log_loki_dropped",
        "Log records dropped because the Loki queue was full.",
        value=loki_stats.dropped,
    )
    depth = sum(h.records.qsize() for h in _installed if isinstance(h, LokiQueueHandler))
    yield GaugeMetricFamily(
        "zcp_log_loki_queue_depth", "Log records waiting for Loki.", value=depth
    )


class FailureLog:
    """Logs a failing source on change, not on every scrape: its first failure and every new
    error message (warning), a reminder with the count while it stays failed (every
    ``every`` seconds), and its recovery (info)."""

    def __init__(
        self, logger: logging.Logger, message: str, every: float = 300.0, clock: Any = None
    ) -> None:
        self.logger = logger
        self.message = message
        self.every = every
        self.clock = clock or time.monotonic
        self._state: dict[str, tuple[str, float, int]] = {}  # key -> (error, logged at, n)
        self._lock = threading.Lock()

    def failed(self, key: str, error: str, **fields: Any) -> None:
        """One failure of ``key`` with ``error``."""
        now = self.clock()
        with self._lock:
            last = self._state.get(key)
            if last is not None and last[0] == error and now - last[1] < self.every:
                self._state[key] = (error, last[1], last[2] + 1)
                return
            repeats = last[2] if last is not None and last[0] == error else 0
            self._state[key] = (error, now, 1)
        extra = {"source": key, "error": error, **fields}
        if repeats:
            extra["failures_since_last_log"] = repeats
        self.logger.warning(self.message, extra=extra)

    def ok(self, key: str, **fields: Any) -> None:
        """``key`` answered: log its recovery if it was failing."""
        with self._lock:
            last = self._state.pop(key, None)
        if last is not None:
            self.logger.info(
                f"{self.message}: recovered", extra={"source": key, "failures": last[2], **fields}
            )
