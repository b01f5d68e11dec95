"""The HTTP side every exporter shares: ``/metrics`` with a per-scrape deadline.

Prometheus tells how long it will wait in ``X-Prometheus-Scrape-Timeout-Seconds``; a collector
that accepts a ``timeout`` gets that minus a safety margin (capped by the configured deadline), so
a slow source costs one ``*_up 0`` scrape, never a scrape timeout.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, runtime_checkable

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from exporters.exposition import Encoder
from zcp.errors import ZcpError
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


@dataclass(frozen=True)
class Reply:
    """What a route answers: status, content type, body and extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


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
    """Serve one exporter's collector (and the process's own metrics) over HTTP."""

    def __init__(
        self,
        name: str,
        collector: TimedCollector,
        host: str,
        port: int,
        deadline: float,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.name = name
        self.routes = dict(routes or {})
        self.host = host
        self.collector = collector
        self.deadline = deadline
        self.scrapes = 0
        self.scrape_errors = 0
        self.encoder = Encoder()
        self._rendered: dict[tuple[object, bool], bytes] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive (every reply has a Content-Length): Prometheus reuses its connection
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:  # taken, not ours, a bad address: one line, no traceback
            raise ZcpError(
                f"{name} exporter: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])

    def _own_metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{self.name}_exporter_scrapes", "Scrapes served.", value=self.scrapes
        )
        yield CounterMetricFamily(
            f"{self.name}_exporter_scrape_errors",
            "Scrapes that failed with an internal error.",
            value=self.scrape_errors,
        )
        yield from collect_log_metrics()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        route = self.routes.get(path)
        if route is not None:
            try:
                reply = route(query, {k.lower(): v for k, v in req.headers.items()})
            except Exception:
                log.exception("request failed", extra={"path": path})
                reply = Reply(500, "text/plain", b"internal error\n")
            self._reply(req, reply.status, reply.content_type, reply.body, reply.headers)
            return
        if path in ("/", ""):
            body = (
                f"<html><body><h1>zcp {self.name} exporter</h1>"
                f"<a href='/metrics'>metrics</a></body></html>"
            ).encode()
            self._reply(req, 200, "text/html; charset=utf-8", body)
            return
        if path != "/metrics":
            self._reply(req, 404, "text/plain", b"not found\n")
            return
        timeout = scrape_deadline(
            req.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), self.deadline
        )
        with self._lock:
            self.scrapes += 1
        _encoder, content_type = choose_encoder(req.headers.get("Accept", ""))
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
        self._reply(req, 200, content_type, body)

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

    @staticmethod
    def _reply(
        req: BaseHTTPRequestHandler,
        status: int,
        ctype: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            req.send_response(status)
            req.send_header("Content-Type", ctype)
            req.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                req.send_header(name, value)
            req.end_headers()
            req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper went away

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`."""
        self.httpd.serve_forever()

    def start(self) -> ExporterServer:
        """Serve in a background thread."""
        threading.Thread(target=self.serve_forever, name=f"{self.name}-http", daemon=True).start()
        return self

    def shutdown(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_until_signal(
    server: ExporterServer, cleanups: Sequence[Callable[[], object]], **context: object
) -> None:
    """Serve ``server`` until SIGTERM/SIGINT, then stop it and run ``cleanups`` in order (the
    shared life cycle of every ``zcp-obs exporter`` command); ``context`` goes into the log."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info(
        f"{server.name} exporter listening",
        extra={"listen": f"{server.host}:{server.port}", "deadline_s": server.deadline, **context},
    )
    stop.wait()
    log.info(f"{server.name} exporter stopping")
    server.shutdown()
    for cleanup in cleanups:
        cleanup()
