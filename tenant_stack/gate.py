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
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tenant_stack.enforce import BadSelector, check_tenant, enforce_all, selectors_of
from zcp.config import GateConfig, split_listen
from zcp.errors import ConfigError, ZcpError
from zcp.files import write_atomic
from zcp.httpserver import HttpServer, Reply, Request, text
from zcp.logs import collect_log_metrics
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


class Gate:
    """The gate's HTTP side: ``/federate`` for tenants, ``/metrics`` on a local port."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self.tokens = Tokens(cfg.tokens_file)
        split = urlsplit(cfg.upstream)
        self.upstream_scheme = split.scheme
        self.upstream_host = split.netloc
        self.upstream_path = split.path.rstrip("/")
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive, upstream
        self.requests: dict[tuple[str, int], int] = {}
        self.refused: dict[str, int] = {}
        self.upstream_errors = 0
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

    def federate(self, req: Request) -> Reply:
        tenant = self.tokens.tenant_of(req.headers.get("authorization"))
        if tenant is None:
            return self._refuse(
                "token", text(401, "unauthorized", **{"WWW-Authenticate": "Bearer"})
            )
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
            selectors = enforce_all(selectors_of(pairs), tenant)
        except (UnicodeDecodeError, ValueError) as exc:
            self._count(tenant, 400)
            return self._refuse("bad_request", text(400, f"bad request: {str(exc)[:200]}"))
        except BadSelector as exc:
            self._count(tenant, 400)
            return self._refuse("selector", text(400, str(exc)))
        headers = {"Accept-Encoding": req.headers.get("accept-encoding", "identity")}
        if "accept" in req.headers:
            headers["Accept"] = req.headers["accept"]
        path = f"{self.upstream_path}/federate?" + urlencode([("match[]", x) for x in selectors])
        try:
            conn, resp = self._upstream(path, headers)
        except (OSError, http.client.HTTPException) as exc:
            with self._lock:
                self.upstream_errors += 1
            log.warning("upstream Prometheus unreachable", extra={"error": type(exc).__name__})
            self._count(tenant, 502)
            return text(502, "the upstream Prometheus does not answer")
        if resp.status != 200:
            with self._lock:
                self.upstream_errors += 1
            status = resp.status
            conn.close()
            self._count(tenant, 502)
            return text(502, f"the upstream Prometheus answered {status}")
        self._count(tenant, 200)
        out = {}
        if resp.getheader("Content-Encoding"):
            out["Content-Encoding"] = resp.getheader("Content-Encoding", "")
        ctype = resp.getheader("Content-Type") or "text/plain"
        return Reply(200, ctype, self._relay(conn, resp), out)

    def _upstream(
        self, path: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET ``path`` upstream on a pooled keep-alive connection (http.client: a requests
        session cost ~2 ms a call here); a stale pooled connection is retried once."""
        for attempt in (0, 1):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            fresh = conn is None
            if conn is None:
                cls = (
                    http.client.HTTPSConnection
                    if self.upstream_scheme == "https"
                    else http.client.HTTPConnection
                )
                conn = cls(self.upstream_host, timeout=self.cfg.upstream_timeout_seconds)
            try:
                conn.request("GET", path, headers=headers)
                return conn, conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if fresh or attempt:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _relay(
        self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
    ) -> Iterator[bytes]:
        """The upstream body as it arrives, undecoded. Read to its end, the connection goes
        back to the pool; a client that leaves early (the generator closed) closes it."""
        done = False
        try:
            # read(n) fills n bytes across the upstream's own (small) chunks: few, large writes
            while chunk := resp.read(CHUNK):
                yield chunk
            done = resp.isclosed() and not resp.will_close
        finally:
            if done:
                self._release(conn)
            else:
                conn.close()

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()

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
