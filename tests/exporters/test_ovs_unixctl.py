"""The unixctl client: deadline, replies split across reads, errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporters.ovs.unixctl import UnixctlError, UnixctlReplyError, UnixctlTimeout, call


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket, dict], None]], str]]:
    """A unix socket server answering each request with ``handler(conn, request)``."""
    socks: list[socket.socket] = []

    def start(handler: Callable[[socket.socket, dict], None]) -> str:
        path = str(tmp_path / f"s{len(socks)}.ctl")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(4)
        socks.append(srv)

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                request = json.loads(conn.recv(65536))
                handler(conn, request)

        threading.Thread(target=serve, daemon=True).start()
        return path

    yield start
    for s in socks:
        s.close()


def test_reply_split_across_reads(server: Callable[..., str]) -> None:
    def handler(conn: socket.socket, req: dict) -> None:
        body = json.dumps({"id": req["id"], "result": "lookups: hit:1\n" * 50, "error": None})
        for i in range(0, len(body), 7):
            conn.sendall(body[i : i + 7].encode())
            time.sleep(0.001)
        conn.close()

    assert call(server(handler), "dpctl/show") == "lookups: hit:1\n" * 50


def test_error_reply_and_missing_socket(server: Callable[..., str], tmp_path: Path) -> None:
    def handler(conn: socket.socket, req: dict) -> None:
        conn.sendall(
            json.dumps(
                {"id": req["id"], "result": None, "error": '"no/such" is not a valid command\n'}
            ).encode()
        )
        conn.close()

    # the daemon answered (an error): told apart from a channel that failed
    with pytest.raises(UnixctlReplyError, match="is not a valid command") as answered:
        call(server(handler), "no/such")
    assert answered.value.reply == '"no/such" is not a valid command'
    with pytest.raises(UnixctlError, match="No such file or directory") as failed:
        call(str(tmp_path / "absent.ctl"), "version")
    assert not isinstance(failed.value, UnixctlReplyError)


def test_a_silent_daemon_costs_the_deadline_only(server: Callable[..., str]) -> None:
    held: list[socket.socket] = []
    path = server(lambda conn, req: held.append(conn))  # accepts, never answers
    t0 = time.monotonic()
    with pytest.raises(UnixctlTimeout, match=r"no answer to coverage/show within 0\.3s"):
        call(path, "coverage/show", timeout=0.3)
    assert time.monotonic() - t0 < 1.5
