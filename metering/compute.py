"""Exact usage from raw samples: the pure core of metering.

Time is integer milliseconds (what both Prometheus and VictoriaMetrics store), values are
``Decimal`` parsed from the API's strings, periods are half-open ``[start, end)``. Nothing passes
through float, nothing is extrapolated.

The rules (docs/design.md, "Metering" and "The gap rule"):
* Counters: the delta of consecutive samples of one series, a decrease being a reset (the new
  value counts from zero), belongs to the period holding the later sample: the last sample
  before the period is carried in, so adjacent periods partition the total exactly. A
  series' first sample is its baseline.
* Gauges, states, presence: a sample holds until the next one when that comes within
  ``max_gap``, else for ``hold`` (one nominal scrape interval). The series of one resource
  are combined by their maximum at each instant, so a resource seen twice (a VM
  mid-migration) is never counted twice.
* Two consecutive samples more than ``max_gap`` and at most ``max_outage`` apart are a gap:
  not bridged, the time (no other series of the resource covered) unbilled in every period
  it overlaps, which is flagged. Further apart, the series ended and a new one started.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
MS = Decimal(1000)


@dataclass(frozen=True)
class Series:
    """One series: its labels and its samples ``(t_ms, value)`` in time order."""

    labels: tuple[tuple[str, str], ...]
    samples: tuple[tuple[int, Decimal], ...]

    def label(self, name: str) -> str:
        """A label's value, ``""`` when absent."""
        return dict(self.labels).get(name, "")


@dataclass
class Coverage:
    """How well the samples covered a period: what a record says about its own quality."""

    samples: int = 0  # samples inside the period
    longest_gap_ms: int = 0  # longest stretch between samples (or a period edge) inside it
    unbilled_ms: int = 0  # time not billed: gaps longer than max_gap
    resets: int = 0  # counter resets inside the period

    def merge(self, other: Coverage) -> None:
        """Fold another series' coverage of the same period into this one."""
        self.samples += other.samples
        self.longest_gap_ms = max(self.longest_gap_ms, other.longest_gap_ms)
        self.unbilled_ms += other.unbilled_ms
        self.resets += other.resets


@dataclass
class Usage:
    """A resource's quantity in a period, in the meter's base unit, with its coverage."""

    quantity: Decimal = ZERO
    coverage: Coverage = field(default_factory=Coverage)


def counter_delta(
    series: Series, start: int, end: int, max_gap: int, max_outage: int | None = None
) -> Usage:
    """The exact increase of one counter series in ``[start, end)``.

    Every pair of consecutive samples whose later one falls in the period contributes its
    delta when they are at most ``max_gap`` apart. A pair further apart but at most
    ``max_outage`` (default: no limit) apart is a gap: its delta is not billed and the part
    of it inside the period is unbilled time (also when the later sample is after the
    period). A pair further apart still is the series ending and starting again: nothing is
    billed or flagged. ``series`` must hold the neighbours of the period (``records._near``).
    """
    outage: float = math.inf if max_outage is None else max_outage
    s = series.samples
    lo = bisect.bisect_left(s, start, key=_time)
    hi = bisect.bisect_left(s, end, key=_time)
    usage = Usage()
    cov = usage.coverage
    cov.samples = hi - lo
    first = lo - 1 if lo > 0 else lo  # the pair across the start, if there is a sample before
    last = hi if hi < len(s) else hi - 1  # and the pair across the end
    for i in range(first, last):
        (t0, v0), (t1, v1) = s[i], s[i + 1]
        if t1 < start or t0 >= end:
            continue
        d = t1 - t0
        if d > outage:  # the series ended and a new one started: edges, not a gap
            if t0 >= start:
                cov.longest_gap_ms = max(cov.longest_gap_ms, min(t1, end) - t0)
            if t1 < end:
                cov.longest_gap_ms = max(cov.longest_gap_ms, t1 - max(t0, start))
            continue
        cov.longest_gap_ms = max(cov.longest_gap_ms, d)
        if d > max_gap:
            cov.unbilled_ms += min(t1, end) - max(t0, start)
        elif t1 >= end:
            pass  # the next period's delta
        elif v1 >= v0:
            usage.quantity += v1 - v0
        else:
            cov.resets += 1
            usage.quantity += v1
    if lo < hi:  # a series starting or ending in the period: from / to the period's edge
        if lo == 0 or start - s[lo - 1][0] > outage:
            cov.longest_gap_ms = max(cov.longest_gap_ms, s[lo][0] - start)
        if hi == len(s) or s[hi][0] - s[hi - 1][0] > outage:
            cov.longest_gap_ms = max(cov.longest_gap_ms, end - s[hi - 1][0])
    return usage


def _time(sample: tuple[int, Decimal]) -> int:
    return sample[0]


def steps(
    series: Series, max_gap: int, hold: int, value: Callable[[Decimal], Decimal] = lambda v: v
) -> list[tuple[int, int, Decimal]]:
    """The step function of a series: ``(from, to, value)`` pieces, each sample holding until
    the next one within ``max_gap``, else for ``hold``."""
    out = []
    samples = series.samples
    for i, (t, v) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else None
        until = nxt if nxt is not None and nxt - t <= max_gap else t + hold
        out.append((t, until, value(v)))
    return out


