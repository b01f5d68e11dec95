"""The shared HTTP server under misbehaving clients: limits, timeouts, TLS, basic auth, streaming.

Real sockets on 127.0.0.1; every wait polls for the state it needs (no fixed sleeps)."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme
import yaml

from zcp.errors import ConfigError, ZcpError
from zcp.httpserver import HttpServer, Limits, Reply, Request
from zcp.wait import wait_until

OK = Reply(200, "text/plain", b"ok\n")


def hello(req: Request) -> Reply:
    return Reply(200, "text/plain", f"hello {req.user or 'anyone'}\n".encode())


@pytest.fixture
def make():
    servers: list[HttpServer] = []

    def make_(routes=None, **kw) -> HttpServer:
        server = HttpServer("test", "127.0.0.1", 0, routes or {"/metrics": hello}, **kw).start()
        servers.append(server)
        return server

    yield make_
    for s in servers:
        s.shutdown()


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_other_paths_and_methods_cost_no_handler(make) -> None:
    calls = []

    def counted(req: Request) -> Reply:
        calls.append(req.path)
        return OK

    server = make({"/metrics": counted})
    url = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{url}/nope", timeout=5).status_code == 404
    r = requests.post(f"{url}/metrics", data=b"x" * 100, timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert requests.delete(f"{url}/metrics", timeout=5).status_code == 405
    assert calls == []
    assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
    head = requests.head(f"{url}/metrics", timeout=5)
    assert head.status_code == 200 and head.content == b"" and calls == ["/metrics", "/metrics"]
    assert server.responses == {404: 1, 405: 2, 200: 2}


def test_requests_beyond_the_in_flight_cap_get_503(make) -> None:
    release = threading.Event()

    def slow(req: Request) -> Reply:
        release.wait(30)
        return OK

    server = make({"/metrics": slow}, limits=Limits(max_requests=2))
    url = f"http://127.0.0.1:{server.port}/metrics"
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(requests.get(url, timeout=30).status_code))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    assert wait_until(lambda: server.in_flight == 2, 10, 0.01)
    refused = requests.get(url, timeout=5)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    release.set()
    for t in threads:
        t.join(10)
    assert results == [200, 200]
    assert requests.get(url, timeout=5).status_code == 200  # the slots came back


def test_an_idle_connection_is_closed_after_the_idle_timeout(make) -> None:
    server = make(limits=Limits(idle_timeout=0.5))
    sock = raw(server.port)
    assert closed_by_server(sock, 10)
    assert wait_until(lambda: server.closed.get("idle_timeout") == 1, 5, 0.01)
    # keep-alive: an idle connection after a request is closed the same way
    sock = raw(server.port)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in sock.recv(4096)
    assert closed_by_server(sock, 10)
    assert wait_until(lambda: server.closed.get("idle_timeout") == 2, 5, 0.01)


def test_a_slowloris_client_is_cut_off_at_the_read_timeout(make) -> None:
    """One byte every 0.1 s keeps a per-read timeout happy forever; the request's own
    deadline (counted from its first byte) cuts it off, and others are served meanwhile."""
    server = make(limits=Limits(read_timeout=1.0, idle_timeout=60))
    sock = raw(server.port)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400
    started = time.monotonic()
    cut = False
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break
        if closed_by_server(sock, 0.1):
            cut = True
            break
        assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).ok
    assert cut, "the trickling client was never cut off"
    assert time.monotonic() - started < 30
    assert server.closed.get("read_timeout") == 1


def test_at_the_connection_bound_the_oldest_idle_goes_and_busy_ones_refuse(make) -> None:
    server = make(limits=Limits(max_connections=4, read_timeout=30, idle_timeout=60))
    idle = [raw(server.port) for _ in range(4)]
    assert wait_until(lambda: len(server._conns) == 4, 5, 0.01)
    # a real scrape still gets in: the oldest idle connection makes room
    assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).ok
    assert closed_by_server(idle[0], 5)
    assert server.closed.get("evicted") == 1
    # connections in the middle of a request are not idle: nothing to evict, the new one is refused
    busy = [raw(server.port) for _ in range(4)]
    for s in busy:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
    assert wait_until(lambda: sum(not c.idle for c in server._conns) == 4, 5, 0.01)
    refused = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert refused.status_code == 503 and server.closed.get("refused") == 1
    for s in idle + busy:
        s.close()


def test_hundreds_of_idle_and_slow_clients_pin_no_thread(make) -> None:
    """300 idle connections and 50 slowloris clients held open, then a scrape: it succeeds, and
    the server's thread count does not grow; after the timeouts every connection is gone."""
    server = make(limits=Limits(idle_timeout=2.0, read_timeout=2.0))
    baseline = threading.active_count()
    socks = [raw(server.port) for _ in range(300)]
    for _ in range(50):
        s = raw(server.port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    assert wait_until(lambda: len(server._conns) == 350, 20, 0.05), (
        len(server._conns),
        server.closed,
    )
    t0 = time.monotonic()
    assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).ok
    assert time.monotonic() - t0 < 5
    assert threading.active_count() <= baseline + 1  # a request's thread, at most
    assert wait_until(lambda: not server._conns, 30, 0.1), len(server._conns)
    assert server.closed.get("idle_timeout", 0) >= 300
    assert server.closed.get("read_timeout", 0) >= 50
    assert wait_until(lambda: threading.active_count() <= baseline, 5, 0.05)
    for s in socks:
        s.close()


