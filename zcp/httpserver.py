"""The HTTP server every exporter and the federation gate share: bounded, timed, TLS and auth.

Connections are served by one asyncio event loop (HTTP/1.1 parsed by ``h11``): an idle keep-alive
connection or a client that sends its request slowly costs a socket, never a thread. A request's
handler runs in a thread of its own; a coroutine handler (the federation gate's, which only
relays) runs in the loop itself. At most ``max_requests`` run at once (beyond that: 503, like
node_exporter's ``--web.max-requests``). Limits:

- ``idle_timeout``: a keep-alive connection with no request is closed after it;
- ``read_timeout``: a request (head and body) and a TLS handshake must arrive within it, counted
  from its first byte (a slowloris client is cut off however slowly it trickles);
- ``write_timeout``: the client must take each part of the reply within it;
- ``max_connections``: beyond it, the oldest idle connection is closed to admit the new one; when
  none is idle, the new one gets a 503 and is closed.

Other methods get 405 and unknown paths 404 without a thread. TLS, basic auth, extra headers and a
rate limit come from Prometheus's web configuration file (:mod:`zcp.webconfig`), reloaded on
change. Nothing reaches stderr as a raw traceback: expected failures (timeouts, resets, bad TLS,
bad HTTP) are counted and logged at debug level, anything else is logged as a structured record.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import h11
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zcp.errors import ZcpError
from zcp.webconfig import Web, WebConfigFile

log = logging.getLogger(__name__)
CHUNK = 65536


@dataclass(frozen=True)
class Limits:
    """How much the server gives any client (see the module's doc)."""

    max_requests: int = 40
    max_connections: int = 512
    idle_timeout: float = 120.0
    read_timeout: float = 10.0
    write_timeout: float = 30.0
    max_head_bytes: int = 16384
    max_body_bytes: int = 65536


@dataclass(frozen=True)
class Request:
    """What a handler is given: method, path, query string, headers (lower-case names), the
    peer's address and the user basic auth proved (None without auth)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    peer: str
    user: str | None = None
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    """What a handler answers. A ``body`` that is not bytes is an async iterable of chunks,
    sent chunked from the loop as they come."""

    status: int
    content_type: str
    body: bytes | AsyncIterable[bytes]
    headers: Mapping[str, str] = field(default_factory=dict)


# a plain function runs in a thread; a coroutine function in the loop (it must not block)
Handler = Callable[[Request], Reply] | Callable[[Request], Awaitable[Reply]]


def text(status: int, message: str, **headers: str) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", f"{message}\n".encode(), headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _head_size(req: h11.Request) -> int:
    return len(req.method) + len(req.target) + sum(len(k) + len(v) + 4 for k, v in req.headers)


class _Conn:
    __slots__ = ("idle", "reason", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.idle = False
        self.reason: str | None = None  # set when the server closes it


class _Closed(Exception):
    """The connection is over; ``reason`` is counted."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class HttpServer:
    """Serve ``routes`` (path -> handler) on ``host:port``; port 0 picks a free one."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        routes: Mapping[str, Handler],
        *,
        limits: Limits | None = None,
        web_config: Path | None = None,
        methods: tuple[str, ...] = ("GET", "HEAD"),
    ) -> None:
        self.name = name
        self.host = host
        self.routes = dict(routes)
        self.limits = limits or Limits()
        self.methods = methods
        self.web = WebConfigFile(web_config)  # a bad file is a ConfigError now, not later
        self.in_flight = 0
        self.responses: dict[int, int] = {}
        self.closed: dict[str, int] = {}
        self._conns: dict[_Conn, None] = {}  # insertion order: oldest first
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(1024)
        except OSError as exc:  # taken, not ours, a bad address: one line, no traceback
            raise ZcpError(
                f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> HttpServer:
        """Serve in a background thread (the event loop's)."""
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-http", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown`."""
        self._run()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, sock=self._sock, limit=CHUNK, backlog=1024)
            )
            self._ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def shutdown(self) -> None:
        """Stop serving: close the listener and every connection; handlers still running in
        their threads are abandoned (they are daemon threads and never hold up exit)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._sock.close()
            return

        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._conns):
                conn.reason = "shutdown"
                conn.writer.transport.abort()
            loop.call_later(0.05, loop.stop)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._sock.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            log.debug("http: %s", context.get("message"), extra={"error": repr(exc)})
            return
        log.warning(
            "http: event loop error",
            extra={"error": repr(exc) if exc else context.get("message"), "server": self.name},
        )

    # -- health -------------------------------------------------------------------------------

    def metrics(self, prefix: str) -> Iterator[Metric]:
        """The server's own health families, named ``<prefix>_http_*``."""
        p = f"{prefix}_http"
        yield GaugeMetricFamily(f"{p}_connections", "Open connections.", value=len(self._conns))
        yield GaugeMetricFamily(
            f"{p}_requests_in_flight", "Requests being handled.", value=self.in_flight
        )
        yield GaugeMetricFamily(
            f"{p}_max_requests",
            "Requests handled at once before 503.",
            value=self.limits.max_requests,
        )
        codes = CounterMetricFamily(f"{p}_responses", "Responses sent, by status.", labels=["code"])
        for code, n in sorted(self.responses.items()):
            codes.add_metric([str(code)], n)
        yield codes
        closed = CounterMetricFamily(
            f"{p}_connections_closed",
            "Connections closed, by reason (client, idle_timeout, read_timeout, "
            "write_timeout, evicted, refused, tls_error, bad_request, shutdown).",
            labels=["reason"],
        )
        for reason, n in sorted(self.closed.items()):
            closed.add_metric([reason], n)
        yield closed
        reloads = CounterMetricFamily(
            f"{p}_web_config_reloads", "Web config loads, by result.", labels=["result"]
        )
        reloads.add_metric(["success"], self.web.reloads_ok)
        reloads.add_metric(["failure"], self.web.reloads_failed)
        yield reloads
        yield GaugeMetricFamily(
            f"{p}_web_config_last_reload_successful",
            "Whether the last load of the web config worked (1) or the previous one is kept (0).",
            value=1 if self.web.last_ok else 0,
        )

    # -- connections --------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1

    def _admit(self) -> bool:
        """Room for one more connection: at the bound, the oldest idle one is closed."""
        if len(self._conns) < self.limits.max_connections:
            return True
        for conn in self._conns:
            if conn.idle:
                conn.idle = False
                conn.reason = "evicted"
                conn.writer.transport.close()
                del self._conns[conn]
                return True
        return False

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self._admit():
            self._count("refused")
            self._respond_raw(writer, 503, "too many connections")
            writer.transport.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # a streamed reply ends with a small write: without this, Nagle's algorithm holds
            # it for the client's delayed ACK (40 ms on every keep-alive request)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(writer)
        self._conns[conn] = None
        reason = "client"
        try:
            web = self.web.current()
            if web.tls is not None:
                try:
                    await writer.start_tls(web.tls, ssl_handshake_timeout=self.limits.read_timeout)
                except (ssl.SSLError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    log.debug(
                        "http: TLS handshake failed", extra={"peer": peer_s, "error": repr(exc)}
                    )
                    raise _Closed("tls_error") from None
                if web.allowed_sans and not web.sans_allowed(writer.get_extra_info("peercert")):
                    raise _Closed("tls_error")
            await self._serve(reader, writer, conn, peer_s)
        except _Closed as closed:
            reason = closed.reason
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "client"
        except asyncio.CancelledError:
            reason = "shutdown"
        except Exception:
            log.exception("http: connection failed", extra={"peer": peer_s, "server": self.name})
            reason = "error"
        finally:
            self._conns.pop(conn, None)
            self._count(conn.reason or reason)
            with contextlib.suppress(Exception):
                writer.transport.close()

    async def _read(self, reader: asyncio.StreamReader, timeout: float, reason: str) -> bytes:
        try:
            async with asyncio.timeout(max(timeout, 0.001)):
                return await reader.read(CHUNK)
        except TimeoutError:
            raise _Closed(reason) from None

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn, peer: str
    ) -> None:
        lim = self.limits
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=lim.max_head_bytes)
        while True:
            conn.idle = True
            started = 0.0
            body: list[bytes] = []
            size = 0
            request: h11.Request | None = None
            while True:  # one request: head, then body to its end
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint
                    await self._send(h, writer, text(status, "bad request"), head=False)
                    raise _Closed("bad_request") from None
                if event is h11.NEED_DATA:
                    if conn.idle and not h.trailing_data[0]:
                        data = await self._read(reader, lim.idle_timeout, "idle_timeout")
                    else:
                        left = lim.read_timeout - (time.monotonic() - started)
                        data = await self._read(reader, left, "read_timeout")
                    if conn.idle:
                        conn.idle = False
                        started = time.monotonic()
                    h.receive_data(data)  # b"" (EOF): h11 answers ConnectionClosed or an error
                    continue
                if conn.idle:
                    conn.idle = False
                    started = time.monotonic()
                if isinstance(event, h11.Request):
                    if _head_size(event) > lim.max_head_bytes:
                        reply = text(431, "request header fields too large", Connection="close")
                        await self._send(h, writer, reply, head=False)
                        raise _Closed("bad_request")
                    request = event
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    body.append(event.data)
                    if size > lim.max_body_bytes:
                        reply = text(413, "request body too large", Connection="close")
                        await self._send(h, writer, reply, head=False)
                        raise _Closed("bad_request")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    raise _Closed("client")
            assert request is not None
            await self._answer(h, writer, request, peer, b"".join(body))
            if h.our_state is h11.MUST_CLOSE or h.their_state is not h11.DONE:
                raise _Closed("client")
            h.start_next_cycle()

    async def _answer(
        self,
        h: h11.Connection,
        writer: asyncio.StreamWriter,
        req: h11.Request,
        peer: str,
        body: bytes,
    ) -> None:
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        head = method == "HEAD"
        if method not in self.methods:
            await self._send(
                h, writer, text(405, "method not allowed", Allow=", ".join(self.methods)), head
            )
            return
        handler = self.routes.get(path)
        if handler is None:
            await self._send(h, writer, text(404, "not found"), head)
            return
        if self.in_flight >= self.limits.max_requests:
            await self._send(
                h, writer, text(503, "too many requests in flight", **{"Retry-After": "1"}), head
            )
            return
        self.in_flight += 1
        try:
            web = self.web.current()
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in req.headers}
            if web.bucket is not None and not web.bucket.take():
                await self._send(h, writer, text(429, "too many requests"), head, web)
                return
            user = await self._authenticate(web, headers.get("authorization"))
            if user is False:
                reply = text(401, "unauthorized", **{"WWW-Authenticate": 'Basic realm="zcp-obs"'})
                await self._send(h, writer, reply, head, web)
                return
            request = Request(
                method, path, query, headers, peer, user if isinstance(user, str) else None, body
            )
            try:
                if inspect.iscoroutinefunction(handler):
                    reply = await handler(request)
                else:
                    reply = await self._in_thread(handler, request)
            except Exception:
                log.exception("request failed", extra={"path": path, "server": self.name})
                reply = text(500, "internal error")
            await self._send(h, writer, reply, head, web)
        finally:
            self.in_flight -= 1

    async def _authenticate(self, web: Web, authorization: str | None) -> str | bool:
        """True without auth, the user's name when proved, False otherwise."""
        if not web.users:
            return True
        user = web.cached(authorization)
        if user is None:
            user = await self._in_thread(web.verify, authorization)
        return user or False

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a daemon thread of its own; a future for its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not fut.done():
                (fut.set_result if ok else fut.set_exception)(value)

        def run() -> None:
            try:
                value = fn(*args)
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, False, exc)
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(settle, True, value)

        threading.Thread(target=run, name=f"{self.name}-request", daemon=True).start()
        return fut

    async def _send(
        self,
        h: h11.Connection,
        writer: asyncio.StreamWriter,
        reply: Reply,
        head: bool,
        web: Web | None = None,
    ) -> None:
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [("Content-Type", reply.content_type)]
        body = reply.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        headers += list(reply.headers.items())
        if web is not None:
            headers += list(web.headers.items())
        self.responses[reply.status] = self.responses.get(reply.status, 0) + 1
        out = h.send(
            h11.Response(status_code=reply.status, headers=headers, reason=_phrase(reply.status))
        )
        if isinstance(body, bytes):
            if not head and body:
                out += h.send(h11.Data(data=body))
            out += h.send(h11.EndOfMessage())
            await self._write(writer, out)
            return
        await self._stream(h, writer, out, body, head)

    async def _stream(
        self,
        h: h11.Connection,
        writer: asyncio.StreamWriter,
        out: bytes,
        body: AsyncIterable[bytes],
        head: bool,
    ) -> None:
        """Send an async body from the loop, each write once the last is taken. A chunk is
        held until the next one comes, so the response head goes with the first and the end
        with the last: a one-chunk answer is one write (each write wakes the client).
        ``body`` is closed at the end or when the client goes (or HEAD), releasing its source."""
        held = b""
        try:
            if not head:
                async for chunk in body:
                    if not chunk:
                        continue
                    if held:
                        await self._write(writer, out + h.send(h11.Data(data=held)))
                        out = b""
                    held = chunk
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        if held:
            out += h.send(h11.Data(data=held))
        await self._write(writer, out + h.send(h11.EndOfMessage()))

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
        except TimeoutError:
            raise _Closed("write_timeout") from None

    def _respond_raw(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = f"{message}\n".encode()
        self.responses[status] = self.responses.get(status, 0) + 1
        with contextlib.suppress(Exception):
            writer.write(
                f"HTTP/1.1 {status} {_phrase(status)}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )


def run_until_signal(
    name: str,
    start: Callable[[], object],
    stop: Callable[[], object],
    cleanups: Iterable[Callable[[], object]] = (),
    **context: object,
) -> None:
    """The life cycle of every serving command (exporters, the federation gate): ``start()``,
    log ``<name> listening`` with ``context``, wait for SIGTERM/SIGINT, ``stop()``, then run
    ``cleanups`` in order."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    start()
    log.info(f"{name} listening", extra=dict(context))
    stopping.wait()
    log.info(f"{name} stopping")
    stop()
    for cleanup in cleanups:
        cleanup()
