"""The job's own metrics, pushed to the Pushgateway after every run (the alert rules watch
``zcp_metering_last_run_success`` and ``zcp_metering_last_success_timestamp_seconds``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from sqlalchemy import Engine, Float, cast, func, select
from sqlalchemy.orm import Session

from metering.job import RunResult
from metering.meters import BY_NAME
from metering.models import Charge, UsageRecord

log = logging.getLogger(__name__)
JOB = "zcp-metering"


@dataclass(frozen=True)
class MonthUsage:
    """One tenant's usage of one meter in a billing month, in billing units, and its amount
    (for dashboards: summed by the database in floating point; the statements are exact)."""

    account_id: str
    meter: str
    month: str
    quantity: float
    amount: float


def month_to_date(engine: Engine, month: str) -> list[MonthUsage]:
    """Every (tenant, meter) charged in ``month`` (YYYY-MM), summed by the database."""
    query = (
        select(
            Charge.account_id,
            UsageRecord.meter,
            func.sum(cast(UsageRecord.quantity, Float)),
            func.sum(cast(Charge.amount, Float)),
        )
        .join(UsageRecord, UsageRecord.key == Charge.record_key)
        .where(Charge.billing_month == month, Charge.account_id != "")
        .group_by(Charge.account_id, UsageRecord.meter)
        .order_by(Charge.account_id, UsageRecord.meter)
    )
    with Session(engine) as s:
        rows = s.execute(query).all()
    out = []
    for account, meter, quantity, amount in rows:
        known = BY_NAME.get(meter)
        factor = float(known.factor) if known else 1.0
        out.append(
            MonthUsage(account, meter, month, float(quantity or 0) / factor, float(amount or 0))
        )
    return out


def registry_for(
    result: RunResult | None, error: str, usage: Iterable[MonthUsage] = (), currency: str = ""
) -> CollectorRegistry:
    """The metrics of one run (``result`` None: it failed with ``error``) and the usage of
    the month of its last hour."""
    reg = CollectorRegistry()
    Gauge(
        "zcp_metering_last_run_success", "1 if the last metering run succeeded.", registry=reg
    ).set(0 if result is None else 1)
    Gauge(
        "zcp_metering_last_run_timestamp_seconds", "When the last metering run ended.", registry=reg
    ).set(time.time())
    if result is not None:
        Gauge(
            "zcp_metering_last_success_timestamp_seconds",
            "When the last successful metering run ended.",
            registry=reg,
        ).set(time.time())
        Gauge(
            "zcp_metering_records_written", "Usage records the last run wrote.", registry=reg
        ).set(result.records)
        Gauge(
            "zcp_metering_adjustments_written", "Adjustment lines the last run wrote.", registry=reg
        ).set(result.adjustments)
        Gauge(
            "zcp_metering_coverage_warnings",
            "Records of the last run with time not billed or no owner.",
            registry=reg,
        ).set(result.coverage_warnings)
        Gauge("zcp_metering_hours_processed", "Hours the last run metered.", registry=reg).set(
            result.hours
        )
        Gauge("zcp_metering_samples_read", "Raw samples the last run read.", registry=reg).set(
            result.samples
        )
        Gauge(
            "zcp_metering_watermark_timestamp_seconds",
            "End of the last hour metered by the last run.",
            registry=reg,
        ).set(result.end.timestamp())
    quantity = Gauge(
        "zcp_metering_usage",
        "Usage charged in the billing month so far, in "
        "the meter's billing unit (display only: statements are exact).",
        ["account_id", "meter", "unit", "month"],
        registry=reg,
    )
    amount = Gauge(
        "zcp_metering_charges",
        "Amount charged in the billing month so far (display only: statements are exact).",
        ["account_id", "currency", "month"],
        registry=reg,
    )
    totals: dict[tuple[str, str], float] = {}
    for u in usage:
        known = BY_NAME.get(u.meter)
        quantity.labels(u.account_id, u.meter, known.unit if known else "", u.month).set(u.quantity)
        totals[(u.account_id, u.month)] = totals.get((u.account_id, u.month), 0.0) + u.amount
    for (account, month), value in totals.items():
        amount.labels(account, currency, month).set(value)
    return reg


def push_result(
    url: str | None,
    result: RunResult | None,
    error: str,
    duration: float | None = None,
    engine: Engine | None = None,
    currency: str = "",
) -> None:
    """Push to the Pushgateway at ``url`` (nothing without one); a failed push is logged, never
    fatal: the records are already written. With ``engine``, the month-to-date usage of the
    month holding the run's last hour is pushed too."""
    if not url:
        return
    usage: list[MonthUsage] = []
    if engine is not None and result is not None and result.end > result.start:
        month = f"{result.end - timedelta(hours=1):%Y-%m}"
        try:
            usage = month_to_date(engine, month)
        except Exception as exc:  # the records are written: the dashboard can wait
            log.warning("cannot sum the month's usage", extra={"error": str(exc)})
    reg = registry_for(result, error, usage, currency)
    if duration is not None:
        Gauge(
            "zcp_metering_last_run_duration_seconds", "Duration of the last run.", registry=reg
        ).set(duration)
    try:
        # POST replaces only the metrics pushed: a failed run keeps the last success's
        # timestamp (so MeteringJobLate still sees it), a PUT would drop it
        pushadd_to_gateway(url, job=JOB, registry=reg, timeout=10)
    except OSError as exc:
        log.warning("cannot push metering metrics", extra={"url": url, "error": str(exc)})
