"""Prometheus's web configuration file (the exporter-toolkit's ``--web.config.file``): TLS, basic
auth, response headers and a rate limit, in the format operators already write for node_exporter.

The file is checked on every connection and request (a ``stat`` of it and of the files it names);
a change is loaded at once, so renewed certificates are picked up without a restart. A reload that
fails keeps the last good configuration and is logged and counted. Relative paths are taken from
the file's own directory, as the exporter-toolkit does. What Python's ``ssl`` cannot do the way Go
does (``cipher_suites`` and ``curve_preferences`` by Go name, ``RequireAnyClientCert``) is refused
with one line rather than silently ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zcp.errors import ConfigError
from zcp.watched import Watched

log = logging.getLogger(__name__)

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
BCRYPT = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")
# checked against when the user is unknown, so a wrong name costs what a wrong password does
_DUMMY = bcrypt.hashpw(b"zcp-obs", bcrypt.gensalt(10))
_CACHE_SIZE = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    cert: str | None = None
    key: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca: str | None = None
    client_ca_file: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    @field_validator("cipher_suites", "curve_preferences")
    @classmethod
    def _go_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value:
            raise ValueError("Go's names are not supported here; OpenSSL's defaults apply")
        return value

    @field_validator("client_auth_type")
    @classmethod
    def _auth(cls, value: str) -> str:
        if value == "RequireAnyClientCert":
            raise ValueError(
                "RequireAnyClientCert (a certificate nobody verifies) is not supported; "
                "use RequireAndVerifyClientCert"
            )
        return value


class HttpServerConfig(_Strict):
    http2: bool = True  # accepted for compatibility: this server speaks HTTP/1.1
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in HEADERS:
                raise ValueError(f"header {name!r} cannot be set (allowed: {', '.join(HEADERS)})")
        return {k: v for k, v in value.items() if v}


class RateLimit(_Strict):
    interval: str = "0s"
    burst: int = Field(0, ge=0)

    def seconds(self) -> float:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", self.interval)
        if not match:
            raise ValueError(f"interval {self.interval!r} is not a duration like 1s or 500ms")
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
        return float(match.group(1)) * scale


class WebConfigModel(_Strict):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not BCRYPT.match(str(hashed)):
                raise ValueError(f"the password of {user!r} is not a bcrypt hash")
        return value


class TokenBucket:
    """The exporter-toolkit's rate limit: ``burst`` requests at once, one more per ``interval``."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) / self.interval)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


@dataclass
class Web:
    """One loaded web configuration: a TLS context (or None), users, headers, a rate limit."""

    tls: ssl.SSLContext | None = None
    allowed_sans: frozenset[str] = frozenset()
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    bucket: TokenBucket | None = None
    _ok: dict[tuple[str, bytes, bytes], None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, authorization: str | None) -> str | None:
        """The user these credentials proved before (no bcrypt needed), else None: then
        :meth:`verify` decides (slow, on purpose)."""
        creds = _credentials(authorization)
        if creds is None:
            return None
        user, password = creds
        hashed = self.users.get(user)
        if hashed is None:
            return None  # still costs a bcrypt check: no user enumeration by timing
        with self._lock:
            return user if (user, _digest(password), hashed) in self._ok else None

    def verify(self, authorization: str | None) -> str | None:
        """The user these credentials prove (bcrypt, ~70 ms at cost 10), else None."""
        creds = _credentials(authorization)
        if creds is None:
            return None
        user, password = creds
        hashed = self.users.get(user)
        secret = password.encode()
        if len(secret) > 72:  # bcrypt's limit: refuse rather than truncate
            return None
        good = bcrypt.checkpw(secret, hashed if hashed is not None else _DUMMY)
        if not good or hashed is None:
            return None
        with self._lock:
            if len(self._ok) >= _CACHE_SIZE:
                self._ok.pop(next(iter(self._ok)))
            self._ok[(user, _digest(password), hashed)] = None
        return user

    def sans_allowed(self, peercert: Any) -> bool:
        """Whether a client certificate's SANs include one of ``client_allowed_sans``."""
        if not self.allowed_sans:
            return True
        sans = {str(value) for _kind, value in (peercert or {}).get("subjectAltName", ())}
        return bool(sans & self.allowed_sans)


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def _credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())


