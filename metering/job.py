"""The metering run: fetch raw samples chunk by chunk, compute the hourly records, rate them,
and write records, charges and the watermark in one transaction per chunk.

Exactly once: record keys are deterministic and written with an upsert, so re-running any
period (after a crash, or twice at once: the second waits for or is refused the lock) gives the
same rows. A month whose statement is final is never touched: what a re-run computes
differently there becomes signed adjustment lines that point at the original records.
Records are never deleted by a run (a store past its retention must not erase billed usage).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Engine, Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from metering.errors import MeteringError
from metering.fast import FamilyAggregates, aggregates, fast_records, points
from metering.meters import Meter
from metering.models import Adjustment, Charge, Run, Statement, UsageRecord
from metering.periods import HOUR, HOUR_MS, Month, floor_hour, from_ms, to_ms
from metering.pricing import PriceBook
from metering.records import Record, Rules, build
from metering.source import Fetched, QuerySource
from metering.store import advance, bulk_insert, run_lock, take_lease, watermark

log = logging.getLogger(__name__)
AMOUNT = Decimal("1e-12")
# Core inserts (executemany): the ORM's per-row bookkeeping would dominate a month's backfill
RECORDS: Table = UsageRecord.__table__  # type: ignore[assignment]
CHARGES: Table = Charge.__table__  # type: ignore[assignment]
UNIT_PRICE = Decimal("1e-20")


@dataclass
class Options:
    """What a run needs besides its source, database and price book."""

    rules: Rules = field(default_factory=Rules)
    chunk_hours: int = 24
    settle: timedelta = timedelta(minutes=15)
    backfill: timedelta = timedelta(hours=24)
    lock_ttl: float = 120.0
    fast: bool = True  # regular hours from the store's aggregates (fast.py)
    # estimates only (`zcp-obs metering estimate`, into a scratch database): a run may end
    # after the last settled hour, up to the end of the hour in progress, whose records then
    # hold its usage so far (the rest of the hour is unbilled, flagged gap)
    open_hours: bool = False


@dataclass
class RunResult:
    """What a run did."""

    run_id: str
    start: datetime
    end: datetime
    hours: int = 0
    records: int = 0
    adjustments: int = 0
    coverage_warnings: int = 0
    samples: int = 0
    queries: int = 0


@dataclass(frozen=True)
class Rated:
    """A record with its charge (None when nobody owns it: nothing to bill)."""

    record: Record
    month: str
    price_version: str = ""
    unit_price: Decimal = Decimal(0)
    amount: Decimal | None = None


class Rater:
    """Prices records: quantity (base units) / factor x unit price, to 12 decimals.

    The price, its version and the unit price depend only on (meter, class, account, hour),
    which thousands of records of a chunk share: they are looked up once per chunk
    (:meth:`clear` between chunks keeps the memory bounded by the chunk)."""

    def __init__(self, book: PriceBook, meters: dict[str, Meter]) -> None:
        self.book = book
        self.meters = meters
        self.memo: dict[tuple[str, str, str, datetime], tuple[str, str, Decimal]] = {}

    def clear(self) -> None:
        """Forget the chunk's lookups."""
        self.memo.clear()

    def __call__(self, record: Record) -> Rated:
        """Price one record (no charge when nobody owns it: nothing to bill)."""
        meter = self.meters[record.meter]
        key = (record.meter, record.storage_class, record.account_id, record.period_start)
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = self._lookup(record, meter)
        month, version, unit = got
        if not record.account_id:
            return Rated(record, month)
        amount = (record.quantity * unit / meter.factor).quantize(AMOUNT, ROUND_HALF_EVEN)
        return Rated(record, month, version, unit, amount)

    def _lookup(self, record: Record, meter: Meter) -> tuple[str, str, Decimal]:
        book = self.book
        month = str(Month.of(record.period_start, book.tz(record.account_id)))
        if not record.account_id:
            return month, "", Decimal(0)
        price = book.price(meter.name, record.storage_class, record.account_id, record.period_start)
        # the unit price as stored (20 decimals): the amount can be recomputed from the row
        unit = book.unit_price(price, meter, record.account_id, record.period_start).quantize(
            UNIT_PRICE, ROUND_HALF_EVEN
        )
        return month, price.version, unit


def owners_in(
    source: QuerySource, meters: Sequence[Meter], start: int, end: int, gap: int
) -> dict[str, dict[str, str]]:
    """Per info family the meters name, resource id -> account, seen within ``gap`` of
    ``[start, end)`` (ms)."""
    owners: dict[str, dict[str, str]] = {}
    for meter in meters:
        if meter.owner != "label" and meter.owner not in owners:
            owners[meter.owner] = source.owners(
                meter.owner, meter.resource_label, start - gap, end + gap
            )
    return owners


