"""The driver-level bulk insert stores rows exactly as the ORM does, on SQLite and on a real
PostgreSQL: Decimal digits kept (1.0 stays 1.0, never float), aware datetimes as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from metering.models import Run, UsageRecord
from metering.store import bulk_insert, engine_for, upgrade

RECORDS: Table = UsageRecord.__table__  # type: ignore[assignment]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(key: str, quantity: Decimal, start: datetime) -> dict[str, object]:
    return {
        "key": key,
        "meter": "volume.gib_hours",
        "period_start": start,
        "period_end": start + timedelta(hours=1),
        "resource_id": f"vol-{key}",
        "storage_class": "fast",
        "account_id": "acct-a",
        "quantity": quantity,
        "unit": "byte*s",
        "samples": 61,
        "longest_gap_s": Decimal("60.000"),
        "unbilled_s": Decimal(0),
        "resets": 0,
        "flags": "",
        "query": "q",
        "evaluated_at": start + timedelta(hours=1, milliseconds=-1),
        "samples_hash": "h" * 32,
        "run_id": "run-1",
    }


def test_bulk_rows_read_back_exactly(database: str) -> None:
    engine = engine_for(database)
    upgrade(engine)
    paris = timezone(timedelta(hours=1))
    quantities = [
        Decimal("1.0"),
        Decimal("38654705664000"),
        Decimal("0.00000000000000000001"),
        Decimal("123456789012345678.5"),
    ]
    bulk = [row(f"k{i}", q, T0 + timedelta(hours=i)) for i, q in enumerate(quantities)]
    bulk.append(row("k-paris", Decimal("7"), datetime(2026, 11, 1, 5, tzinfo=paris)))
    with Session(engine) as s, s.begin():
        s.add(Run(id="run-1", command="run", started_at=T0, status="ok"))
        s.flush()
        bulk_insert(s, RECORDS, bulk)
        bulk_insert(s, RECORDS, [])  # nothing: no statement
        s.add(UsageRecord(**row("k-orm", Decimal("1.0"), T0)))  # the ORM's way, to compare
    with Session(engine) as s:
        got = {r.key: r for r in s.scalars(select(UsageRecord))}
    for i, q in enumerate(quantities):
        rec = got[f"k{i}"]
        assert rec.quantity == q  # exact (NUMERIC pads to 20 decimals, SQLite keeps the text)
        if database.startswith("sqlite"):
            assert str(rec.quantity) == str(q)
        assert rec.period_start == T0 + timedelta(hours=i)
        assert rec.evaluated_at == T0 + timedelta(hours=i + 1, milliseconds=-1)
    assert got["k3"].quantity == Decimal("123456789012345678.5")  # beyond a float's digits
    assert got["k-paris"].period_start == datetime(2026, 11, 1, 4, tzinfo=UTC)
    # the same columns as an ORM insert of the same values
    orm, bulk0 = got["k-orm"], got["k0"]
    for column in RECORDS.columns:
        if column.key not in ("key", "resource_id"):
            assert getattr(orm, column.key) == getattr(bulk0, column.key), column.key
    with engine.connect() as conn:  # the stored form itself, not only what reads back
        stored = conn.exec_driver_sql(
            "select period_start, quantity from usage_records where key in ('k0', 'k-orm')"
        ).all()
    assert stored[0] == stored[1]
