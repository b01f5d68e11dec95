"""The billing database (SQLAlchemy 2 typed models; the schema is built by Alembic migrations in
``metering/migrations``).

Decimals are stored exactly: NUMERIC on PostgreSQL and MariaDB, text on SQLite (which has no
decimal type and would go through float). Times are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine


class Exact(TypeDecorator[Decimal]):
    """A Decimal that never passes through float: NUMERIC(48, 20), or text on SQLite."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Text on SQLite, NUMERIC elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(48, 20, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Store the exact digits."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return str(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read back a Decimal, normalised to the digits it was written with."""
        if value is None:
            return None
        return Decimal(str(value)) if not isinstance(value, Decimal) else value


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored naive in UTC on every backend."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Aware -> naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: metering times are UTC-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Naive UTC -> aware."""
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    """Declarative base with the exact types mapped."""

    type_annotation_map = {Decimal: Exact, datetime: UTCDateTime}


class Run(Base):
    """One metering job run: what it did and from what."""

    __tablename__ = "metering_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    command: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # running, ok, failed
    period_from: Mapped[datetime | None]
    period_to: Mapped[datetime | None]
    source_url: Mapped[str] = mapped_column(String(500), default="")
    price_book_version: Mapped[str] = mapped_column(String(32), default="")
    records: Mapped[int] = mapped_column(Integer, default=0)
    adjustments: Mapped[int] = mapped_column(Integer, default=0)
    coverage_warnings: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


class UsageRecord(Base):
    """An hourly usage record; ``key`` is deterministic (meter, resource, class, hour)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_period_meter", "period_start", "meter"),
        Index("ix_usage_account_period", "account_id", "period_start"),
    )

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    meter: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    resource_id: Mapped[str] = mapped_column(String(128))
    storage_class: Mapped[str] = mapped_column(String(16), default="")
    account_id: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[Decimal]
    unit: Mapped[str] = mapped_column(String(16))
    samples: Mapped[int] = mapped_column(Integer)
    longest_gap_s: Mapped[Decimal]
    unbilled_s: Mapped[Decimal]
    resets: Mapped[int] = mapped_column(Integer)
    flags: Mapped[str] = mapped_column(String(64), default="")
    query: Mapped[str] = mapped_column(Text)
    evaluated_at: Mapped[datetime]
    samples_hash: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(ForeignKey("metering_runs.id"))


class Charge(Base):
    """The rating of a usage record: price entry, unit price (20 decimals) and amount (12):
    amount = quantity / the meter's factor x unit price, rounded half-even."""

    __tablename__ = "charges"
    __table_args__ = (Index("ix_charges_account_month", "account_id", "billing_month"),)

    record_key: Mapped[str] = mapped_column(
        ForeignKey("usage_records.key", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(String(64))
    billing_month: Mapped[str] = mapped_column(String(7))
    price_version: Mapped[str] = mapped_column(String(32))
    price_book_version: Mapped[str] = mapped_column(String(32))
    unit_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal]


class Statement(Base):
    """A monthly statement of an account: draft until closed, then final and immutable."""

    __tablename__ = "statements"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))  # draft, final
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    closed_at: Mapped[datetime | None]
    run_id: Mapped[str] = mapped_column(ForeignKey("metering_runs.id"))


class Adjustment(Base):
    """A signed correction of a final month (late data, a price correction), pointing at the
    record it corrects; ``key`` is deterministic, so a re-run never adds it twice."""

    __tablename__ = "adjustments"
    __table_args__ = (Index("ix_adjustments_account_month", "account_id", "month"),)

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))
    record_key: Mapped[str] = mapped_column(String(32))  # the original (kept as it was)
    meter: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(128))
    storage_class: Mapped[str] = mapped_column(String(16), default="")
    period_start: Mapped[datetime]
    quantity_delta: Mapped[Decimal]
    unit: Mapped[str] = mapped_column(String(16))
    amount_delta: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    price_version: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))  # late-data, price-correction
    samples_hash: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(ForeignKey("metering_runs.id"))
    created_at: Mapped[datetime]


class Watermark(Base):
    """How far the hourly records are complete (moved in the records' own transaction)."""

    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    until: Mapped[datetime]


class Lock(Base):
    """The run lease (SQLite; PostgreSQL uses an advisory lock): one writer at a time."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(36))
    expires_at: Mapped[datetime]
