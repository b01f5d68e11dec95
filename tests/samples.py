"""Exposition samples for tests: parse a scrape (or families) and pick series by labels."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from zcp.wait import wait_until

__all__ = ["Samples", "from_families", "parse", "series", "value", "wait_until"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def from_families(families: Iterable[Metric]) -> Samples:
    """``{(sample name, label set): value}`` of families."""
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def parse(text: str) -> Samples:
    """The samples of an exposition text (Prometheus or OpenMetrics)."""
    return from_families(text_string_to_metric_families(text))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the one series ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} matches"
    return found[0]


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    """Label sets of the series ``name`` whose labels include ``labels``."""
    return [dict(ls) for (n, ls), _ in samples.items() if n == name and set(labels.items()) <= ls]
