"""Structured logs to stderr and to Loki, checked against the Loki push API contract."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lab.procs import free_port
from zcp import logs
from zcp.config import parse_config


class LokiReceiver:
    """A local HTTP receiver speaking Loki's push API: POST /loki/api/v1/push -> 204."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.status = 204
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.set()
                receiver.hold.wait(30)
                if self.path != "/loki/api/v1/push":
                    self.send_response(404)
                else:
                    receiver.content_types.append(self.headers["Content-Type"])
                    receiver.pushes.append(json.loads(body))
                    self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loki() -> Iterator[LokiReceiver]:
    receiver = LokiReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    logs.loki_stats.__init__()  # type: ignore[misc]
    yield
    logs.setup_logging("test", parse_config({}).logging)
    logs.loki_stats.__init__()  # type: ignore[misc]


def loki_handler() -> logs.LokiQueueHandler:
    return next(h for h in logs._installed if isinstance(h, logs.LokiQueueHandler))


def test_push_payload_follows_the_loki_contract(loki: LokiReceiver) -> None:
    cfg = parse_config({"logging": {"loki": {"url": loki.url, "labels": {"site": "lab"}}}})
    logs.setup_logging("zcp-test", cfg.logging)
    before = time.time_ns()
    logging.getLogger("zcp.test").warning("disk %s is slow", "vda", extra={"vm_id": "v-1"})
    after = time.time_ns()
    assert loki_handler().drain(5)
    assert len(loki.pushes) == 1
    assert loki.content_types == ["application/json"]
    (stream,) = loki.pushes[0]["streams"]
    assert stream["stream"] == {
        "service": "zcp-test",
        "host": socket.gethostname(),
        "level": "warning",
        "site": "lab",
    }
    ((ts, line),) = stream["values"]
    assert isinstance(ts, str) and ts.isdigit()
    assert before - 1_000_000 <= int(ts) <= after  # the record's own time, in nanoseconds
    doc = json.loads(line)
    assert doc["msg"] == "disk vda is slow" and doc["vm_id"] == "v-1"
    assert doc["level"] == "warning" and doc["logger"] == "zcp.test"
    assert logs.loki_stats.sent == 1 and logs.loki_stats.failed == 0


def test_unreachable_loki_never_blocks_nor_raises(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    cfg = parse_config(
        {"logging": {"loki": {"url": f"http://127.0.0.1:{port}", "timeout_seconds": 1}}}
    )
    logs.setup_logging("zcp-test", cfg.logging)
    for i in range(20):
        logging.getLogger("zcp.test").error("event %d", i)
    assert loki_handler().drain(10)
    assert logs.loki_stats.failed == 20 and logs.loki_stats.sent == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count('"msg": "event') == 20  # stderr still has every line


def test_full_queue_drops_and_counts(loki: LokiReceiver) -> None:
    loki.hold.clear()  # Loki hangs: the sender is stuck on its first push
    cfg = parse_config(
        {"logging": {"loki": {"url": loki.url, "queue_size": 5, "timeout_seconds": 30}}}
    )
    logs.setup_logging("zcp-test", cfg.logging)
    log = logging.getLogger("zcp.test")
    log.info("event 0")
    assert loki.arrived.wait(10)  # the sender is now stuck inside its first push
    for i in range(1, 50):
        log.info("event %d", i)
    # 1 taken by the stuck sender, 5 queued, the rest dropped and counted
    assert logs.loki_stats.dropped == 44
    metrics = {m.name: m.samples[0].value for m in logs.collect_log_metrics()}
    assert metrics["zcp_log_loki_dropped"] == 44 and metrics["zcp_log_loki_queue_depth"] == 5
    loki.hold.set()
    assert loki_handler().drain(10)
    assert len(loki.pushes) == 6 and logs.loki_stats.sent == 6


def test_loki_error_status_is_counted(loki: LokiReceiver) -> None:
    loki.status = 400
    logs.setup_logging("zcp-test", parse_config({"logging": {"loki": {"url": loki.url}}}).logging)
    logging.getLogger("zcp.test").info("x")
    assert loki_handler().drain(5)
    assert logs.loki_stats.failed == 1 and logs.loki_stats.sent == 0


def test_text_format_for_humans(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("zcp-test", parse_config({"logging": {"format": "text"}}).logging)
    logging.getLogger("zcp.test").info("hello", extra={"vm_id": "v-1"})
    err = capsys.readouterr().err.strip()
    assert err.endswith("INFO    zcp.test: hello vm_id=v-1")


def test_records_left_at_close_are_counted_as_dropped(loki: LokiReceiver) -> None:
    loki.hold.clear()  # Loki hangs
    cfg = parse_config(
        {"logging": {"loki": {"url": loki.url, "queue_size": 100, "timeout_seconds": 30}}}
    )
    logs.setup_logging("zcp-test", cfg.logging)
    log = logging.getLogger("zcp.test")
    log.info("event 0")
    assert loki.arrived.wait(10)  # the sender is stuck inside its first push
    for i in range(1, 11):
        log.info("event %d", i)
    before = logs.loki_stats.dropped
    loki_handler().close()  # shutting down while Loki still hangs
    assert logs.loki_stats.dropped - before == 10  # the ten queued, none lost silently
    loki.hold.set()


def test_a_failing_source_is_logged_on_change_not_on_every_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    flog = logs.FailureLog(
        logging.getLogger("zcp.test.src"), "src failed", every=300, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO, logger="zcp.test.src"):
        for _ in range(100):  # a hundred scrapes of the same failure: one line
            flog.failed("rbd", "timed out")
            now[0] += 1
        flog.failed("rbd", "permission denied")  # a new error: a new line
        now[0] += 400
        for _ in range(3):
            flog.failed("rbd", "permission denied")  # still failing after `every`: a reminder
        flog.ok("rbd")
        flog.ok("rbd")  # healthy again and again: logged once
    got = [
        (
            r.levelname,
            r.getMessage(),
            getattr(r, "error", None),
            getattr(r, "failures_since_last_log", None),
            getattr(r, "failures", None),
        )
        for r in caplog.records
    ]
    assert got == [
        ("WARNING", "src failed", "timed out", None, None),
        ("WARNING", "src failed", "permission denied", None, None),
        ("WARNING", "src failed", "permission denied", 1, None),
        ("INFO", "src failed: recovered", None, None, 3),
    ]
