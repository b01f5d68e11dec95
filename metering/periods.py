"""Periods: hourly usage records on half-open UTC intervals, monthly statements in a billing
timezone (DST-safe: a month is its local midnights, whatever their UTC offsets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metering.errors import MeteringError

HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000


def to_ms(t: datetime) -> int:
    """A UTC datetime as integer milliseconds since the epoch."""
    if t.tzinfo is None:
        raise MeteringError(f"naive datetime {t}: times are UTC-aware")
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch as a UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def floor_hour(t: datetime) -> datetime:
    """The start of the UTC hour holding ``t``."""
    t = t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """The UTC hour starts in ``[start, end)``; both must be whole hours."""
    for edge in (start, end):
        if edge != floor_hour(edge):
            raise MeteringError(f"{edge.isoformat()} is not a whole UTC hour")
    t = start
    while t < end:
        yield t
        t += HOUR


def zone(name: str) -> ZoneInfo:
    """An IANA timezone, or a MeteringError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MeteringError(
            f"unknown timezone {name!r} (an IANA name, e.g. Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class Month:
    """A calendar month in a billing timezone; ``start``/``end`` are its UTC bounds."""

    year: int
    month: int
    tz: str

    @classmethod
    def parse(cls, text: str, tz: str = "UTC") -> Month:
        """``YYYY-MM``."""
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise MeteringError(f"{text!r} is not a month (YYYY-MM)")
        zone(tz)
        return cls(int(m.group(1)), int(m.group(2)), tz)

    @classmethod
    def of(cls, t: datetime, tz: str) -> Month:
        """The month of the billing timezone holding instant ``t``."""
        local = t.astimezone(zone(tz))
        return cls(local.year, local.month, tz)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> datetime:
        """Local midnight of the 1st, in UTC."""
        return datetime(self.year, self.month, 1, tzinfo=zone(self.tz)).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """Local midnight of the next month's 1st, in UTC."""
        y, m = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(y, m, 1, tzinfo=zone(self.tz)).astimezone(UTC)

    def hours(self) -> list[datetime]:
        """The UTC hours whose start lies in this month (a record belongs to the month of
        its start; exact for every zone whose offsets are whole hours)."""
        first = floor_hour(self.start)
        if first < self.start:
            first += HOUR
        out = []
        t = first
        while t < self.end:
            out.append(t)
            t += HOUR
        return out


def parse_instant(text: str) -> datetime:
    """``YYYY-MM-DD``, ``YYYY-MM-DDTHH[:MM]`` or an ISO instant (UTC unless it says)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise MeteringError(
            f"{text!r} is not a date or time (e.g. 2026-11-01 or 2026-11-01T13:00Z)"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
