"""The operator Prometheus the tenant-stack tests share: three tenants' series through the real
tenant recording rules (tests/tenant_stack/cloud.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alerts.build import RULES, build
from alerts.rules import TENANT
from lab.prometheus import PrometheusServer
from tests.support import need_binary
from tests.tenant_stack.cloud import exposition
from zcp.config import AlertingConfig
from zcp.httpserver import HttpServer, Reply
from zcp.wait import wait_until


@pytest.fixture(scope="session")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    need_binary("prometheus", "prometheus")
    work = tmp_path_factory.mktemp("gate-operator")
    steps = iter(range(1, 10**9))
    source = HttpServer(
        "source",
        "127.0.0.1",
        0,
        {"/metrics": lambda req: Reply(200, "text/plain", exposition(next(steps)))},
    ).start()
    built = build(work / "alerts", AlertingConfig(), groups=[TENANT])
    prom = PrometheusServer(
        work / "prom",
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(built.rules)],
            "scrape_configs": [
                {
                    "job_name": "source",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{source.port}"]}],
                }
            ],
        },
    )
    assert (work / "alerts" / RULES).exists()
    prom.start()
    assert wait_until(lambda: prom.query("tenant:libvirt_domain_cpu_time_seconds:rate5m"), 60, 0.5)
    yield prom
    prom.stop()
    source.shutdown()
