"""Reconciliation with CloudStack's own usage server (``listUsageRecords``): per account,
usage type and UTC day, our records against CloudStack's, within tolerances, minus a list of
known exceptions.

What is compared (CloudStack's ``rawusage`` is hours, or bytes for the network types):
RUNNING_VM, ALLOCATED_VM and IP_ADDRESS hours; NETWORK_BYTES_SENT/RECEIVED bytes (CloudStack
counts them per router, we per vNIC: compare per account); VOLUME and SNAPSHOT byte-hours
(``size`` x ``rawusage`` against our byte-seconds / 3600).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from metering.errors import MeteringError
from metering.meters import METERS
from metering.models import UsageRecord
from metering.periods import Month
from zcp.config import CloudStackConfig

# usage type -> (our meters, our base unit per CloudStack unit, tolerance: relative, absolute)
COMPARED: dict[int, tuple[str, tuple[str, ...], Decimal, Decimal, Decimal]] = {
    1: ("RUNNING_VM", ("vm.running_hours",), Decimal(3600), Decimal("0.01"), Decimal("0.1")),
    2: ("ALLOCATED_VM", ("vm.allocated_hours",), Decimal(3600), Decimal("0.01"), Decimal("0.1")),
    3: ("IP_ADDRESS", ("ip.hours",), Decimal(3600), Decimal("0.01"), Decimal("0.1")),
    4: ("NETWORK_BYTES_SENT", ("network.bytes_sent",), Decimal(1), Decimal("0.02"), Decimal(2**20)),
    5: (
        "NETWORK_BYTES_RECEIVED",
        ("network.bytes_received",),
        Decimal(1),
        Decimal("0.02"),
        Decimal(2**20),
    ),
    6: ("VOLUME", ("volume.gib_hours",), Decimal(3600), Decimal("0.01"), Decimal(2**30)),
    9: ("SNAPSHOT", ("snapshot.gib_hours",), Decimal(3600), Decimal("0.02"), Decimal(2**30)),
}
SIZED = {6, 9}  # CloudStack's quantity is size x rawusage


@dataclass
class Row:
    """One (account, type, day) compared."""

    account_id: str
    usage_type: str
    day: str
    ours: Decimal
    theirs: Decimal
    status: str  # ok, differs, excepted
    reason: str = ""


@dataclass
class Reconciliation:
    """Every row, and the ones that differ beyond tolerance."""

    month: str
    rows: list[Row] = field(default_factory=list)

    @property
    def differences(self) -> list[Row]:
        """Rows beyond tolerance that no exception covers."""
        return [r for r in self.rows if r.status == "differs"]

    def text(self) -> str:
        """A table for the terminal."""
        from tabulate import tabulate

        table = [
            [
                r.account_id,
                r.usage_type,
                r.day,
                f"{r.ours:.3f}",
                f"{r.theirs:.3f}",
                r.status + (f" ({r.reason})" if r.reason else ""),
            ]
            for r in self.rows
        ]
        head = (
            f"reconciliation {self.month}: {len(self.rows)} rows, "
            f"{len(self.differences)} beyond tolerance\n"
        )
        return (
            head
            + tabulate(
                table,
                headers=["account", "type", "day", "ours", "cloudstack", "status"],
                disable_numparse=True,
            )
            + "\n"
        )


def load_exceptions(path: Path | None) -> list[dict[str, str]]:
    """``[{account, type, day?, reason}]`` from YAML."""
    if path is None:
        return []
    try:
        data = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise MeteringError(f"cannot read exceptions {path}: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) and "reason" in d for d in data):
        raise MeteringError(f"exceptions {path}: a list of {{account, type, day, reason}}")
    return [{k: str(v) for k, v in d.items()} for d in data]


def ours(engine: Engine, month: Month) -> dict[tuple[str, int, str], Decimal]:
    """Our quantities per (account, usage type, UTC day), in CloudStack's units."""
    by_meter = {m: t for t, (_n, meters, _f, _r, _a) in COMPARED.items() for m in meters}
    factor = {t: f for t, (_n, _m, f, _r, _a) in COMPARED.items()}
    out: dict[tuple[str, int, str], Decimal] = defaultdict(Decimal)
    with Session(engine) as s:
        rows = s.execute(
            select(
                UsageRecord.account_id,
                UsageRecord.meter,
                UsageRecord.period_start,
                UsageRecord.quantity,
            ).where(
                UsageRecord.period_start >= month.start,
                UsageRecord.period_start < month.end,
                UsageRecord.meter.in_(list(by_meter)),
                UsageRecord.account_id != "",
            )
        )
        for account, meter, start, quantity in rows:
            t = by_meter[meter]
            out[(account, t, start.strftime("%Y-%m-%d"))] += quantity / factor[t]
    return out


def theirs(records: list[dict[str, Any]]) -> dict[tuple[str, int, str], Decimal]:
    """CloudStack's quantities per (account, usage type, UTC day of the record's start)."""
    out: dict[tuple[str, int, str], Decimal] = defaultdict(Decimal)
    for rec in records:
        try:
            t = int(rec["usagetype"])
        except (KeyError, ValueError):
            continue
        if t not in COMPARED:
            continue
        start = datetime.fromisoformat(str(rec["startdate"]).replace("'", ""))
        raw = Decimal(str(rec.get("rawusage", "0")))
        if t in SIZED:
            raw *= Decimal(str(rec.get("size") or 0))
        day = start.astimezone(UTC).strftime("%Y-%m-%d")
        out[(str(rec.get("accountid", "")), t, day)] += raw
    return out


def compare(
    month: str,
    mine: dict[tuple[str, int, str], Decimal],
    cs: dict[tuple[str, int, str], Decimal],
    exceptions: list[dict[str, str]],
) -> Reconciliation:
    """Rows for every (account, type, day) either side has."""
    result = Reconciliation(month)
    for key in sorted(set(mine) | set(cs)):
        account, t, day = key
        name, _m, _f, rel, absolute = COMPARED[t]
        a, b = mine.get(key, Decimal(0)), cs.get(key, Decimal(0))
        diff = abs(a - b)
        ok = diff <= absolute or diff <= rel * max(abs(a), abs(b))
        status, reason = ("ok", "") if ok else ("differs", "")
        if not ok:
            for exc in exceptions:
                if (
                    exc.get("account", account) == account
                    and exc.get("type", name) == name
                    and exc.get("day", day) == day
                ):
                    status, reason = "excepted", exc["reason"]
                    break
        result.rows.append(Row(account, name, day, a, b, status, reason))
    return result


def reconcile(
    engine: Engine, cloudstack: CloudStackConfig, month: str, exceptions: Path | None = None
) -> Reconciliation:
    """Fetch CloudStack's usage records of ``month`` (UTC) and compare."""
    from zcp.inventory.cloudstack import CloudStackSource

    m = Month.parse(month)
    source = CloudStackSource(cloudstack)
    last = m.end - timedelta(days=1)
    records = source.list_all(
        "listUsageRecords",
        startdate=m.start.strftime("%Y-%m-%d"),
        enddate=last.strftime("%Y-%m-%d"),
    )
    return compare(month, ours(engine, m), theirs(records), load_exceptions(exceptions))


__all__ = ["COMPARED", "METERS", "Reconciliation", "compare", "reconcile"]
