"""The federation gate (``zcp-obs tenants federation-proxy``): tenant stacks reach the operator
Prometheus's ``/federate`` only through it, and only for their own series.

A request carries a tenant's bearer token (``Authorization: Bearer ...``); the token's SHA-256 is
looked up in the tokens file (written by the reconciler, 0600, reloaded on change), comparing
every entry in constant time. Its ``match[]`` values, from the URL and from a form body alike,
are enforced (:mod:`tenant_stack.enforce`) and sent upstream as a new request of ours: nothing
else of the client's request is forwarded but ``Accept`` and ``Accept-Encoding``. The answer is
streamed back as it comes (compressed bytes stay compressed). It runs on the server the exporters
share (:mod:`zcp.httpserver`: TLS, timeouts, caps); its own metrics are on a separate local port,
so tenants' tokens never meet the operator's basic auth.

The relay lives in the server's event loop: the upstream is a pool of keep-alive connections on
asyncio streams whose answers ``httptools`` parses, and the body goes to the client in writes of
up to 64 KiB. No thread is handed a request, and no chunk crosses between threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httptools
import yaml
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tenant_stack.enforce import BadSelector, check_tenant, enforce_all, selectors_of
from zcp.config import GateConfig, split_listen
from zcp.errors import ConfigError, ZcpError
from zcp.files import write_atomic
from zcp.httpserver import HttpServer, Reply, Request, text
from zcp.logs import FailureLog, collect_log_metrics
from zcp.watched import Watched

log = logging.getLogger(__name__)
CHUNK = 65536
MAX_FIELDS = 256
FORM = "application/x-www-form-urlencoded"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_tokens(path: Path, digests: dict[str, str]) -> None:
    """The tokens file: tenant id -> SHA-256 hex of its token (0600, atomic)."""
    doc = {"tenants": {t: {"sha256": d} for t, d in sorted(digests.items())}}
    write_atomic(path, yaml.safe_dump(doc, sort_keys=True), 0o600)


def read_tokens(path: Path) -> tuple[dict[str, str], tuple[Path, ...]]:
    """The tokens file as tenant id -> SHA-256 hex (no file yet: no tenant). Any problem is
    one :class:`ConfigError` line."""
    where = f"tokens file {path}"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}, ()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not YAML") from None
    tenants = doc.get("tenants") if isinstance(doc, dict) else None
    if not isinstance(tenants, dict):
        raise ConfigError(f"{where}: no tenants mapping")
    out = {}
    for tenant, entry in tenants.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64:
            raise ConfigError(f"{where}: tenant {str(tenant)[:80]!r} has no sha256")
        try:
            out[check_tenant(str(tenant))] = digest
        except ZcpError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return out, ()


class Tokens(Watched[dict[str, str]]):
    """The tokens file, reloaded when it changes; a broken reload keeps the last good one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, read_tokens, "tokens file")

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant whose token this is, or None. Every entry is compared (in constant time
        each), so the answer's timing says nothing about which one matched or how far."""
        digests = self.current()
        if not authorization or authorization[:7].lower() != "bearer ":
            return None
        digest = token_digest(authorization[7:].strip())
        found = None
        for tenant, known in digests.items():
            if hmac.compare_digest(known, digest):
                found = tenant
        return found

    def __len__(self) -> int:
        return len(self.value)


class _Stale(Exception):
    """A pooled upstream connection the upstream had closed meanwhile."""


class _Answer:
    """One upstream answer as ``httptools`` (llhttp, the C parser uvicorn uses) reads it: the
    status and headers, then the body's bytes, de-chunked, as they come."""

    __slots__ = ("body", "framed", "head", "headers", "keep", "parser", "started", "whole")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.keep = False  # the connection may serve another request (llhttp's verdict)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.started = False  # a byte of it has come
        self.head = False  # the head is complete
        self.framed = False  # Content-Length or chunked: the end is known without EOF
        self.whole = False

    def on_message_begin(self) -> None:
        self.started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head = True
        coding = self.headers.get("transfer-encoding", "").lower()
        self.framed = "content-length" in self.headers or "chunked" in coding

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.whole = True
        self.keep = self.parser.should_keep_alive()  # only valid until the parser resets


