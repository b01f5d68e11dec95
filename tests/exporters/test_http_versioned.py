"""The exporter HTTP server renders a versioned collector's families once per version."""

from __future__ import annotations

from collections.abc import Iterator

import requests
from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.http import ExporterServer


class Stepped:
    """Data that changes in steps (like the Ceph exporter's background refreshes)."""

    def __init__(self) -> None:
        self.value = 1
        self.renders = 0
        self.live = 0

    def version(self) -> object:
        return self.value

    def collect_versioned(self) -> Iterator[Metric]:
        self.renders += 1
        fam = GaugeMetricFamily("stepped_value", "The current step.", labels=["k"])
        fam.add_metric(["a"], self.value)
        yield fam

    def collect_live(self) -> Iterator[Metric]:
        self.live += 1
        yield GaugeMetricFamily("stepped_scrapes", "Scrapes seen.", value=self.live)

    def collect(self, timeout: float | None = None) -> Iterator[Metric]:
        yield from self.collect_versioned()
        yield from self.collect_live()


def test_versioned_families_are_rendered_once_per_version_and_format() -> None:
    col = Stepped()
    server = ExporterServer("stepped", col, "127.0.0.1", 0, 5.0).start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    om = {"Accept": "application/openmetrics-text; version=1.0.0"}
    try:
        for _ in range(3):
            text = requests.get(url, timeout=10).text
        assert 'stepped_value{k="a"} 1.0' in text and "stepped_scrapes 3.0" in text
        assert col.renders == 1 and col.live == 3
        body = requests.get(url, headers=om, timeout=10).text
        assert col.renders == 2  # another format, rendered once
        assert body.endswith("# EOF\n") and body.count("# EOF") == 1
        assert "# TYPE stepped_value gauge" in body
        col.value = 2
        text = requests.get(url, timeout=10).text
        assert 'stepped_value{k="a"} 2.0' in text and col.renders == 3
        assert "stepped_exporter_scrapes_total 5.0" in text
    finally:
        server.shutdown()
