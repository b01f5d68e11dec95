"""The lab's Prometheus and Alertmanager clients (used by the demo): an unreachable server, an
answer that is not JSON and one of the wrong shape are each one DaemonError line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lab.procs import free_port
from lab.prometheus import AlertmanagerServer, PrometheusServer
from zcp.errors import DaemonError


class Odd:
    """An HTTP server answering every GET with ``body`` (status 200)."""

    def __init__(self) -> None:
        self.body = b""
        odd = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(odd.body)))
                self.end_headers()
                self.wfile.write(odd.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def odd() -> Iterator[Odd]:
    server = Odd()
    yield server
    server.server.shutdown()


def clients(url: str) -> tuple[PrometheusServer, AlertmanagerServer]:
    # the clients only, pointed at ``url`` (no daemon is started)
    prom = PrometheusServer.__new__(PrometheusServer)
    am = AlertmanagerServer.__new__(AlertmanagerServer)
    prom.url = am.url = url
    return prom, am


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "that is not JSON"),
        (b'{"status": "success", "data": {}}', "unexpected answer, no data.result"),
        (b'{"status": "error", "error": "bad_data"}', "failed: bad_data"),
        (b"[1, 2]", "failed: [1, 2]"),
    ],
)
def test_odd_answers_are_one_line(odd: Odd, body: bytes, message: str) -> None:
    odd.body = body
    prom, _ = clients(odd.url)
    with pytest.raises(DaemonError) as exc:
        prom.query("up")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_rules_targets_and_alerts_check_their_shape(odd: Odd) -> None:
    prom, am = clients(odd.url)
    odd.body = b'{"data": {"groups": [{"name": "g"}], "activeTargets": []}}'
    assert prom.rules() == [{"name": "g"}] and prom.targets() == []
    odd.body = b'{"data": {}}'
    with pytest.raises(DaemonError, match=r"no data\.groups"):
        prom.rules()
    with pytest.raises(DaemonError, match="alertmanager alerts: unexpected answer"):
        am.alerts()


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    prom, _ = clients(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(
        DaemonError, match=r"^query 'up': cannot reach http://127\.0\.0\.1:\d+: ConnectionError$"
    ):
        prom.query("up")