class _Upstream:
    """One keep-alive connection to the upstream on asyncio streams; each answer read by a
    fresh ``httptools`` parser (h11 cost 20x more CPU reading a chunked answer: bench/README)."""

    __slots__ = ("answer", "reader", "timeout", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.answer = _Answer()

    def ask(self, request: bytes) -> None:
        self.answer = _Answer()
        self.writer.write(request)

    async def feed(self) -> bool:
        """Read what has come and parse it; False at EOF."""
        async with asyncio.timeout(self.timeout):
            data = await self.reader.read(CHUNK)
        if data:
            self.answer.parser.feed_data(data)
        return bool(data)

    def reusable(self) -> bool:
        return not self.writer.transport.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.transport.abort()


class _Relay:
    """An upstream body as it arrives, undecoded, in chunks of up to 64 KiB: Prometheus writes
    4 KiB at a time, and a write to the client per piece cost more than the rest of the relay
    together. Read to its end, the connection goes back to the pool; closed before that (a
    client that left, or never iterated), the connection is closed."""

    def __init__(self, up: _Upstream, release: Callable[[_Upstream], None]) -> None:
        self.up = up
        self.release = release
        self.settled = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        up, answer = self.up, self.up.answer
        size = sum(map(len, answer.body))
        while not answer.whole:
            if size >= CHUNK:
                yield b"".join(answer.body)
                answer.body.clear()
                size = 0
            before = len(answer.body)
            if not await up.feed():
                if answer.framed:
                    raise ConnectionResetError("the upstream closed mid-answer")
                break  # an answer that ends with the connection (neither length nor chunks)
            size += sum(len(b) for b in answer.body[before:])
        if answer.body:
            yield b"".join(answer.body)
            answer.body.clear()
        if not self.settled:
            self.settled = True
            if answer.whole and answer.keep:
                self.release(up)
            else:
                up.close()

    async def aclose(self) -> None:
        if not self.settled:
            self.settled = True
            self.up.close()


class Gate:
    """The gate's HTTP side: ``/federate`` for tenants, ``/metrics`` on a local port."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self.tokens = Tokens(cfg.tokens_file)
        split = urlsplit(cfg.upstream)
        https = split.scheme == "https"
        self.upstream_host = split.netloc
        self.upstream_addr = (split.hostname or "127.0.0.1", split.port or (443 if https else 80))
        self.upstream_tls = ssl.create_default_context() if https else None
        self.upstream_path = split.path.rstrip("/")
        self._idle: list[_Upstream] = []  # keep-alive, upstream; touched in the loop only
        self.requests: dict[tuple[str, int], int] = {}
        self.refused: dict[str, int] = {}
        self.upstream_errors = 0
        # logged on change: a down upstream is one line (and a reminder), not one per scrape
        self._upstream_log = FailureLog(log, "upstream Prometheus unreachable")
        self._lock = threading.Lock()
        host, port = split_listen(cfg.listen)
        self.http = HttpServer(
            "federation gate",
            host,
            port,
            {"/federate": self.federate},
            limits=cfg.limits(),
            web_config=cfg.web_config_file,
            methods=("GET", "POST"),
        )
        mhost, mport = split_listen(cfg.metrics_listen)
        self.metrics_http = HttpServer(
            "federation gate metrics", mhost, mport, {"/metrics": self.metrics}
        )
        self.port = self.http.port
        self.metrics_port = self.metrics_http.port

    def start(self) -> Gate:
        self.http.start()
        self.metrics_http.start()
        return self

    def shutdown(self) -> None:
        self.http.shutdown()
        self.metrics_http.shutdown()

    def _count(self, tenant: str, code: int) -> None:
        with self._lock:
            self.requests[(tenant, code)] = self.requests.get((tenant, code), 0) + 1

    def _refuse(self, reason: str, reply: Reply) -> Reply:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        return reply

    def _enforced(self, req: Request, tenant: str) -> list[str] | Reply:
        """The request's selectors made the tenant's, or the refusal to answer."""
        try:
            pairs = parse_qsl(
                req.query, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
            )
            if req.method == "POST":
                ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype != FORM:
                    self._count(tenant, 415)
                    return self._refuse("body", text(415, f"a POST body must be {FORM}"))
                pairs += parse_qsl(
                    req.body.decode("utf-8"),
                    keep_blank_values=True,
                    errors="strict",
                    max_num_fields=MAX_FIELDS,
                )
            return enforce_all(selectors_of(pairs), tenant)
        except (UnicodeDecodeError, ValueError) as exc:
            self._count(tenant, 400)
            return self._refuse("bad_request", text(400, f"bad request: {str(exc)[:200]}"))
        except BadSelector as exc:
            self._count(tenant, 400)
            return self._refuse("selector", text(400, str(exc)))

    async def federate(self, req: Request) -> Reply:
        """In the loop: the checks are pure and bounded by the server's head and body caps
        (tens of microseconds for a usual request); the rest is waiting on sockets."""
        tenant = self.tokens.tenant_of(req.headers.get("authorization"))
        if tenant is None:
            return self._refuse(
                "token", text(401, "unauthorized", **{"WWW-Authenticate": "Bearer"})
            )
        selectors = self._enforced(req, tenant)
        if isinstance(selectors, Reply):
            return selectors
        headers = [
            ("Host", self.upstream_host),
            ("Accept-Encoding", req.headers.get("accept-encoding", "identity")),
        ]
        if "accept" in req.headers:
            headers.append(("Accept", req.headers["accept"]))
        path = f"{self.upstream_path}/federate?" + urlencode([("match[]", x) for x in selectors])
        try:
            up = await self._upstream(path, headers)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            return self._bad_upstream(tenant, type(exc).__name__, "does not answer")
        code = up.answer.parser.get_status_code()
        if code != 200:
            up.close()
            return self._bad_upstream(tenant, f"HTTP {code}", f"answered {code}")
        self._upstream_log.ok(self.cfg.upstream)
        self._count(tenant, 200)
        got = up.answer.headers
        out = {"Content-Encoding": got["content-encoding"]} if "content-encoding" in got else {}
        relay = _Relay(up, self._release)
        return Reply(200, got.get("content-type") or "text/plain", relay, out)

    def _bad_upstream(self, tenant: str, error: str, what: str) -> Reply:
        """A 502, counted, and logged when the upstream's failure is new."""
        with self._lock:
            self.upstream_errors += 1
        self._upstream_log.failed(self.cfg.upstream, error)
        self._count(tenant, 502)
        return text(502, f"the upstream Prometheus {what}")

    def _release(self, up: _Upstream) -> None:
        if len(self._idle) < 16:
            self._idle.append(up)
        else:
            up.close()

    async def _upstream(self, path: str, headers: list[tuple[str, str]]) -> _Upstream:
        """GET ``path`` upstream on a pooled keep-alive connection, returned once the head of
        its answer is read; a pooled connection the upstream closed meanwhile is given up for
        a new one once."""
        # the values are h11's parse of the client's head (no CR, LF or NUL) or ours
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        request = (head + "\r\n").encode("latin-1")
        while True:
            up = self._idle.pop() if self._idle else None
            if up is not None and not up.reusable():
                up.close()
                continue
            fresh = up is None
            try:
                if up is None:
                    async with asyncio.timeout(self.cfg.upstream_timeout_seconds):
                        reader, writer = await asyncio.open_connection(
                            *self.upstream_addr, ssl=self.upstream_tls, limit=CHUNK
                        )
                    up = _Upstream(reader, writer, self.cfg.upstream_timeout_seconds)
                up.ask(request)
                while not up.answer.head:
                    if not await up.feed():
                        if not fresh and not up.answer.started:
                            raise _Stale()
                        raise ConnectionResetError("the upstream closed the connection")
                return up
            except (_Stale, ConnectionResetError, BrokenPipeError):
                if up is not None:
                    up.close()
                if fresh:
                    raise
                continue  # a pooled one the upstream had dropped: the next, or a new one
            except BaseException:
                if up is not None:
                    up.close()
                raise

    def metrics(self, req: Request) -> Reply:
        from prometheus_client.exposition import generate_latest

        return Reply(200, "text/plain; version=0.0.4", generate_latest(self))

    def collect(self) -> Iterator[Metric]:
        """The gate's own families (a collector for ``generate_latest``)."""
        reqs = CounterMetricFamily(
            "zcp_gate_requests",
            "Federation requests, by tenant and status.",
            labels=["tenant", "code"],
        )
        with self._lock:
            for (tenant, code), n in sorted(self.requests.items()):
                reqs.add_metric([tenant, str(code)], n)
            refused = dict(self.refused)
            errors = self.upstream_errors
        yield reqs
        ref = CounterMetricFamily(
            "zcp_gate_refused",
            "Requests refused, by reason (token, selector, body, bad_request).",
            labels=["reason"],
        )
        for reason, n in sorted(refused.items()):
            ref.add_metric([reason], n)
        yield ref
        yield CounterMetricFamily(
            "zcp_gate_upstream_errors", "Upstream requests that failed.", value=errors
        )
        yield GaugeMetricFamily("zcp_gate_tenants", "Tenants with a token.", value=len(self.tokens))
        yield GaugeMetricFamily(
            "zcp_gate_tokens_last_reload_successful",
            "Whether the tokens file's last load worked.",
            value=1 if self.tokens.last_ok else 0,
        )
        yield from self.http.metrics("zcp_gate")
        yield from collect_log_metrics()
