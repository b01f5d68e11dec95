"""The S3 probe (alerts/blackbox.py): the generated blackbox config and scrape job pass the
tools' own checks, and on real daemons Debian's blackbox exporter passes a healthy radosgw (the
session's Ceph lab), fails it stopped, fails an HTTP 200 that is not S3, and a real Prometheus
scraping the generated job sees ``probe_success{job="s3-probe"} == 1``."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.blackbox import JOB, MODULE, blackbox_config, scrape_job
from lab.blackbox import BlackboxExporter
from lab.ceph import CephLab
from lab.prometheus import PrometheusServer
from tests.support import need_binary
from zcp.wait import wait_until

EXPORTER = "127.0.0.1:9115"


def test_the_s3_module_demands_a_list_buckets_answer() -> None:
    module = blackbox_config(5)["modules"][MODULE]
    assert module["prober"] == "http"
    assert module["timeout"] == "5s"
    assert module["http"]["valid_status_codes"] == [200]
    assert any(
        "ListAllMyBucketsResult" in r for r in module["http"]["fail_if_body_not_matches_regexp"]
    )
    assert blackbox_config(2.5)["modules"][MODULE]["timeout"] == "2500ms"


def test_the_scrape_job_probes_each_zone_through_the_exporter() -> None:
    job = scrape_job(EXPORTER, {"zone-b": "https://s3.b.example", "zone-a": "http://s3.a:7480"})
    assert job["job_name"] == JOB == "s3-probe"
    assert job["metrics_path"] == "/probe"
    assert job["params"] == {"module": [MODULE]}
    assert job["static_configs"] == [
        {"targets": ["http://s3.a:7480"], "labels": {"zone": "zone-a"}},
        {"targets": ["https://s3.b.example"], "labels": {"zone": "zone-b"}},
    ]
    assert job["relabel_configs"][-1] == {"target_label": "__address__", "replacement": EXPORTER}


def test_generated_files_pass_the_tools_own_checks(tmp_path: Path) -> None:
    blackbox = need_binary("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    promtool = need_binary("promtool", "prometheus")
    (tmp_path / "blackbox.yml").write_text(yaml.safe_dump(blackbox_config(5)))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump({"scrape_configs": [scrape_job(EXPORTER, {"z1": "http://127.0.0.1:1"})]})
    )
    for argv in (
        [blackbox, "--config.check", f"--config.file={tmp_path / 'blackbox.yml'}"],
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# -- on real daemons --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlackboxExporter]:
    """Debian's blackbox exporter running the generated config."""
    need_binary("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    exporter = BlackboxExporter(tmp_path_factory.mktemp("blackbox"), blackbox_config(5))
    exporter.start()
    yield exporter
    exporter.stop()


class _Hello(BaseHTTPRequestHandler):
    """HTTP 200 "hello" to every GET: a web server, not S3."""

    def do_GET(self) -> None:
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def not_s3() -> Iterator[str]:
    """URL of a local HTTP server that answers 200 "hello"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.integration
def test_a_healthy_radosgw_passes(ceph_lab: CephLab, blackbox: BlackboxExporter) -> None:
    probe = blackbox.probe(ceph_lab.rgw_url, MODULE)
    assert probe["probe_success"] == 1, probe
    assert probe["probe_http_status_code"] == 200


@pytest.mark.integration
def test_a_stopped_radosgw_fails(ceph_lab: CephLab, blackbox: BlackboxExporter) -> None:
    ceph_lab.stop_rgw()
    try:
        probe = blackbox.probe(ceph_lab.rgw_url, MODULE)
        assert probe["probe_success"] == 0, probe
    finally:
        ceph_lab.start_rgw()
    assert blackbox.probe(ceph_lab.rgw_url, MODULE)["probe_success"] == 1


@pytest.mark.integration
def test_an_http_200_that_is_not_s3_fails(blackbox: BlackboxExporter, not_s3: str) -> None:
    probe = blackbox.probe(not_s3, MODULE)
    assert probe["probe_http_status_code"] == 200  # the body check, not the status, fails it
    assert probe["probe_failed_due_to_regex"] == 1
    assert probe["probe_success"] == 0


@pytest.mark.integration
def test_prometheus_scraping_the_job_sees_radosgw_up(
    ceph_lab: CephLab, blackbox: BlackboxExporter, prometheus: PrometheusServer
) -> None:
    prometheus.write_config(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [scrape_job(blackbox.address, {"lab": ceph_lab.rgw_url})],
        }
    )
    try:
        result = wait_until(lambda: prometheus.query(f'probe_success{{job="{JOB}"}}'), 20, 0.2)
    finally:
        prometheus.write_config({"global": {"scrape_interval": "1s"}, "scrape_configs": []})
    assert [(r["metric"]["instance"], r["metric"]["zone"], r["value"][1]) for r in result] == [
        (ceph_lab.rgw_url, "lab", "1")
    ]
