"""From fetched series to usage records: one per (meter, resource, storage class, UTC hour).

Pure: the series come from ``source.py``, the rules from the config; the result is plain data
with its lineage (query, evaluation time, a digest of the samples used) and its coverage.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from metering.compute import (
    MS,
    Series,
    Usage,
    counter_usage,
    samples_hash,
    time_usage,
    weighted,
)
from metering.meters import Meter
from metering.periods import HOUR_MS, from_ms
from metering.source import Fetched


@dataclass(frozen=True)
class Rules:
    """How gaps are treated (config ``metering.max_gap_seconds``, ``max_outage_seconds`` and
    ``scrape_interval_seconds``): samples up to ``max_gap`` apart are bridged; further apart,
    up to ``max_outage``, is a gap (not billed, flagged); further still is a series ending and
    a new one starting (not billed, not flagged); a sample with no successor within
    ``max_gap`` holds for ``hold``."""

    max_gap_ms: int = 300_000
    hold_ms: int = 60_000
    max_outage_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if not 0 < self.hold_ms <= self.max_gap_ms <= self.max_outage_ms:
            raise ValueError("the gap rules need 0 < hold <= max_gap <= max_outage")

    @property
    def reach_ms(self) -> int:
        """How far around a period its samples' neighbours are looked for."""
        return self.max_outage_ms


@dataclass(slots=True)
class Record:
    """One hourly usage record, quantity exact in the meter's base unit. (Not frozen: a
    frozen dataclass's ``__init__`` costs five times as much, and a month has millions.)"""

    key: str
    meter: str
    period_start: datetime
    period_end: datetime
    resource_id: str
    storage_class: str
    account_id: str
    quantity: Decimal
    unit: str
    samples: int
    longest_gap_s: Decimal
    unbilled_s: Decimal
    resets: int
    flags: str  # "" when clean; "gap" (time not billed), "unowned" (no CloudStack account)
    query: str
    evaluated_at: datetime
    samples_hash: str


def record_key(meter: str, resource_id: str, storage_class: str, start: datetime) -> str:
    """The deterministic id of a record: the same period, resource and meter always give it."""
    return key_of(
        meter, resource_id, storage_class, start.isoformat(), int(start.timestamp()) * 1000
    )


def key_of(meter: str, resource_id: str, storage_class: str, start_iso: str, start_ms: int) -> str:
    """:func:`record_key` with the start already in ISO 8601 and in ms (a chunk's hours are
    few): the hour since the epoch (8 hex digits), then 24 hex digits of the SHA-256 of meter,
    resource, class and start. Keys sort by time, so a run's inserts append to the key index
    instead of landing all over it (a month's backfill into SQLite: 2.3x faster inserts at
    3 M rows, measured)."""
    text = f"{meter}|{resource_id}|{storage_class}|{start_iso}"
    return f"{start_ms // HOUR_MS:08x}{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _near(series: Series, times: Sequence[int], start: int, end: int, rules: Rules) -> Series:
    """The samples a period ``[start, end)`` is computed from: those within ``max_gap`` of
    it, and the neighbour on each side beyond that when it is within ``max_outage`` (the other
    side of a gap). Nothing depends on samples further away, so the same data gives the same
    records whatever the chunking."""
    gap, outage = rules.max_gap_ms, rules.max_outage_ms
    lo = bisect.bisect_left(times, start - gap)
    hi = bisect.bisect_left(times, end + gap)
    if lo > 0 and times[lo - 1] >= start - outage:
        lo -= 1
    if hi < len(times) and times[hi] < end + outage:
        hi += 1
    return Series(series.labels, series.samples[lo:hi])


def _value(meter: Meter) -> Callable[[Series, Decimal], Decimal]:
    if meter.kind == "presence":
        return lambda _s, _v: Decimal(1)
    if meter.kind == "gauge" or meter.weight:
        return lambda _s, v: v
    return lambda s, v: Decimal(1 if meter.counts(dict(s.labels), v) else 0)


def build(
    meter: Meter,
    fetched: Fetched,
    hours: Sequence[int],
    rules: Rules,
    owners: dict[str, str] | None = None,
    weights: Fetched | None = None,
) -> list[Record]:
    """The records of ``meter`` for the hours starting at ``hours`` (ms) from ``fetched``."""
    series: Iterable[Series] = fetched.series
    if meter.weight:
        wanted = weights.series if weights is not None else []
        series = [
            weighted(s, wanted, functools.partial(meter.counts, dict(s.labels)))
            for s in fetched.series
        ]
    groups: dict[tuple[str, ...], list[Series]] = {}
    for s in series:
        key = tuple(s.label(k) for k in meter.key)
        if key[0]:
            groups.setdefault(key, []).append(s)
    value = _value(meter)
    gap, outage = rules.max_gap_ms, rules.max_outage_ms
    out = []
    evaluated = from_ms(fetched.at_ms)
    for key, members in sorted(groups.items()):
        resource = key[0]
        cls = dict(zip(meter.key, key, strict=True)).get("storage_class", "")
        if meter.owner == "label":
            account = next((s.label("account_id") for s in members if s.label("account_id")), "")
        else:
            account = (owners or {}).get(resource, "")
        times = [[t for t, _v in s.samples] for s in members]
        for h in hours:
            end = h + HOUR_MS
            near = [_near(s, ts, h, end, rules) for s, ts in zip(members, times, strict=True)]
            usage: Usage
            if meter.kind == "counter":
                usage = counter_usage(near, h, end, gap, outage)
            else:
                usage = time_usage(near, h, end, gap, rules.hold_ms, value, outage)
            cov = usage.coverage
            if not usage.quantity and not cov.unbilled_ms:
                continue
            flags = ",".join(
                f for f, on in (("gap", cov.unbilled_ms > 0), ("unowned", not account)) if on
            )
            start = from_ms(h)
            out.append(
                Record(
                    record_key(meter.name, resource, cls, start),
                    meter.name,
                    start,
                    from_ms(end),
                    resource,
                    cls,
                    account,
                    usage.quantity,
                    meter.base_unit,
                    cov.samples,
                    Decimal(cov.longest_gap_ms) / MS,
                    Decimal(cov.unbilled_ms) / MS,
                    cov.resets,
                    flags,
                    fetched.query,
                    evaluated,
                    samples_hash(near),
                )
            )
    return out
