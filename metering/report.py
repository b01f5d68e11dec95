"""Reports finance pulls: a month's lines in the FinOps FOCUS column vocabulary (CSV), JSON,
or an HTML statement with a chart of daily usage per meter.

Lines are grouped by the granularity asked (``hour``: the hourly usage records themselves;
``day``: per day of the account's billing timezone; ``month``), by meter, storage class,
resource and price entry. Exact amounts are summed, then rounded per line with the largest
remainder so that an account's lines sum exactly to its rounded total. Adjustment lines of a
final month (ChargeCategory ``Adjustment``) are listed each on its own.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from metering.meters import BY_NAME
from metering.models import Adjustment, Charge, Statement, UsageRecord
from metering.money import allocate, round_total
from metering.periods import Month, zone
from metering.pricing import PriceBook

FOCUS = [
    "BillingAccountId",
    "SubAccountId",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "ListUnitPrice",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ResourceId",
    "ServiceName",
    "SkuId",
    "x_StorageClass",
    "x_StatementStatus",
    "x_Records",
    "x_Flags",
    "x_LineId",
]
SERVICES = {
    "vm": "Compute",
    "volume": "Block Storage",
    "snapshot": "Block Storage",
    "object": "Object Storage",
    "network": "Network",
    "ip": "Network",
    "disk": "Block Storage",
}
QUANTITY = Decimal("1e-9")


@dataclass
class Line:
    """One report line (exact amount until rounded)."""

    account_id: str
    start: datetime
    end: datetime
    category: str
    meter: str
    storage_class: str
    resource_id: str
    quantity: Decimal  # billing units
    unit: str
    unit_price: Decimal
    amount: Decimal
    currency: str
    status: str
    records: int = 0
    flags: set[str] = field(default_factory=set)
    billed: Decimal = Decimal(0)
    line_id: str = ""

    def row(self) -> dict[str, str]:
        """The line as FOCUS columns."""
        meter = BY_NAME.get(self.meter)
        sku = self.meter + (f".{self.storage_class}" if self.storage_class else "")
        quantity = _plain(self.quantity.quantize(QUANTITY, ROUND_HALF_EVEN))
        description = meter.description if meter else self.meter
        if self.category == "Adjustment":
            description = f"Adjustment ({', '.join(sorted(self.flags))}) of {self.line_id}"
        return {
            "BillingAccountId": self.account_id,
            "SubAccountId": "",
            "ChargePeriodStart": _iso(self.start),
            "ChargePeriodEnd": _iso(self.end),
            "ChargeCategory": self.category,
            "ChargeDescription": description,
            "ConsumedQuantity": quantity,
            "ConsumedUnit": self.unit,
            "PricingQuantity": quantity,
            "PricingUnit": self.unit,
            "ListUnitPrice": _plain(self.unit_price),
            "BilledCost": str(self.billed),
            "EffectiveCost": str(self.billed),
            "BillingCurrency": self.currency,
            "ResourceId": self.resource_id,
            "ServiceName": SERVICES.get(self.meter.split(".")[0], "Other"),
            "SkuId": sku,
            "x_StorageClass": self.storage_class,
            "x_StatementStatus": self.status,
            "x_Records": str(self.records),
            "x_Flags": ",".join(sorted(self.flags)) if self.category == "Usage" else "",
            "x_LineId": self.line_id,
        }


def _plain(value: Decimal) -> str:
    """A decimal without trailing zeros and never in exponent notation (10, not 1E+1)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AccountReport:
    """An account's lines of one month and its rounded total."""

    account_id: str
    status: str
    currency: str
    timezone: str
    lines: list[Line]
    total: Decimal = Decimal(0)
    daily: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # meter -> day -> qty


def _bucket(t: datetime, granularity: str, tz: str, month: Month) -> tuple[datetime, datetime]:
    if granularity == "hour":
        return t, t + timedelta(hours=1)
    if granularity == "month":
        return month.start, month.end
    local = t.astimezone(zone(tz))
    day = datetime(local.year, local.month, local.day, tzinfo=zone(tz))
    nxt = datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=zone(tz))
    return max(day.astimezone(month.start.tzinfo), month.start), min(
        nxt.astimezone(month.start.tzinfo), month.end
    )