def with_matcher(selector: str, label: str, values: Sequence[str]) -> str:
    """``selector`` narrowed to series whose ``label`` is one of ``values``."""
    regex = "|".join(re.escape(v) for v in sorted(values)).replace("\\", "\\\\")
    matcher = f'{label}=~"{regex}"'
    if selector.endswith("}"):
        return f"{selector[:-1]},{matcher}}}"
    return f"{selector}{{{matcher}}}"


def compute(
    source: QuerySource,
    meters: Sequence[Meter],
    hours: Sequence[datetime],
    rules: Rules,
    fast: bool = True,
) -> tuple[list[Record], int]:
    """The records of ``meters`` for ``hours`` (one chunk), and the raw samples read.

    With ``fast``, resource-hours the store proves regular come from aggregates
    (``fast.py``); only the others are read sample by sample."""
    start, end = to_ms(hours[0]), to_ms(hours[-1]) + HOUR_MS
    gap = rules.max_gap_ms
    starts = [to_ms(h) for h in hours]
    owners = owners_in(source, meters, start, end, gap)
    evaluated = from_ms(end - 1)
    records: list[Record] = []
    samples = 0
    aggs: dict[str, FamilyAggregates] = {}
    grid = points(source, starts, rules) if fast else None
    raw_cache: dict[tuple[str, int, int], Fetched] = {}

    def raw(
        selector: str, keys: Sequence[str], label: str, lo: int = start, hi: int = end
    ) -> Fetched:
        narrowed = with_matcher(selector, label, keys) if keys else selector
        got = raw_cache.get((narrowed, lo, hi))
        if got is None:
            got = raw_cache[(narrowed, lo, hi)] = source.raw(
                narrowed, lo - rules.reach_ms, hi + rules.reach_ms
            )
        return got

    for meter in meters:
        if not fast:
            fetched = raw(meter.family, (), meter.resource_label)
            weights = raw(meter.weight, (), meter.resource_label) if meter.weight else None
            records += build(meter, fetched, starts, rules, owners.get(meter.owner), weights)
            continue
        counter = meter.kind == "counter"
        for selector in (meter.family, meter.weight):
            if selector and selector not in aggs:
                assert grid is not None
                aggs[selector] = aggregates(
                    source, selector, counter and selector == meter.family, starts, rules, grid
                )
        result = fast_records(
            meter,
            aggs[meter.family],
            aggs.get(meter.weight) if meter.weight else None,
            starts,
            rules,
            owners.get(meter.owner),
            evaluated,
        )
        records += result.records
        if not result.raw:
            continue
        # only the hours that need it (runs of consecutive hours), with max_outage around them,
        # and only the resources that need it in each run
        for run_hours in _runs(sorted({i for _k, i in result.raw})):
            wanted = {(key, starts[i]) for key, i in result.raw if i in run_hours}
            keys = sorted({key[0] for key, _t in wanted})
            lo, hi = starts[run_hours[0]], starts[run_hours[-1]] + HOUR_MS
            fetched = raw(meter.family, keys, meter.resource_label, lo, hi)
            weights = (
                raw(meter.weight, keys, meter.resource_label, lo, hi) if meter.weight else None
            )
            records += [
                r
                for r in build(
                    meter,
                    fetched,
                    [starts[i] for i in run_hours],
                    rules,
                    owners.get(meter.owner),
                    weights,
                )
                if (tuple(_key_of(r, meter)), to_ms(r.period_start)) in wanted
            ]
    samples = sum(f.samples for f in raw_cache.values())
    return records, samples