class WebConfigFile:
    """A web configuration file kept current (:class:`zcp.watched.Watched`): ``current()`` is
    what the server calls per connection and request. Without a path, everything is off
    (plain HTTP, no auth)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._watched = Watched(path, load, "web config") if path is not None else None
        self._off = Web()

    def current(self) -> Web:
        return self._watched.current() if self._watched is not None else self._off

    @property
    def reloads_ok(self) -> int:
        return self._watched.reloads_ok if self._watched is not None else 0

    @property
    def reloads_failed(self) -> int:
        return self._watched.reloads_failed if self._watched is not None else 0

    @property
    def last_ok(self) -> bool:
        return self._watched.last_ok if self._watched is not None else True


def load(path: Path) -> tuple[Web, tuple[Path, ...]]:
    """Parse and check a web configuration file: the :class:`Web` it gives and the files it
    names (watched for changes). Any problem is one :class:`ConfigError` line."""
    where = f"web config {path}"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not a mapping")
    try:
        model = WebConfigModel.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{where}: {key}: {msg.removeprefix('Value error, ')}") from None
    base = path.parent
    files: list[Path] = []
    web = Web(
        users={u: h.encode() for u, h in model.basic_auth_users.items()},
        headers=dict(model.http_server_config.headers),
    )
    if model.rate_limit is not None:
        try:
            interval = model.rate_limit.seconds()
        except ValueError as exc:
            raise ConfigError(f"{where}: rate_limit: {exc}") from None
        if interval > 0:
            web.bucket = TokenBucket(interval, model.rate_limit.burst)
    tls = model.tls_server_config
    if tls is not None:
        web.tls = _context(tls, base, files, where)
        web.allowed_sans = frozenset(tls.client_allowed_sans)
    return web, tuple(files)


def _pem(inline: str | None, name: str | None, base: Path, files: list[Path]) -> Path | None:
    if name:
        p = Path(name) if Path(name).is_absolute() else base / name
        files.append(p)
        return p
    if inline:
        # ssl loads certificates from files only: a private temp file, gone at once
        fd, tmp = tempfile.mkstemp(prefix="zcp-web-", suffix=".pem")
        with os.fdopen(fd, "w") as fh:
            fh.write(inline)
        return Path(tmp)
    return None


def _context(tls: TlsServerConfig, base: Path, files: list[Path], where: str) -> ssl.SSLContext:
    if bool(tls.cert) == bool(tls.cert_file) or bool(tls.key) == bool(tls.key_file):
        raise ConfigError(
            f"{where}: tls_server_config: give the certificate and the key, each as a file "
            "(cert_file, key_file) or inline (cert, key)"
        )
    if tls.client_ca and tls.client_ca_file:
        raise ConfigError(f"{where}: tls_server_config: client_ca or client_ca_file, not both")
    verifying = tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if verifying and not (tls.client_ca or tls.client_ca_file):
        raise ConfigError(
            f"{where}: tls_server_config: {tls.client_auth_type} needs client_ca_file"
        )
    if tls.client_allowed_sans and tls.client_auth_type != "RequireAndVerifyClientCert":
        raise ConfigError(
            f"{where}: tls_server_config: client_allowed_sans needs RequireAndVerifyClientCert"
        )
    if VERSIONS[tls.min_version] > VERSIONS[tls.max_version]:
        raise ConfigError(f"{where}: tls_server_config: min_version is above max_version")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = VERSIONS[tls.min_version]
    ctx.maximum_version = VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    temps: list[Path] = []
    try:
        cert = _pem(tls.cert, tls.cert_file, base, files)
        key = _pem(tls.key, tls.key_file, base, files)
        ca = _pem(tls.client_ca, tls.client_ca_file, base, files)
        pairs = ((cert, tls.cert), (key, tls.key), (ca, tls.client_ca))
        temps = [p for p, inline in pairs if inline and p is not None]
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{where}: cannot load the certificate and key: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if ca is not None:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{where}: cannot load the client CA: {exc}") from None
    finally:
        for p in temps:
            p.unlink(missing_ok=True)
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_NONE,  # asked for, not required, not trusted
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return ctx