def build_reports(
    engine: Engine, book: PriceBook, month: str, account: str | None, granularity: str
) -> list[AccountReport]:
    """Every account's (or one account's) lines of ``month``."""
    Month.parse(month)
    with Session(engine) as s:
        q = (
            select(UsageRecord, Charge)
            .join(Charge, Charge.record_key == UsageRecord.key)
            .where(Charge.billing_month == month)
        )
        if account:
            q = q.where(Charge.account_id == account)
        statements = {
            st.account_id: st for st in s.scalars(select(Statement).where(Statement.month == month))
        }
        groups: dict[tuple[object, ...], Line] = {}
        daily: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(Decimal))
        )
        for rec, charge in s.execute(q.order_by(UsageRecord.period_start, UsageRecord.key)):
            acct = rec.account_id
            tz = statements[acct].timezone if acct in statements else book.tz(acct)
            m = Month.parse(month, tz)
            meter = BY_NAME.get(rec.meter)
            factor = meter.factor if meter else Decimal(1)
            unit = meter.unit if meter else rec.unit
            lo, hi = _bucket(rec.period_start, granularity, tz, m)
            key = (
                acct,
                lo,
                rec.meter,
                rec.storage_class,
                rec.resource_id,
                charge.price_version,
                charge.unit_price,
                rec.key if granularity == "hour" else "",
            )
            line = groups.get(key)
            if line is None:
                status = statements[acct].status if acct in statements else "draft"
                line = groups[key] = Line(
                    acct,
                    lo,
                    hi,
                    "Usage",
                    rec.meter,
                    rec.storage_class,
                    rec.resource_id,
                    Decimal(0),
                    unit,
                    charge.unit_price,
                    Decimal(0),
                    charge.currency,
                    status,
                )
            line.quantity += rec.quantity / factor
            line.amount += charge.amount
            line.records += 1
            if rec.flags:
                line.flags.update(rec.flags.split(","))
            day = rec.period_start.astimezone(zone(tz)).strftime("%Y-%m-%d")
            daily[acct][rec.meter][day] += rec.quantity / factor
        aq = select(Adjustment).where(Adjustment.month == month)
        if account:
            aq = aq.where(Adjustment.account_id == account)
        for adj in s.scalars(aq.order_by(Adjustment.created_at, Adjustment.key)):
            meter = BY_NAME.get(adj.meter)
            factor = meter.factor if meter else Decimal(1)
            groups[("adj", adj.key)] = Line(
                adj.account_id,
                adj.period_start,
                adj.period_start + timedelta(hours=1),
                "Adjustment",
                adj.meter,
                adj.storage_class,
                adj.resource_id,
                adj.quantity_delta / factor,
                meter.unit if meter else adj.unit,
                Decimal(0),
                adj.amount_delta,
                adj.currency,
                "final",
                1,
                {adj.reason},
                line_id=adj.record_key,
            )
    by_account: dict[str, list[Line]] = defaultdict(list)
    for line in groups.values():
        by_account[line.account_id].append(line)
    out = []
    for acct, lines in sorted(by_account.items()):
        lines.sort(
            key=lambda ln: (
                ln.category != "Usage",
                ln.start,
                ln.meter,
                ln.storage_class,
                ln.resource_id,
                str(ln.unit_price),
            )
        )
        currency = lines[0].currency
        for line, billed in zip(
            lines, allocate([ln.amount for ln in lines], currency), strict=True
        ):
            line.billed = billed
            if line.category == "Usage":
                line.line_id = _line_id(line)
        st = statements.get(acct)
        tz = st.timezone if st else book.tz(acct)
        out.append(
            AccountReport(
                acct,
                st.status if st else "draft",
                currency,
                tz,
                lines,
                round_total(sum((ln.amount for ln in lines), Decimal(0)), currency),
                {m: dict(d) for m, d in daily[acct].items()},
            )
        )
    return out