def integral(pieces: Iterable[list[tuple[int, int, Decimal]]], start: int, end: int) -> Usage:
    """The time integral (value x milliseconds) over ``[start, end)`` of the maximum of several
    step functions (one resource's series), with its coverage."""
    spans: list[tuple[int, int, Decimal]] = []
    usage = Usage()
    cov = usage.coverage
    for piece in pieces:
        for a, b, v in piece:
            if b > start and a < end:
                spans.append((max(a, start), min(b, end), v))
                cov.samples += a >= start
    if not spans:
        return usage
    # sweep over the span edges with the values live in between (a resource has one or two
    # series: the live set is tiny)
    events: dict[int, list[tuple[int, Decimal]]] = {}
    for a, b, v in spans:
        if a < b:
            events.setdefault(a, []).append((1, v))
            events.setdefault(b, []).append((-1, v))
    live: dict[Decimal, int] = {}
    covered_until: int | None = None
    prev: int | None = None
    for t in sorted(events):
        if prev is not None and live:
            usage.quantity += max(live) * (t - prev)
            covered_until = t
        for sign, v in events[t]:
            n = live.get(v, 0) + sign
            if n:
                live[v] = n
            else:
                live.pop(v, None)
        if live and covered_until is not None and t > covered_until:
            cov.longest_gap_ms = max(cov.longest_gap_ms, t - covered_until)
        prev = t
    return usage


def unbilled(
    pieces: Iterable[list[tuple[int, int, Decimal]]],
    raw: Iterable[Series],
    start: int,
    end: int,
    max_gap: int,
    max_outage: int | None = None,
) -> int:
    """Milliseconds inside ``[start, end)`` not billed because two samples of a series were more
    than ``max_gap`` and at most ``max_outage`` apart (a gap; further apart is the series
    ending and a new one starting), only the part no other series of the resource covered."""
    outage: float = math.inf if max_outage is None else max_outage
    holes: list[tuple[int, int]] = []
    for series in raw:
        s = series.samples
        for (t0, _v0), (t1, _v1) in itertools.pairwise(s):
            if max_gap < t1 - t0 <= outage:
                holes.append((t0, t1))
    if not holes:
        return 0
    covered = [(a, b) for piece in pieces for a, b, _v in piece]
    total = 0
    for a, b in holes:
        a, b = max(a, start), min(b, end)
        if a >= b:
            continue
        cuts = sorted({a, b, *(p for c, d in covered for p in (c, d) if a < p < b)})
        for lo, hi in itertools.pairwise(cuts):
            if not any(c <= lo and d >= hi for c, d in covered):
                total += hi - lo
    return total


def time_usage(
    series: Sequence[Series],
    start: int,
    end: int,
    max_gap: int,
    hold: int,
    value: Callable[[Series, Decimal], Decimal],
    max_outage: int | None = None,
) -> Usage:
    """A gauge/state/presence resource's usage in ``[start, end)``: the integral of the
    maximum of its series' step functions, ``value`` mapping each sample (state -> 0/1, or a
    weight), in base-unit x milliseconds converted to base-unit x seconds."""
    pieces = [steps(s, max_gap, hold, functools.partial(value, s)) for s in series]
    usage = integral(pieces, start, end)
    usage.coverage.unbilled_ms = unbilled(pieces, series, start, end, max_gap, max_outage)
    usage.quantity = usage.quantity / MS
    return usage


def counter_usage(
    series: Sequence[Series], start: int, end: int, max_gap: int, max_outage: int | None = None
) -> Usage:
    """A counter resource's usage: the sum of its series' exact deltas."""
    total = Usage()
    for s in series:
        one = counter_delta(s, start, end, max_gap, max_outage)
        total.quantity += one.quantity
        total.coverage.merge(one.coverage)
    return total


def weighted(state: Series, weights: Sequence[Series], counts: Callable[[Decimal], bool]) -> Series:
    """``state`` with each sample replaced by the weight in effect then (the weight series
    with the same labels) when ``counts`` says the state counts, else 0."""
    key = tuple((k, v) for k, v in state.labels)
    weight = next((w for w in weights if w.labels == key), None)
    values = weight.samples if weight else ()
    out = []
    j = -1
    for t, v in state.samples:
        while j + 1 < len(values) and values[j + 1][0] <= t:
            j += 1
        w = values[j][1] if j >= 0 else ZERO
        out.append((t, w if counts(v) else ZERO))
    return Series(state.labels, tuple(out))


def samples_hash(series: Iterable[Series]) -> str:
    """A digest of exactly the samples a record was computed from (its lineage: the period's
    samples and its neighbours, ``records._near``)."""
    h = hashlib.sha256()
    for s in sorted(series, key=lambda x: x.labels):
        if s.samples:  # a series with nothing near the period is not part of the record
            h.update(repr(s.labels).encode())
            h.update("".join(f"{t}:{v};" for t, v in s.samples).encode())
    return h.hexdigest()[:32]
