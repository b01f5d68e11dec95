"""Exact records without reading every sample, where the store can prove nothing happened.

For each family and chunk a few range queries (one point per series and hour) let the store
answer, over the raw samples, whether an hour of a series is *regular*:
* every tile of ``T = max_gap / 2`` from the tile before the hour to the tile after it holds
  a sample (``count_over_time(count_over_time(F[T])[W:T])`` equals the number of subquery
  points, which ``count_over_time(vector(1)[W:T])`` gives on the same store): then no two
  consecutive samples are ``max_gap`` or more apart, the carried-in sample exists and the
  last sample's successor follows within ``max_gap``;
* a gauge, state or presence series has one value from the carried-in sample to the end of
  the hour (``min_over_time == max_over_time`` over that window): its integral is that value
  times 3600 s;
* a counter has no reset over the same window (``resets == 0``): its delta is the last
  sample before the end minus the last sample before the start (``last_over_time``).
For a regular hour that is exactly what ``compute.py`` computes from the raw samples. Every
other (resource, hour) is computed from raw samples, as is every hour of a resource when the
store cannot tell. The decision depends only on the samples around that hour, so the same
data always gives the same records whatever the chunking.

Records from aggregates report ``longest_gap_s`` as the bound ``max_gap`` (the exact gap is
only known from the raw samples) and a digest of the aggregates as their lineage.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from metering.compute import MS
from metering.meters import Meter
from metering.periods import HOUR_MS, from_ms
from metering.records import Record, Rules, key_of
from metering.source import QuerySource

Labels = tuple[tuple[str, str], ...]


@dataclass
class HourAggregates:
    """What the store said about one series in one hour."""

    tiles: int = 0
    samples: int = 0
    low: Decimal | None = None
    high: Decimal | None = None
    resets: Decimal | None = None
    before: Decimal | None = None  # counter: last sample before the hour
    last: Decimal | None = None  # counter: last sample before the hour's end


@dataclass
class FamilyAggregates:
    """A family's aggregates for one chunk: per series, per hour index."""

    points: dict[int, int] = field(default_factory=dict)  # hour -> subquery points per tile
    series: dict[Labels, dict[int, HourAggregates]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)