def _line_id(line: Line) -> str:
    text = (
        f"{line.account_id}|{_iso(line.start)}|{line.meter}|{line.storage_class}|"
        f"{line.resource_id}|{line.unit_price}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render(
    engine: Engine,
    book: PriceBook,
    month: str,
    account: str | None,
    granularity: str,
    fmt: str,
    status: str | None = None,
) -> str:
    """The report as text in ``fmt`` (csv, json, html); ``status`` overrides every statement's
    (``estimate``: the figures of hours not settled, not a bill)."""
    reports = build_reports(engine, book, month, account, granularity)
    if status is not None:
        for rep in reports:
            rep.status = status
            for line in rep.lines:
                line.status = status
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, FOCUS, lineterminator="\n")
        writer.writeheader()
        for rep in reports:
            writer.writerows(line.row() for line in rep.lines)
        return buf.getvalue()
    if fmt == "json":
        return (
            json.dumps(
                {
                    "month": month,
                    "granularity": granularity,
                    "price_book": book.version,
                    "accounts": [
                        {
                            "account_id": r.account_id,
                            "status": r.status,
                            "currency": r.currency,
                            "timezone": r.timezone,
                            "total": str(r.total),
                            "lines": [line.row() for line in r.lines],
                        }
                        for r in reports
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    return "".join(html_statement(month, reports))


def html_statement(month: str, reports: list[AccountReport]) -> Iterator[str]:
    """A statement a finance person can read: totals, a chart of daily usage per meter (inline
    SVG, no script), and the lines."""
    e = html.escape
    yield (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Statement {e(month)}</title><style>"
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border-bottom:1px solid #ddd;"
        "padding:4px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:"
        "tabular-nums}h2{margin-top:2em}.chart rect{fill:#3b7dd8}.chart text{font-size:"
        "11px;fill:#555}</style></head><body>"
    )
    yield f"<h1>Usage statement {e(month)}</h1>"
    if not reports:
        yield "<p>No usage in this month.</p>"
    for rep in reports:
        yield (
            f"<section class='account' data-account='{e(rep.account_id)}'>"
            f"<h2>Account {e(rep.account_id)}</h2><p>Status: <b>{e(rep.status)}</b> · "
            f"billing timezone {e(rep.timezone)} · total <b class='total'>"
            f"{e(str(rep.total))} {e(rep.currency)}</b></p>"
        )
        yield from _chart(rep)
        yield (
            "<table><thead><tr><th>Period</th><th>Category</th><th>Service</th>"
            "<th>SKU</th><th>Resource</th><th>Quantity</th><th>Unit price</th>"
            "<th>Amount</th></tr></thead><tbody>"
        )
        for line in rep.lines:
            row = line.row()
            yield (
                f"<tr><td>{e(row['ChargePeriodStart'])} &ndash; {e(row['ChargePeriodEnd'])}</td>"
                f"<td>{e(row['ChargeCategory'])}</td><td>{e(row['ServiceName'])}</td>"
                f"<td>{e(row['SkuId'])}</td><td>{e(row['ResourceId'])}</td>"
                f"<td class='n'>{e(row['ConsumedQuantity'])} {e(row['ConsumedUnit'])}</td>"
                f"<td class='n'>{e(row['ListUnitPrice'])}</td>"
                f"<td class='n'>{e(row['BilledCost'])} {e(rep.currency)}</td></tr>"
            )
        yield (
            f"</tbody><tfoot><tr><th colspan='7'>Total</th><th class='n'>"
            f"{e(str(rep.total))} {e(rep.currency)}</th></tr></tfoot></table></section>"
        )
    yield "</body></html>\n"


def _chart(rep: AccountReport) -> Iterator[str]:
    """One row of bars per meter: daily quantity, scaled to the meter's own maximum."""
    e = html.escape
    days = sorted({d for per in rep.daily.values() for d in per})
    if not days:
        return
    width, row_h, label_w = 24 * len(days) + 40, 56, 200
    meters = sorted(rep.daily)
    yield (
        f"<svg class='chart' role='img' aria-label='daily usage per meter' "
        f"width='{label_w + width}' height='{row_h * len(meters) + 20}'>"
    )
    for i, meter in enumerate(meters):
        per = rep.daily[meter]
        top = max(per.values(), default=Decimal(0)) or Decimal(1)
        y0 = i * row_h + 10
        unit = BY_NAME[meter].unit if meter in BY_NAME else ""
        yield (
            f"<text x='0' y='{y0 + 24}'>{e(meter)}</text><text x='0' y='{y0 + 38}'>max "
            f"{e(str(top.quantize(Decimal('0.001'))))} {e(unit)}/day</text>"
        )
        for j, day in enumerate(days):
            h = int(40 * per.get(day, Decimal(0)) / top)
            yield (
                f"<rect x='{label_w + j * 24}' y='{y0 + 44 - h}' width='18' height='{h}'>"
                f"<title>{e(day)}: {e(str(per.get(day, Decimal(0))))} {e(unit)}</title>"
                "</rect>"
            )
    yield "</svg>"
