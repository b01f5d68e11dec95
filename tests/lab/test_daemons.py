"""The daemon fixtures start real Prometheus/Alertmanager, and stop them by PID."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from lab.procs import free_port
from lab.prometheus import AlertmanagerServer, PrometheusServer
from tests.support import need_binary
from zcp.errors import DaemonError
from zcp.wait import wait_until

pytestmark = pytest.mark.integration


def wait_for(fn, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    result = wait_until(fn, timeout)
    assert result, "condition not met in time"
    return result


def test_prometheus_scrapes_a_target(prometheus: PrometheusServer) -> None:
    registry = CollectorRegistry()
    Gauge("zcp_fixture_probe", "probe", registry=registry).set(42)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.write_config(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "probe", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
        )
        result = wait_for(lambda: prometheus.query("zcp_fixture_probe"))
        assert result[0]["value"][1] == "42"
        assert result[0]["metric"]["job"] == "probe"
    finally:
        server.shutdown()


def test_alertmanager_accepts_and_returns_alerts(alertmanager: AlertmanagerServer) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "FixtureProbe", "severity": "info"},
        "annotations": {"summary": "probe"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    resp = requests.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=5)
    assert resp.status_code == 200
    held = wait_for(
        lambda: [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "FixtureProbe"]
    )
    assert held[0]["annotations"]["summary"] == "probe"


def test_stop_by_pid_keeps_the_log(tmp_path: Path) -> None:
    need_binary("prometheus", "prometheus")
    server = PrometheusServer(tmp_path, {"scrape_configs": []})
    server.start()
    pid = server.pid
    assert pid is not None and server.running()
    server.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert "Server is ready to receive web requests" in server.log_path.read_text()


def test_a_bad_config_fails_with_the_daemons_own_words(tmp_path: Path) -> None:
    need_binary("prometheus", "prometheus")
    server = PrometheusServer(tmp_path, {"scrape_configs": [{"job_name": 1, "bogus": True}]})
    with pytest.raises(DaemonError, match=r"prometheus exited with 2: .*field bogus not found"):
        server.start(timeout=20)
