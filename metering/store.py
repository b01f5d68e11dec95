"""The billing database: engine, migrations, the run lock, the watermark.

One writer at a time: on PostgreSQL a session-level advisory lock held by the run's own
connection (released by the server if the process dies); elsewhere a lease row in ``locks``
that the run renews in every transaction and that expires ``ttl`` after a crash.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Column, Connection, Engine, Table, create_engine, event, insert, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from metering.errors import LockedError, MeteringError
from metering.models import Lock, UTCDateTime, Watermark

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK = "metering"


def engine_for(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path``, ``postgresql+psycopg://...``)."""
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise MeteringError(f"bad database URL {_safe(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _safe(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.partition(':')[0]}:***@{tail}"


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise MeteringError(
            f"cannot use the database {_safe(str(engine.url))}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from None


@contextlib.contextmanager
def run_lock(engine: Engine, owner: str, ttl: float) -> Iterator[Connection | None]:
    """Hold the one-writer lock for a run; LockedError if another run holds it."""
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(b"zcp-metering")
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise LockedError("another metering run holds the database lock (pg_advisory_lock)")
            yield conn
        finally:
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            conn.close()
        return
    with Session(engine) as s, s.begin():
        take_lease(s, owner, ttl)
    try:
        yield None
    finally:
        with Session(engine) as s, s.begin():
            lease = s.get(Lock, LOCK)
            if lease is not None and lease.owner == owner:
                s.delete(lease)


def take_lease(s: Session, owner: str, ttl: float) -> None:
    """Take or renew the lease inside the caller's transaction (LockedError if another run
    holds an unexpired one)."""
    now = datetime.now(UTC)
    lease = s.get(Lock, LOCK, with_for_update=True)
    if lease is None:
        s.add(Lock(name=LOCK, owner=owner, expires_at=now + timedelta(seconds=ttl)))
    elif lease.owner == owner or lease.expires_at <= now:
        lease.owner = owner
        lease.expires_at = now + timedelta(seconds=ttl)
    else:
        raise LockedError(
            f"another metering run ({lease.owner}) holds the database lock "
            f"until {lease.expires_at.isoformat(timespec='seconds')}"
        )
    s.flush()


def bulk_insert(s: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column) in one driver-level ``executemany``, each value
    converted by its column type's own bind processor, so the rows are stored exactly as the
    ORM would store them. SQLAlchemy's per-row parameter processing (``construct_params``)
    was most of the cost of writing a month of hourly records."""
    if not rows:
        return
    conn = s.connection()
    dialect = conn.dialect
    columns = list(table.columns)
    compiled = insert(table).compile(dialect=dialect, column_keys=[c.key for c in columns])
    processors = {
        c.key: _memo(c, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in columns
    }
    # column by column: one comprehension per column, not a test per value
    keys = list(compiled.positiontup or ()) if compiled.positional else list(processors)
    values = [
        [p(row[k]) for row in rows] if (p := processors[k]) else [row[k] for row in rows]
        for k in keys
    ]
    params: list[Any] = list(zip(*values, strict=True))
    if not compiled.positional:
        params = [dict(zip(keys, row, strict=True)) for row in params]
    conn.exec_driver_sql(str(compiled), params)


def _memo(column: Column[Any], process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A datetime column's processor, memoised for one insert (a chunk's rows share a few
    hours). Only datetimes: equal Decimals can differ in digits (1 and 1.0), which must be
    kept."""
    if process is None or not isinstance(column.type, UTCDateTime):
        return process
    return functools.cache(process)


def watermark(s: Session) -> datetime | None:
    """How far the hourly records are complete."""
    mark = s.get(Watermark, "hourly")
    return mark.until if mark else None


def advance(s: Session, until: datetime) -> None:
    """Move the watermark forward to ``until`` (never back), in the caller's transaction."""
    mark = s.get(Watermark, "hourly")
    if mark is None:
        s.add(Watermark(name="hourly", until=until))
    elif until > mark.until:
        mark.until = until


def latest(s: Session) -> datetime | None:
    """The newest watermark, read fresh."""
    return s.execute(select(Watermark.until).where(Watermark.name == "hourly")).scalar()