def _runs(indices: Sequence[int]) -> list[list[int]]:
    """Sorted indices as runs of consecutive ones."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][-1] == i - 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _key_of(record: Record, meter: Meter) -> list[str]:
    return [
        record.resource_id
        if k == meter.resource_label
        else record.storage_class
        if k == "storage_class"
        else ""
        for k in meter.key
    ]


class Job:
    """One configured metering job."""

    def __init__(
        self,
        source: QuerySource,
        engine: Engine,
        book: PriceBook,
        meters: Sequence[Meter],
        options: Options,
        progress: Callable[[int], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.engine = engine
        self.book = book
        self.meters = tuple(meters)
        self.by_name = {m.name: m for m in self.meters}
        self.options = options
        self.progress = progress or (lambda _n: None)
        self.now = now

    def records_of(self, hours: Sequence[datetime]) -> tuple[list[Record], int]:
        """The records of one chunk and the raw samples read (:func:`compute`; the bench's
        rival, the increase() approach, overrides this and keeps the rest of the job)."""
        return compute(self.source, self.meters, hours, self.options.rules, self.options.fast)

    def plan(self, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
        """The hours a run covers: ``[start, end)`` as asked, else from the watermark (or the
        backfill) to the last hour that has settled."""
        settled = floor_hour(self.now() - self.options.settle)
        latest = floor_hour(self.now()) + HOUR if self.options.open_hours else settled
        if end is None:
            end = latest
        if start is None:
            with Session(self.engine) as s:
                mark = watermark(s)
            start = mark if mark is not None else floor_hour(settled - self.options.backfill)
        start, end = floor_hour(start), floor_hour(end)
        if end > latest and self.options.open_hours:
            raise MeteringError(
                f"{end.isoformat()} is after the hour in progress; the latest end is "
                f"{latest.isoformat()}"
            )
        if end > latest:
            raise MeteringError(
                f"{end.isoformat()} has not settled yet (settle_seconds: "
                f"{self.options.settle.total_seconds():g}); the latest end is "
                f"{settled.isoformat()}"
            )
        return start, end

    def run(self, start: datetime | None = None, end: datetime | None = None) -> RunResult:
        """Meter ``[start, end)`` (see :meth:`plan`); a database failure is one line (what was
        committed stays: whole chunks with their watermark)."""
        try:
            return self._run(start, end)
        except SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
            raise MeteringError(
                f"the billing database failed: {first[0] if first else type(exc).__name__}"
            ) from None

    def _run(self, start: datetime | None, end: datetime | None) -> RunResult:
        start, end = self.plan(start, end)
        run_id = str(uuid.uuid4())
        result = RunResult(run_id, start, end)
        with run_lock(self.engine, run_id, self.options.lock_ttl) as pg:
            with Session(self.engine) as s, s.begin():
                s.add(
                    Run(
                        id=run_id,
                        command="run",
                        started_at=self.now(),
                        status="running",
                        period_from=start,
                        period_to=end,
                        source_url=self.source.url,
                        price_book_version=self.book.version,
                    )
                )
            try:
                rater = Rater(self.book, self.by_name)
                hours = []
                t = start
                while t < end:
                    hours.append(t)
                    t += HOUR
                for i in range(0, len(hours), self.options.chunk_hours):
                    chunk = hours[i : i + self.options.chunk_hours]
                    records, samples = self.records_of(chunk)
                    rater.clear()
                    rated = [rater(r) for r in records]
                    self._write(run_id, rated, chunk, pg is None, result)
                    result.hours += len(chunk)
                    result.samples += samples
                    self.progress(len(chunk))
            except Exception as exc:
                with contextlib.suppress(SQLAlchemyError), Session(self.engine) as s, s.begin():
                    run = s.get(Run, run_id)
                    if run is not None:
                        run.status, run.finished_at = "failed", self.now()
                        run.error = str(exc)[:2000]
                raise
            result.queries = self.source.queries
            with Session(self.engine) as s, s.begin():
                run = s.get(Run, run_id)
                assert run is not None
                run.status, run.finished_at = "ok", self.now()
                run.records, run.adjustments = result.records, result.adjustments
                run.coverage_warnings = result.coverage_warnings
        log.info(
            "metering run done",
            extra={
                "run_id": run_id,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "records": result.records,
                "adjustments": result.adjustments,
                "coverage_warnings": result.coverage_warnings,
                "samples": result.samples,
            },
        )
        return result

    def _write(
        self, run_id: str, rated: list[Rated], chunk: list[datetime], lease: bool, result: RunResult
    ) -> None:
        """One chunk's records, charges, adjustments and the watermark: one transaction."""
        lo, hi = chunk[0], chunk[-1] + HOUR
        with Session(self.engine) as s, s.begin():
            if lease:
                take_lease(s, run_id, self.options.lock_ttl)
            final = {
                (st.account_id, st.month)
                for st in s.scalars(select(Statement).where(Statement.status == "final"))
            }
            # everything already there for these hours, in two queries (bulk writes below:
            # a month of hourly records is millions of rows)
            in_chunk = select(UsageRecord.key).where(
                UsageRecord.period_start >= lo, UsageRecord.period_start < hi
            )
            existing = {
                u.key: u
                for u in s.scalars(
                    select(UsageRecord).where(
                        UsageRecord.period_start >= lo, UsageRecord.period_start < hi
                    )
                )
            }
            charges = {
                c.record_key: c
                for c in s.scalars(select(Charge).where(Charge.record_key.in_(in_chunk)))
            }
            adjusted: dict[str, list[Adjustment]] = {}  # final months' corrections so far
            if final:
                for adj in s.scalars(
                    select(Adjustment).where(
                        Adjustment.period_start >= lo, Adjustment.period_start < hi
                    )
                ):
                    adjusted.setdefault(adj.record_key, []).append(adj)
            new_records, changed_records = [], []
            new_charges, changed_charges, dropped = [], [], []
            for item in rated:
                rec = item.record
                if (rec.account_id, item.month) in final:
                    result.adjustments += self._adjust(
                        s,
                        run_id,
                        item,
                        existing.get(rec.key),
                        charges.get(rec.key),
                        adjusted.setdefault(rec.key, []),
                    )
                    continue
                result.records += 1
                result.coverage_warnings += bool(rec.flags)
                row = existing.get(rec.key)
                values = _record_values(rec, run_id)
                if row is None:
                    new_records.append(values)
                elif _changed(row, values):
                    changed_records.append(values)
                charge = charges.get(rec.key)
                if item.amount is None:
                    if charge is not None:
                        dropped.append(rec.key)
                    continue
                cvalues = {
                    "record_key": rec.key,
                    "account_id": rec.account_id,
                    "billing_month": item.month,
                    "price_version": item.price_version,
                    "price_book_version": self.book.version,
                    "unit_price": item.unit_price,
                    "currency": self.book.currency,
                    "amount": item.amount,
                }
                if charge is None:
                    new_charges.append(cvalues)
                elif _changed(charge, cvalues):
                    changed_charges.append(cvalues)
            s.flush()  # the adjustments added above
            s.expunge_all()  # the rows are compared; the writes below go straight to SQL
            if dropped:
                s.execute(delete(Charge).where(Charge.record_key.in_(dropped)))
            # the records before their charges (the foreign key), each in key order (keys
            # start with their hour: the chunk's rows then append to the key index in order)
            new_records.sort(key=_by_key)
            new_charges.sort(key=_by_record_key)
            bulk_insert(s, RECORDS, new_records)
            if changed_records:
                s.execute(update(UsageRecord), changed_records)
            bulk_insert(s, CHARGES, new_charges)
            if changed_charges:
                s.execute(update(Charge), changed_charges)
            mark = watermark(s)
            if mark is None or lo <= mark:
                advance(s, hi)

    def _adjust(
        self,
        s: Session,
        run_id: str,
        item: Rated,
        original: UsageRecord | None,
        charge: Charge | None,
        earlier: list[Adjustment],
    ) -> int:
        """A signed adjustment for what changed in a final month (0 or 1 line), net of the
        ``earlier`` adjustments of the record (the new one is appended to them)."""
        rec = item.record
        if item.amount is None:
            return 0
        quantity = original.quantity if original is not None else Decimal(0)
        amount = charge.amount if charge is not None else Decimal(0)
        for adj in earlier:
            quantity += adj.quantity_delta
            amount += adj.amount_delta
        dq, da = rec.quantity - quantity, item.amount - amount
        if not dq and not da:
            return 0
        key = hashlib.sha256(
            f"{rec.key}|{rec.samples_hash}|{item.price_version}|"
            f"{item.amount}|{quantity}|{amount}".encode()
        ).hexdigest()[:32]
        if any(adj.key == key for adj in earlier):
            return 0
        adjustment = Adjustment(
            key=key,
            account_id=rec.account_id,
            month=item.month,
            record_key=rec.key,
            meter=rec.meter,
            resource_id=rec.resource_id,
            storage_class=rec.storage_class,
            period_start=rec.period_start,
            quantity_delta=dq,
            unit=rec.unit,
            amount_delta=da,
            currency=self.book.currency,
            price_version=item.price_version,
            reason="late-data" if dq else "price-correction",
            samples_hash=rec.samples_hash,
            run_id=run_id,
            created_at=self.now(),
        )
        s.add(adjustment)
        earlier.append(adjustment)
        return 1


def _by_key(values: dict[str, object]) -> str:
    return str(values["key"])


def _by_record_key(values: dict[str, object]) -> str:
    return str(values["record_key"])


def _record_values(rec: Record, run_id: str) -> dict[str, object]:
    return {
        "key": rec.key,
        "meter": rec.meter,
        "period_start": rec.period_start,
        "period_end": rec.period_end,
        "resource_id": rec.resource_id,
        "storage_class": rec.storage_class,
        "account_id": rec.account_id,
        "quantity": rec.quantity,
        "unit": rec.unit,
        "samples": rec.samples,
        "longest_gap_s": rec.longest_gap_s,
        "unbilled_s": rec.unbilled_s,
        "resets": rec.resets,
        "flags": rec.flags,
        "query": rec.query,
        "evaluated_at": rec.evaluated_at,
        "samples_hash": rec.samples_hash,
        "run_id": run_id,
    }


def _changed(row: object, values: dict[str, object]) -> bool:
    """Would writing ``values`` change ``row``? (An unchanged row keeps its lineage: the run
    that first wrote it.)"""
    ignore = {"run_id", "evaluated_at", "query"}
    return any(getattr(row, k) != v for k, v in values.items() if k not in ignore)
