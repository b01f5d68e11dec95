"""The price book: effective-dated Decimal prices per meter (and storage class), an ISO 4217
currency, per-account overrides and timezones, and one explicit proration rule.

A price is per billing unit of its meter (``meters.py``: Hours, GiB-Hours, GiB, Requests);
``per: month`` prices a time-based meter per unit-month, prorated to each hour either by the
calendar (the hours of that month in the account's billing timezone: 744, 743 or 745 in a DST
month, 720, ...) or by a fixed 730 hours (``proration: fixed-730``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pycountry
import yaml

from metering.errors import PriceBookError
from metering.meters import BY_NAME, CLASSES, Meter
from metering.periods import Month, zone

Proration = Literal["calendar", "fixed-730"]
TIME_UNITS = ("Hours", "vCPU-Hours", "GiB-Hours")


@dataclass(frozen=True)
class Price:
    """One effective-dated price; ``until`` is exclusive, None for open-ended."""

    meter: str
    storage_class: str
    amount: Decimal
    per: Literal["unit", "month"]
    since: datetime
    until: datetime | None
    account: str  # "" for the default book
    where: str  # "prices[3]", for messages

    def covers(self, t: datetime) -> bool:
        """Is this price in effect at instant ``t``?"""
        return self.since <= t and (self.until is None or t < self.until)

    @functools.cached_property
    def version(self) -> str:
        """A short stable id of this entry (lineage of every charge it rated)."""
        doc = [
            self.meter,
            self.storage_class,
            str(self.amount),
            self.per,
            self.since.isoformat(),
            self.until.isoformat() if self.until else "",
            self.account,
        ]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PriceBook:
    """The whole book, validated."""

    currency: str
    timezone: str
    proration: Proration
    prices: tuple[Price, ...]
    timezones: dict[str, str]  # account -> billing timezone
    version: str  # digest of the whole book

    def tz(self, account: str) -> str:
        """The billing timezone of ``account``."""
        return self.timezones.get(account, self.timezone)

    def price(self, meter: str, storage_class: str, account: str, t: datetime) -> Price:
        """The price in effect for a record of ``meter`` starting at ``t``: the account's
        override if it has one then, else the default."""
        for who in (account, ""):
            for p in self.prices:
                if (
                    p.account == who
                    and p.meter == meter
                    and p.storage_class == storage_class
                    and p.covers(t)
                ):
                    return p
        what = f"{meter}/{storage_class}" if storage_class else meter
        raise PriceBookError(f"price book {self.version}: no price for {what} at {t.isoformat()}")

    def unit_price(self, price: Price, meter: Meter, account: str, t: datetime) -> Decimal:
        """The price of one billing unit in the hour starting at ``t`` (prorated if monthly)."""
        if price.per == "unit":
            return price.amount
        if self.proration == "fixed-730":
            return price.amount / Decimal(730)
        month = Month.of(t, self.tz(account))
        return price.amount / Decimal(hours_in(month.year, month.month, month.tz))


@functools.lru_cache(maxsize=4096)
def hours_in(year: int, month: int, tz: str) -> int:
    """The hours of a month in a timezone (744, 720, 743 or 745 with DST, ...)."""
    return len(Month(year, month, tz).hours())


def _instant(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    raise PriceBookError(f"{where}: {value!r} is not a date (YYYY-MM-DD or an ISO time)")


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        raise PriceBookError(
            f'{where}: write the price as a string ("0.10"): a YAML float is not exact'
        )
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PriceBookError(f"{where}: {value!r} is not a number") from None
    if not amount.is_finite():
        raise PriceBookError(f"{where}: {value!r} is not a finite number")
    if amount < 0:
        raise PriceBookError(f"{where}: negative price {value}")
    return amount


KEYS = {"meter", "class", "price", "per", "from", "to"}


def _entries(items: Any, account: str, prefix: str) -> list[Price]:
    if not isinstance(items, list):
        raise PriceBookError(f"{prefix}: a list of prices")
    out = []
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]"
        if not isinstance(item, dict):
            raise PriceBookError(f"{where}: a mapping with meter, price, from")
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise PriceBookError(f"{where}: unknown key {unknown[0]!r}")
        meter = BY_NAME.get(str(item.get("meter")))
        if meter is None:
            raise PriceBookError(
                f"{where}: unknown meter {item.get('meter')!r} (one of {', '.join(BY_NAME)})"
            )
        where = f"{where} ({meter.name})"
        cls = str(item.get("class") or "")
        if meter.classes and cls not in CLASSES:
            raise PriceBookError(
                f"{where}: needs class: one of {', '.join(CLASSES)}"
                + (f", not {cls!r}" if cls else "")
            )
        if not meter.classes and cls:
            raise PriceBookError(f"{where}: {meter.name} has no storage classes")
        per = item.get("per", "unit")
        if per not in ("unit", "month"):
            raise PriceBookError(f"{where}: per is unit or month, not {per!r}")
        if per == "month" and meter.unit not in TIME_UNITS:
            raise PriceBookError(
                f"{where}: per: month needs a time-based meter "
                f"({meter.name} is priced per {meter.unit})"
            )
        if "price" not in item or "from" not in item:
            raise PriceBookError(f"{where}: needs price and from")
        since = _instant(item["from"], where)
        until = _instant(item["to"], where) if item.get("to") is not None else None
        if until is not None and until <= since:
            raise PriceBookError(f"{where}: to ({until.date()}) is not after from ({since.date()})")
        out.append(
            Price(
                meter.name, cls, _decimal(item["price"], where), per, since, until, account, where
            )
        )
    return out


def _no_overlaps(prices: list[Price]) -> None:
    by: dict[tuple[str, str, str], list[Price]] = {}
    for p in prices:
        by.setdefault((p.account, p.meter, p.storage_class), []).append(p)
    for group in by.values():
        group.sort(key=lambda p: p.since)
        for a, b in itertools.pairwise(group):
            if a.until is None or a.until > b.since:
                raise PriceBookError(
                    f"{b.where} overlaps {a.where}: both price "
                    f"{a.meter}{'/' + a.storage_class if a.storage_class else ''}"
                    f" from {b.since.date()}"
                )


def parse_price_book(data: Any, source: str = "<price book>") -> PriceBook:
    """Validate a parsed price book; every error names the entry."""
    if not isinstance(data, dict):
        raise PriceBookError(f"invalid price book {source}: the top level must be a mapping")
    try:
        unknown = sorted(set(data) - {"currency", "timezone", "proration", "prices", "accounts"})
        if unknown:
            raise PriceBookError(f"unknown key {unknown[0]!r}")
        currency = str(data.get("currency", ""))
        if len(currency) != 3 or pycountry.currencies.get(alpha_3=currency) is None:
            raise PriceBookError(f"currency: {currency!r} is not an ISO 4217 code (EUR, USD)")
        tz = str(data.get("timezone", "UTC"))
        zone(tz)
        proration = data.get("proration", "calendar")
        if proration not in ("calendar", "fixed-730"):
            raise PriceBookError(f"proration: calendar or fixed-730, not {proration!r}")
        prices = _entries(data.get("prices", []), "", "prices")
        timezones = {}
        accounts = data.get("accounts") or {}
        if not isinstance(accounts, dict):
            raise PriceBookError("accounts: a mapping of account uuid -> {timezone, prices}")
        for account, spec in accounts.items():
            where = f"accounts.{account}"
            if not isinstance(spec, dict) or set(spec) - {"timezone", "prices"}:
                raise PriceBookError(f"{where}: a mapping with timezone and/or prices")
            if "timezone" in spec:
                zone(str(spec["timezone"]))
                timezones[str(account)] = str(spec["timezone"])
            prices += _entries(spec.get("prices", []), str(account), f"{where}.prices")
        _no_overlaps(prices)
    except PriceBookError as exc:
        raise PriceBookError(f"invalid price book {source}: {exc}") from None
    canonical = json.dumps(
        {
            "currency": currency,
            "timezone": tz,
            "proration": proration,
            "timezones": timezones,
            "prices": sorted(p.version for p in prices),
        },
        sort_keys=True,
    )
    return PriceBook(
        currency,
        tz,
        proration,
        tuple(prices),
        timezones,
        hashlib.sha256(canonical.encode()).hexdigest()[:12],
    )


def load_price_book(path: Path | None) -> PriceBook:
    """The price book at ``path``, or the embedded default (the demo's) when None."""
    if path is None:
        text = resources.files("metering").joinpath("default_prices.yaml").read_text()
        source = "<embedded default price book>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PriceBookError(f"cannot read price book {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceBookError(f"invalid price book {source}: not valid YAML ({exc})") from None
    return parse_price_book(data, source)