def test_a_handler_error_is_a_500_and_the_server_goes_on(make, caplog) -> None:
    def broken(req: Request) -> Reply:
        raise RuntimeError("boom")

    server = make({"/metrics": broken, "/ok": hello})
    url = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{url}/metrics", timeout=5).status_code == 500
    assert requests.get(f"{url}/ok", timeout=5).ok
    assert any(r.getMessage() == "request failed" for r in caplog.records)


def test_bad_http_gets_400_and_an_oversized_head_431(make) -> None:
    server = make(limits=Limits(max_head_bytes=1024))
    sock = raw(server.port)
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    sock = raw(server.port)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 431")
    assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).ok


def reset_mid_answer(port: int, target: str) -> None:
    """Ask for ``target``, take the first bytes of the answer, then reset the connection."""
    sock = raw(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.recv(1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_a_coroutine_handler_runs_in_the_loop_and_its_async_body_is_closed_either_way(
    make,
) -> None:
    """The gate's kind of handler: no thread is started for it; its async body arrives whole,
    and it is closed when it ends and when a client leaves mid-answer; HEAD never starts it."""
    closed: list[str] = []
    threads: list[str] = []

    async def chunks(n: int, tag: str):  # type: ignore[no-untyped-def]
        try:
            for i in range(n):
                yield f"line {i}\n".encode() * 100
        finally:
            closed.append(tag)

    async def handler(req: Request) -> Reply:
        threads.append(threading.current_thread().name)
        return Reply(200, "text/plain", chunks(int(req.query or "1"), req.method + req.query))

    server = make({"/stream": handler})
    r = requests.get(f"http://127.0.0.1:{server.port}/stream?2000", timeout=30)
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.content.count(b"line 1999\n") == 100 and closed == ["GET2000"]
    assert threads == ["test-http"], "a coroutine handler runs in the loop's thread"
    sock = raw(server.port)
    sock.sendall(b"GET /stream?1 HTTP/1.1\r\nHost: x\r\n\r\n")
    one = b""
    while not one.endswith(b"\r\n0\r\n\r\n"):  # a one-chunk body: head, chunk, end
        one += sock.recv(65536)
    assert one.startswith(b"HTTP/1.1 200") and one.count(b"line 0\n") == 100
    sock.close()
    head = requests.head(f"http://127.0.0.1:{server.port}/stream?5", timeout=10)
    assert head.status_code == 200 and not head.content
    reset_mid_answer(server.port, "/stream?100000")
    assert wait_until(lambda: "GET100000" in closed, 30, 0.05), closed
    assert sorted(closed) == ["GET1", "GET100000", "GET2000"]  # HEAD's was never started


# -- the web configuration file: TLS, client certificates, basic auth ---------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_tls(tmp: Path, cert: trustme.LeafCert, **extra: object) -> Path:
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "server.crt"))
    conf = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **extra}}
    path = tmp / "web.yml"
    path.write_text(yaml.safe_dump(conf))
    return path


