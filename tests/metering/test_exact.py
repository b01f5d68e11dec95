"""Exact records from real stores: the scenario's history in Prometheus 2.42 (promtool
backfill) and in VictoriaMetrics, metered into SQLite and PostgreSQL; every quantity equals the
hand-computed answer to the last digit, and so does every amount."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from metering.job import Job, Options
from metering.meters import BY_NAME, enabled
from metering.models import Charge, UsageRecord
from metering.pricing import parse_price_book
from metering.records import Rules
from metering.source import QuerySource
from metering.store import engine_for, upgrade
from tests.metering import scenario
from tests.metering.scenario import END, GIB, T0

pytestmark = pytest.mark.integration


@pytest.fixture(params=["prometheus", "victoria"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"history_{request.param}"))


def make_job(store: str, database: str, chunk_hours: int = 6, fast: bool = True) -> Job:
    engine = engine_for(database)
    upgrade(engine)
    return Job(
        QuerySource(store),
        engine,
        parse_price_book(scenario.PRICES, "test"),
        enabled(),
        Options(chunk_hours=chunk_hours, fast=fast),
        now=lambda: END + timedelta(days=1),
    )


def records(job: Job) -> dict[tuple[str, str, int], UsageRecord]:
    with Session(job.engine) as s:
        rows = s.scalars(select(UsageRecord)).all()
        s.expunge_all()
    return {
        (r.meter, r.resource_id, int((r.period_start - T0).total_seconds() // 3600)): r
        for r in rows
    }


def test_every_record_is_exact(store: str, database: str) -> None:
    job = make_job(store, database)
    result = job.run(T0, END)
    got = records(job)
    expected = scenario.expected()
    assert {k: r.quantity for k, r in got.items()} == expected
    assert result.records == len(expected)
    # coverage: only the gap is flagged, with exactly the time it hid
    flagged = {k: r.unbilled_s for k, r in got.items() if r.flags}
    assert flagged == scenario.FLAGGED
    assert got[("network.bytes_received", "nic2", 1)].resets == 1
    assert {r.account_id for r in got.values()} == {scenario.A, scenario.B}
    # lineage: the query that read the samples, the digest of the samples used
    rec = got[("vm.running_hours", "vm1", 0)]  # no sample before it: from raw samples
    assert rec.query.startswith('libvirt_domain_state{vm_id=~"') and len(rec.samples_hash) == 32
    # the regular hours came from the store's aggregates, with the same exact answer
    regular = got[("volume.gib_hours", "vol2", 3)]
    assert "count_over_time(count_over_time(ceph_rbd_image_provisioned_bytes" in regular.query


def test_amounts_prices_and_months(store: str, database: str) -> None:
    job = make_job(store, database, chunk_hours=2)  # chunking must not matter
    job.run(T0, END)
    got = records(job)
    with Session(job.engine) as s:
        charges = {c.record_key: c for c in s.scalars(select(Charge))}
    q = Decimal("1e-12")

    def charge(meter: str, resource: str, hour: int) -> Charge:
        return charges[got[(meter, resource, hour)].key]

    # the price changes at 02:00Z
    assert charge("vm.running_hours", "vm1", 1).amount == Decimal("0.004")
    assert charge("vm.running_hours", "vm1", 2).amount == Decimal("0.005")
    # a GiB-month price prorated by the calendar: A (UTC) November has 720 hours; B (New
    # York) bills its first four hours in October (744 h), the rest in November (721 h: the
    # DST hour)
    assert charge("volume.gib_hours", "vol1", 0).amount == (10 * Decimal("0.16") / 720).quantize(
        q, ROUND_HALF_EVEN
    )
    assert charge("volume.gib_hours", "vol2", 3).billing_month == "2026-10"
    assert charge("volume.gib_hours", "vol2", 3).amount == (5 * Decimal("0.03") / 744).quantize(
        q, ROUND_HALF_EVEN
    )
    assert charge("volume.gib_hours", "vol2", 4).billing_month == "2026-11"
    assert charge("volume.gib_hours", "vol2", 4).amount == (5 * Decimal("0.03") / 721).quantize(
        q, ROUND_HALF_EVEN
    )
    assert charge("vm.running_hours", "vm1", 0).billing_month == "2026-11"
    # bytes priced per GiB, exactly
    rec = got[("network.bytes_sent", "nic1", 2)]
    assert charges[rec.key].amount == (Decimal(46000) / 2**30 * Decimal("0.01")).quantize(
        q, ROUND_HALF_EVEN
    )
    assert BY_NAME["network.bytes_sent"].factor == 2**30


def test_a_rerun_writes_exactly_the_same_rows(store: str, database: str) -> None:
    job = make_job(store, database)
    job.run(T0, END)

    def dump() -> list[tuple[object, ...]]:
        with Session(job.engine) as s:
            rows = [
                tuple(getattr(r, c.key) for c in UsageRecord.__table__.columns)
                for r in s.scalars(select(UsageRecord).order_by(UsageRecord.key))
            ]
            rows += [
                tuple(getattr(c, k.key) for k in Charge.__table__.columns)
                for c in s.scalars(select(Charge).order_by(Charge.record_key))
            ]
        return rows

    before = dump()
    again = make_job(store, database, chunk_hours=1).run(T0, END)
    assert again.records == len(scenario.expected())
    assert dump() == before


def test_raw_samples_alone_give_the_same_quantities(store: str, tmp_path: object) -> None:
    job = make_job(store, f"sqlite:///{tmp_path}/raw.db", fast=False)
    job.run(T0, END)
    got = records(job)
    assert {k: r.quantity for k, r in got.items()} == scenario.expected()
    assert {k: r.unbilled_s for k, r in got.items() if r.flags} == scenario.FLAGGED


def test_a_whole_hour_inside_a_gap_is_flagged_only_within_max_outage(
    victoria: object, tmp_path: Path
) -> None:
    """A volume's samples stop at 00:49 and come back at 02:10 (81 minutes, on a day no other
    test reads): with max_outage 2 h that is a gap and hour 1, which has no sample at all, is
    flagged whole; with the default 1 h it is the series ending and starting again."""
    from lab.history import HistorySeries
    from lab.victoriametrics import VictoriaMetricsServer

    assert isinstance(victoria, VictoriaMetricsServer)
    day = T0 + timedelta(days=19)
    ms = int(day.timestamp() * 1000)
    labels = tuple(
        sorted(
            {
                "job": "zcp-ceph",
                "volume_id": "vol-gap",
                "storage_class": "flow",
                "pool": "rbd-flow",
                "image": "volume-gap",
            }.items()
        )
    )
    minutes = [k for k in range(240) if not 50 <= k <= 129]
    victoria.load(
        [
            HistorySeries(
                "ceph_rbd_image_provisioned_bytes",
                labels,
                tuple((ms + k * 60_000, GIB) for k in minutes),
            )
        ]
    )
    meters = [BY_NAME["volume.gib_hours"]]

    def run(outage_h: int, chunk: int, fast: bool) -> dict[int, tuple[Decimal, Decimal, str]]:
        engine = engine_for(f"sqlite:///{tmp_path}/{outage_h}-{chunk}-{fast}.db")
        upgrade(engine)
        rules = Rules(max_outage_ms=outage_h * 3_600_000)
        Job(
            QuerySource(victoria.url),
            engine,
            parse_price_book(scenario.PRICES, "test"),
            meters,
            Options(rules=rules, chunk_hours=chunk, fast=fast),
            now=lambda: day + timedelta(days=1),
        ).run(day, day + timedelta(hours=4))
        with Session(engine) as s:
            return {
                int((r.period_start - day).total_seconds()) // 3600: (
                    r.quantity,
                    r.unbilled_s,
                    r.flags,
                )
                for r in s.scalars(select(UsageRecord))
            }

    gib_s = GIB  # one GiB for one second
    gap = {
        0: (50 * 60 * gib_s, Decimal(600), "gap,unowned"),
        1: (Decimal(0), Decimal(3600), "gap,unowned"),
        2: (50 * 60 * gib_s, Decimal(600), "gap,unowned"),
        3: (3600 * gib_s, Decimal(0), "unowned"),
    }
    for chunk in (1, 4):
        for fast in (True, False):
            assert run(2, chunk, fast) == gap, (chunk, fast)
    ended = {
        0: (50 * 60 * gib_s, Decimal(0), "unowned"),
        2: (50 * 60 * gib_s, Decimal(0), "unowned"),
        3: (3600 * gib_s, Decimal(0), "unowned"),
    }
    for chunk in (1, 4):
        assert run(1, chunk, True) == ended == run(1, chunk, False)
