"""The HTTP side every exporter shares: ``/metrics`` with a per-scrape deadline.

Prometheus tells how long it will wait in ``X-Prometheus-Scrape-Timeout-Seconds``; a collector
that accepts a ``timeout`` gets that minus a safety margin (capped by the configured deadline), so
a slow source costs one ``*_up 0`` scrape, never a scrape timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from exporters.exposition import Encoder
from zcp.httpserver import Handler, HttpServer, Limits, Reply, Request, run_until_signal
from zcp.logs import collect_log_metrics

log = logging.getLogger(__name__)
MARGIN_SECONDS = 0.5
PLATFORM = list(PLATFORM_COLLECTOR.collect())  # python_info: constant for the process


class TimedCollector(Protocol):
    """A collector whose ``collect`` takes the scrape's deadline."""

    def collect(self, timeout: float | None = None) -> Iterator[Metric]: ...


@runtime_checkable
class VersionedCollector(Protocol):
    """A collector whose data changes in steps (background refreshes): families that only
    change with ``version()`` are rendered once per version; ``collect_live`` yields the few
    that change on their own (ages, counters of the process)."""

    def collect(self, timeout: float | None = None) -> Iterator[Metric]: ...

    def version(self) -> object: ...

    def collect_versioned(self) -> Iterator[Metric]: ...

    def collect_live(self) -> Iterator[Metric]: ...


Route = Callable[[str, Mapping[str, str]], Reply]
"""A path's handler besides /metrics: (query string, request headers with lower-case names)
-> :class:`Reply`."""


def scrape_deadline(header: str | None, default: float) -> float:
    """Seconds this scrape may take: Prometheus's timeout minus a margin, at most ``default``."""
    if not header:
        return default
    try:
        announced = float(header)
    except ValueError:
        return default
    if announced <= 0:
        return default
    return max(0.1, min(default, announced - MARGIN_SECONDS))


class ExporterServer:
    """Serve one exporter's collector (and the process's own metrics) on the shared, hardened
    HTTP server (:mod:`zcp.httpserver`: limits, TLS and basic auth from a web config file)."""

    def __init__(
        self,
        name: str,
        collector: TimedCollector,
        host: str,
        port: int,
        deadline: float,
        routes: Mapping[str, Route] | None = None,
        *,
        limits: Limits | None = None,
        web_config: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.collector = collector
        self.deadline = deadline
        self.scrapes = 0
        self.scrape_errors = 0
        self.encoder = Encoder()
        self._rendered: dict[tuple[object, bool], bytes] = {}
        self._lock = threading.Lock()
        handlers: dict[str, Handler] = {"/metrics": self._metrics, "/": self._landing}
        for path, route in (routes or {}).items():
            handlers[path] = _adapt(route)
        self.http = HttpServer(
            f"{name} exporter", host, port, handlers, limits=limits, web_config=web_config
        )
        self.port = self.http.port

    def _own_metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{self.name}_exporter_scrapes", "Scrapes served.", value=self.scrapes
        )
        yield CounterMetricFamily(
            f"{self.name}_exporter_scrape_errors",
            "Scrapes that failed with an internal error.",
            value=self.scrape_errors,
        )
        yield from self.http.metrics(f"{self.name}_exporter")
        yield from collect_log_metrics()

    def _landing(self, req: Request) -> Reply:
        body = (
            f"<html><body><h1>zcp {self.name} exporter</h1>"
            f"<a href='/metrics'>metrics</a></body></html>"
        ).encode()
        return Reply(200, "text/html; charset=utf-8", body)

    def _metrics(self, req: Request) -> Reply:
        timeout = scrape_deadline(
            req.headers.get("x-prometheus-scrape-timeout-seconds"), self.deadline
        )
        with self._lock:
            self.scrapes += 1
        _encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        cached = b""
        try:
            if isinstance(self.collector, VersionedCollector):
                cached = self._versioned_body(self.collector, openmetrics)
                families = list(self.collector.collect_live())
            else:
                families = list(self.collector.collect(timeout=timeout))
        except Exception:
            with self._lock:
                self.scrape_errors += 1
            log.exception("scrape failed")
            families = []
        families += list(self._own_metrics())
        families += list(PROCESS_COLLECTOR.collect()) + PLATFORM
        # the library decides the format; exporters/exposition.py writes it faster
        if openmetrics:
            body = cached + self.encoder.openmetrics(families)
        else:
            body = cached + self.encoder.text(families)
        return Reply(200, content_type, body)

    def _versioned_body(self, collector: VersionedCollector, openmetrics: bool) -> bytes:
        """The rendered families of a collector whose data changes in steps: rendered once per
        version (and format), then served as is."""
        version = collector.version()
        key = (version, openmetrics)
        with self._lock:
            hit = self._rendered.get(key)
        if hit is not None:
            return hit
        families = list(collector.collect_versioned())
        body = (
            self.encoder.openmetrics(families, eof=False)
            if openmetrics
            else self.encoder.text(families)
        )
        with self._lock:
            self._rendered = {k: v for k, v in self._rendered.items() if k[0] == version}
            self._rendered[key] = body
        return body

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`."""
        self.http.serve_forever()

    def start(self) -> ExporterServer:
        """Serve in a background thread."""
        self.http.start()
        return self

    def shutdown(self) -> None:
        """Stop serving."""
        self.http.shutdown()


def _adapt(route: Route) -> Handler:
    def handler(req: Request) -> Reply:
        return route(req.query, req.headers)

    return handler


def served(section: Any) -> dict[str, Any]:
    """The HTTP server's settings from an exporter's config section (``limits``,
    ``web_config``), as keyword arguments of :class:`ExporterServer`."""
    return {"limits": section.limits(), "web_config": section.web_config_file}


def serve_until_signal(
    server: ExporterServer, cleanups: Sequence[Callable[[], object]], **context: object
) -> None:
    """Serve ``server`` until SIGTERM/SIGINT, then stop it and run ``cleanups`` in order (the
    shared life cycle of every ``zcp-obs exporter`` command); ``context`` goes into the log."""
    run_until_signal(
        f"{server.name} exporter",
        server.start,
        server.shutdown,
        cleanups,
        listen=f"{server.host}:{server.port}",
        deadline_s=server.deadline,
        **context,
    )