def served_cert(port: int, ca: trustme.CA) -> bytes:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_tls_serves_reloads_the_certificate_and_refuses_plain_http(make, ca, tmp_path) -> None:
    path = write_tls(tmp_path, ca.issue_cert("127.0.0.1"))
    server = make(web_config=path)
    url = f"https://127.0.0.1:{server.port}/metrics"
    with ca.cert_pem.tempfile() as bundle:
        assert requests.get(url, verify=bundle, timeout=5).text == "hello anyone\n"
    first = served_cert(server.port, ca)
    # plain HTTP to the TLS port fails cleanly, and the server goes on
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert wait_until(lambda: server.closed.get("tls_error") == 1, 5, 0.01)
    # a renewed certificate is served on the next connection, without a restart
    write_tls(tmp_path, ca.issue_cert("127.0.0.1"))
    second = served_cert(server.port, ca)
    assert second != first
    assert server.web.reloads_ok == 2 and server.web.last_ok


def test_a_broken_reload_keeps_the_last_good_config(make, ca, tmp_path) -> None:
    path = write_tls(tmp_path, ca.issue_cert("127.0.0.1"))
    server = make(web_config=path)
    first = served_cert(server.port, ca)
    (tmp_path / "server.key").write_text("not a key\n")
    assert served_cert(server.port, ca) == first
    assert server.web.reloads_failed == 1 and not server.web.last_ok
    metrics = {m.name: m for m in server.metrics("t")}
    assert metrics["t_http_web_config_last_reload_successful"].samples[0].value == 0


def test_client_certificates_are_required_and_verified(make, ca, tmp_path) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    path = write_tls(
        tmp_path,
        ca.issue_cert("127.0.0.1"),
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file="ca.crt",
    )
    server = make(web_config=path)
    url = f"https://127.0.0.1:{server.port}/metrics"
    client = ca.issue_cert("prometheus@example.org")
    stranger = trustme.CA().issue_cert("prometheus@example.org")
    with (
        ca.cert_pem.tempfile() as bundle,
        client.private_key_and_cert_chain_pem.tempfile() as mine,
        stranger.private_key_and_cert_chain_pem.tempfile() as theirs,
    ):
        assert requests.get(url, verify=bundle, cert=mine, timeout=5).ok
        for cert in (None, theirs):
            with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
                requests.get(url, verify=bundle, cert=cert, timeout=5)


def test_basic_auth_with_bcrypt_hashes(make, tmp_path, monkeypatch) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode()
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {"prom": hashed}}))
    checks = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checks.append(pw) or real(pw, h))
    server = make(web_config=path)
    url = f"http://127.0.0.1:{server.port}/metrics"
    none = requests.get(url, timeout=5)
    assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(url, auth=("prom", "wrong"), timeout=5).status_code == 401
    assert requests.get(url, auth=("nobody", "s3cret"), timeout=5).status_code == 401
    assert requests.get(url, auth=("prom", "s3cret"), timeout=5).text == "hello prom\n"
    assert requests.get(url, auth=("prom", "s3cret"), timeout=5).ok
    # bcrypt ran for the wrong password, the unknown user and the first right one; then cached
    assert len(checks) == 3
    bad = "Basic " + base64.b64encode(b"no-colon").decode()
    assert requests.get(url, headers={"Authorization": bad}, timeout=5).status_code == 401


def test_rate_limit_and_headers_from_the_web_config(make, tmp_path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "rate_limit": {"interval": "1h", "burst": 2},
                "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
            }
        )
    )
    server = make(web_config=path)
    url = f"http://127.0.0.1:{server.port}/metrics"
    codes = [requests.get(url, timeout=5) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[0].headers["X-Frame-Options"] == "deny"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}}, "cannot load"),
        ({"tls_server_config": {"cert_file": "a"}}, "give the certificate and the key"),
        ({"basic_auth_users": {"u": "plain"}}, "not a bcrypt hash"),
        ({"tls_sever_config": {}}, "tls_sever_config: unknown key"),
        ({"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}}, "Go's names"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "cannot be set"),
        ({"rate_limit": {"interval": "soon", "burst": 1}}, "not a duration"),
    ],
)
def test_a_bad_web_config_is_one_line(tmp_path, conf, message) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(ConfigError) as exc:
        HttpServer("test", "127.0.0.1", 0, {}, web_config=path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_port_in_use_is_one_line(make) -> None:
    server = make()
    with pytest.raises(ZcpError, match=f"test: cannot listen on 127.0.0.1:{server.port}"):
        HttpServer("test", "127.0.0.1", server.port, {})