def _labels(metric: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def _tiles(rules: Rules) -> tuple[int, int, int]:
    """The tile (``max_gap / 2``), the window of a tile count (the hour and two tiles either
    side) and where a tile count is evaluated after its hour's start (ms)."""
    tile = rules.max_gap_ms // 2
    return tile, HOUR_MS + 4 * tile, HOUR_MS + 2 * tile - 1


def _index(t_s: float | str, shift: int, first: int) -> int:
    """The hour index (from ``first``) of an evaluation time ``shift`` ms after an hour."""
    return (round(float(t_s) * 1000) - shift - first) // HOUR_MS


@dataclass(frozen=True)
class Points:
    """How many subquery points a tile count has per hour on this store (the same for every
    family of a chunk: asked once)."""

    query: str
    per_hour: dict[int, int]


def points(source: QuerySource, hours: Sequence[int], rules: Rules) -> Points:
    """The subquery points per hour of the tile count (``count_over_time(vector(1)[W:T])``,
    evaluated where the families' tile counts are)."""
    tile, span, shift = _tiles(rules)
    first, last = hours[0], hours[-1]
    query = f"count_over_time(vector(1)[{span}ms:{tile}ms])"
    out: dict[int, int] = {}
    for item in source.range(query, first + shift, last + shift, HOUR_MS):
        for t, v in item["values"]:
            out[_index(t, shift, first)] = int(Decimal(v))
    return Points(query, out)


def aggregates(
    source: QuerySource,
    selector: str,
    counter: bool,
    hours: Sequence[int],
    rules: Rules,
    grid: Points,
) -> FamilyAggregates:
    """One family's aggregates for the hours starting at ``hours`` (ms); ``grid`` from
    :func:`points` for the same hours and rules."""
    tile, span, shift_tiles = _tiles(rules)
    out = FamilyAggregates(points=grid.per_hour, queries=[grid.query])
    first, last = hours[0], hours[-1]
    ends = (first + HOUR_MS, last + HOUR_MS)

    def run(query: str, lo: int, hi: int) -> list[dict[str, Any]]:
        out.queries.append(query)
        return source.range(query, lo, hi, HOUR_MS)

    @functools.cache  # a chunk has one evaluation time per hour
    def index(t_s: float | str, shift: int) -> int:
        return _index(t_s, shift, first)

    def each(query: str, lo: int, hi: int, shift: int, attr: str) -> None:
        integer = attr in ("tiles", "samples")
        for item in run(query, lo, hi):
            per = out.series.setdefault(_labels(item["metric"]), {})
            for t, v in item["values"]:
                h = index(t, shift)
                agg = per.get(h)
                if agg is None:
                    agg = per[h] = HourAggregates()
                setattr(agg, attr, int(Decimal(v)) if integer else Decimal(v))

    # the tile counts reach ``max_outage`` beyond the chunk: a series absent from an hour but
    # present on both sides within it may be in a gap (see fast_records)
    beyond = reach_hours(rules) * HOUR_MS
    each(
        f"count_over_time(count_over_time({selector}[{tile}ms])[{span}ms:{tile}ms])",
        first - beyond + shift_tiles,
        last + beyond + shift_tiles,
        shift_tiles,
        "tiles",
    )
    if not out.series:  # nothing of this family around these hours: nothing more to ask
        return out
    each(
        f"count_over_time({selector}[{HOUR_MS}ms])",
        ends[0] - 1,
        ends[1] - 1,
        HOUR_MS - 1,
        "samples",
    )
    window = HOUR_MS + 2 * tile
    if counter:
        each(f"resets({selector}[{window}ms])", ends[0] - 1, ends[1] - 1, HOUR_MS - 1, "resets")
        # the last sample before each hour boundary k (index k): hour i runs from
        # boundary i to boundary i + 1
        edges: dict[Labels, dict[int, Decimal]] = defaultdict(dict)
        for item in run(f"last_over_time({selector}[{2 * tile}ms])", first - 1, ends[1] - 1):
            for t, v in item["values"]:
                edges[_labels(item["metric"])][index(t, -1)] = Decimal(v)
        for labels, per in out.series.items():
            for i, agg in per.items():
                agg.before = edges[labels].get(i)
                agg.last = edges[labels].get(i + 1)
    else:
        each(f"min_over_time({selector}[{window}ms])", ends[0] - 1, ends[1] - 1, HOUR_MS - 1, "low")
        each(
            f"max_over_time({selector}[{window}ms])", ends[0] - 1, ends[1] - 1, HOUR_MS - 1, "high"
        )
    return out


def reach_hours(rules: Rules) -> int:
    """How many hours around an hour the other side of a gap can be."""
    return -(-rules.max_outage_ms // HOUR_MS)


def _around(per: dict[int, HourAggregates], i: int, k: int) -> bool:
    """Is a series absent from hour ``i`` present within ``k`` hours on both sides of it?"""
    return any(j in per for j in range(i - k, i)) and any(j in per for j in range(i + 1, i + k + 1))


def regular(agg: HourAggregates | None, points: int | None, counter: bool) -> bool:
    """Can this series-hour be computed from its aggregates alone?"""
    if agg is None or points is None or agg.tiles != points:
        return False
    if counter:
        return agg.resets == 0 and agg.before is not None and agg.last is not None
    return agg.low is not None and agg.low == agg.high


@dataclass
class FastResult:
    """Records computed from aggregates, and the (resource key, hour) pairs left for raw."""

    records: list[Record]
    raw: set[tuple[tuple[str, ...], int]]


def fast_records(
    meter: Meter,
    family: FamilyAggregates,
    weights: FamilyAggregates | None,
    hours: Sequence[int],
    rules: Rules,
    owners: dict[str, str] | None,
    evaluated: datetime,
) -> FastResult:
    """The records of every (resource, hour) whose series are all regular; the rest for raw.

    A resource-hour is regular when each of its series present around the hour is, and none
    of its series absent from the hour is present on both sides within ``max_outage`` (the
    hour may be inside that series' gap: the raw samples decide)."""
    counter = meter.kind == "counter"
    groups: dict[tuple[str, ...], list[Labels]] = defaultdict(list)
    for labels in family.series:
        d = dict(labels)
        key = tuple(d.get(k, "") for k in meter.key)
        if key[0]:
            groups[key].append(labels)
    records: list[Record] = []
    raw: set[tuple[tuple[str, ...], int]] = set()
    query = " ; ".join(family.queries)
    starts = [from_ms(h) for h in hours]
    ends = [from_ms(h + HOUR_MS) for h in hours]
    isos = [t.isoformat() for t in starts]
    bound = Decimal(rules.max_gap_ms) / MS
    names = {labels: repr(labels) for labels in family.series}
    reach = reach_hours(rules)
    for key, members in sorted(groups.items()):
        resource = key[0]
        cls = dict(zip(meter.key, key, strict=True)).get("storage_class", "")
        for i in range(len(hours)):
            present = [m for m in members if i in family.series[m]]
            if len(present) < len(members) and any(
                _around(family.series[m], i, reach) for m in members if i not in family.series[m]
            ):
                raw.add((key, i))
                continue
            if not present:
                continue
            aggs = [family.series[m][i] for m in present]
            if not all(regular(a, family.points.get(i), counter) for a in aggs):
                raw.add((key, i))
                continue
            quantity = Decimal(0)
            if counter:
                quantity = sum(
                    (Decimal(a.last or 0) - Decimal(a.before or 0) for a in aggs), Decimal(0)
                )
            else:
                values = []
                for m, a in zip(present, aggs, strict=True):
                    v = _value(meter, m, a, weights, i)
                    if v is None:
                        break
                    values.append(v)
                else:
                    quantity = max(values) * (HOUR_MS // 1000)
                if len(values) != len(present):
                    raw.add((key, i))
                    continue
            if not quantity:
                continue
            if meter.owner == "label":
                account = next(
                    (dict(m).get("account_id", "") for m in present if dict(m).get("account_id")),
                    "",
                )
            else:
                account = (owners or {}).get(resource, "")
            digest = hashlib.sha256(
                "|".join(
                    sorted(
                        f"{names[m]}:{a.tiles},{a.samples},{a.low},{a.high},{a.resets},{a.before},"
                        f"{a.last}"
                        for m, a in zip(present, aggs, strict=True)
                    )
                ).encode()
            ).hexdigest()[:32]
            start = starts[i]
            records.append(
                Record(
                    key_of(meter.name, resource, cls, isos[i], hours[i]),
                    meter.name,
                    start,
                    ends[i],
                    resource,
                    cls,
                    account,
                    quantity,
                    meter.base_unit,
                    sum(a.samples for a in aggs),
                    bound,
                    Decimal(0),
                    0,
                    "" if account else "unowned",
                    query,
                    evaluated,
                    digest,
                )
            )
    return FastResult(records, raw)


def _value(
    meter: Meter, labels: Labels, agg: HourAggregates, weights: FamilyAggregates | None, i: int
) -> Decimal | None:
    """A regular series' constant value as the meter counts it (None: needs raw)."""
    assert agg.low is not None
    if meter.kind == "presence":
        return Decimal(1)
    if meter.kind == "gauge":
        return agg.low
    on = meter.counts(dict(labels), agg.low)
    if not meter.weight:
        return Decimal(1 if on else 0)
    if not on:
        return Decimal(0)
    if weights is None:
        return None
    w = weights.series.get(labels, {}).get(i)
    if not regular(w, weights.points.get(i), False) or w is None:
        return None
    return w.low
