"""The fast encoder writes exactly what prometheus-client's encoders write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client import generate_latest as library_text
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as library_openmetrics

from exporters.exposition import Encoder
from exporters.libvirt.metrics import build_metrics
from exporters.libvirt.parse import group_stats, parse_domain_xml
from zcp.inventory.model import Inventory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "libvirt"


class _Fams:
    def __init__(self, fams: list[Metric]) -> None:
        self.fams = fams

    def collect(self) -> list[Metric]:
        return self.fams


def library(fams: list[Metric], encode: object) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fams(fams))  # type: ignore[arg-type]
    return encode(registry)  # type: ignore[operator,no-any-return]


def odd_families() -> list[Metric]:
    c = CounterMetricFamily(
        "odd_events", 'help with "quotes", a \\ backslash\nand a newline', labels=["path", "name"]
    )
    c.add_metric(['C:\\dir\\"x"', "line\nbreak"], 3)
    c.add_metric(["", "ünïcödé"], 1e21)
    g = GaugeMetricFamily("odd_values", "special floats", labels=["k"])
    for k, v in (
        ("nan", math.nan),
        ("inf", math.inf),
        ("-inf", -math.inf),
        ("neg", -0.5),
        ("big", 12345678901234567890.0),
        ("small", 1e-9),
        ("int", 7),
    ):
        g.add_metric([k], v)
    h = HistogramMetricFamily("odd_hist", "a histogram", labels=["a"])
    h.add_metric(["x"], buckets=[("1", 1), ("+Inf", 2)], sum_value=3)
    s = SummaryMetricFamily("odd_summary", "a summary", count_value=2, sum_value=1.5)
    i = InfoMetricFamily("odd_build", "an info", value={"version": "1.2"})
    ts = GaugeMetricFamily("odd_ts", "a sample with a timestamp", labels=["k"])
    ts.add_metric(["a"], 1, timestamp=1700000000.5)
    created = CounterMetricFamily("odd_created", "counter with created", created=1700000000.0)
    empty = GaugeMetricFamily("odd_empty", "no samples", labels=["k"])
    unlabelled = CounterMetricFamily("odd_plain", "plain", value=42)
    return [c, g, h, s, i, ts, created, empty, unlabelled]


def libvirt_families(default_inventory: Inventory) -> list[Metric]:
    records = json.loads((FIXTURES / "all_domain_stats.json").read_text())
    domains = [group_stats(r["uuid"], r["name"], r["stats"]) for r in records]
    xml = {}
    for p in FIXTURES.glob("*.xml"):
        d = parse_domain_xml(p.read_text())
        xml[d.uuid] = d
    return list(build_metrics(domains, xml, default_inventory, "kvm1"))


@pytest.mark.parametrize("source", ["odd", "libvirt", "process"])
def test_byte_for_byte_like_the_library(source: str, default_inventory: Inventory) -> None:
    fams = {
        "odd": odd_families,
        "libvirt": lambda: libvirt_families(default_inventory),
        "process": lambda: list(PROCESS_COLLECTOR.collect()) + list(PLATFORM_COLLECTOR.collect()),
    }[source]()
    assert fams
    enc = Encoder()
    for _ in range(2):  # second round from the label cache
        assert enc.text(fams) == library(fams, library_text)
        assert enc.openmetrics(fams) == library(fams, library_openmetrics)
    if source == "odd":
        assert enc.fallbacks > 0  # histogram, summary, info, timestamps went to the library
    if source == "libvirt":
        assert enc.fallbacks == 0 and len(enc.text(fams)) > 10_000


def test_label_cache_is_bounded() -> None:
    enc = Encoder(max_cached=10)
    fam = GaugeMetricFamily("g", "h", labels=["k"])
    for n in range(25):
        fam.add_metric([str(n)], n)
    assert enc.text([fam]) == library([fam], library_text)
    assert len(enc._labels) <= 10
