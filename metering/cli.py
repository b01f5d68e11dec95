"""``zcp-obs metering ...``: run the job, close a month, report, reconcile."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from zcp.cliutil import CONTEXT, ZcpGroup, config_of, log_as
from zcp.config import Config, MeteringConfig, with_overrides


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
@click.pass_context
def metering(ctx: click.Context) -> None:
    """Turn usage metrics into priced, idempotent billing records and finance reports.

    Settings come from the config's metering section; --prometheus and --database override
    its query_url and database_url.
    """
    log_as(ctx, "zcp-obs-metering")


def _section(ctx: click.Context, **flags: Any) -> tuple[Config, MeteringConfig]:
    cfg = config_of(ctx)
    return cfg, with_overrides(cfg.metering, "(command line)", **flags)


def _options(section: MeteringConfig) -> Any:
    from metering.job import Options
    from metering.records import Rules

    return Options(
        rules=Rules(
            max_gap_ms=int(section.max_gap_seconds * 1000),
            hold_ms=int(section.scrape_interval_seconds * 1000),
            max_outage_ms=int(section.max_outage_seconds * 1000),
        ),
        chunk_hours=section.chunk_hours,
        settle=timedelta(seconds=section.settle_seconds),
        backfill=timedelta(hours=section.backfill_hours),
        lock_ttl=section.lock_ttl_seconds,
    )


def _engine(section: MeteringConfig) -> Any:
    from metering.store import engine_for, upgrade

    engine = engine_for(section.database_url.get_secret_value())
    upgrade(engine)
    return engine


PROM = click.option(
    "--prometheus",
    "query_url",
    default=None,
    metavar="URL",
    help="Query API of the samples (Prometheus or VictoriaMetrics); default: metering.query_url.",
)
DB = click.option(
    "--database",
    "database_url",
    default=None,
    metavar="URL",
    help="SQLAlchemy URL of the billing database; default: metering.database_url.",
)

ACCOUNT = click.option("--account", default=None, metavar="ID", help="One account (default: all).")
FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "html"]), default="csv", show_default=True
)
OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here (atomically) instead of standard output.",
)


def _emit(text: str, out: Path | None) -> None:
    """``text`` to standard output, or atomically to ``out`` (its path on stderr)."""
    if out is None:
        click.echo(text, nl=False)
        return
    from zcp.files import write_atomic

    write_atomic(out, text)
    click.echo(str(out), err=True)


@metering.command("run")
@click.option(
    "--from",
    "start",
    default=None,
    metavar="TIME",
    help="First hour (UTC unless the time says; default: the watermark).",
)
@click.option(
    "--to",
    "end",
    default=None,
    metavar="TIME",
    help="End hour, exclusive (default: the last settled hour).",
)
@PROM
@DB
@click.pass_context
def metering_run(ctx: click.Context, start: str | None, end: str | None, **flags: Any) -> None:
    """Meter every settled hour since the last run (or --from/--to): exact hourly usage
    records, priced, written exactly once; months already final get adjustment lines."""
    from metering.job import Job
    from metering.meters import enabled
    from metering.periods import parse_instant
    from metering.pricing import load_price_book
    from metering.push import push_result
    from metering.source import QuerySource

    _cfg, section = _section(ctx, **flags)
    book = load_price_book(section.price_book)
    meters = enabled(section.optional_meters)
    engine = _engine(section)
    source = QuerySource(section.query_url, section.query_timeout_seconds)
    first = parse_instant(start) if start else None
    last = parse_instant(end) if end else None
    job = Job(source, engine, book, meters, _options(section))
    lo, hi = job.plan(first, last)
    total = int((hi - lo).total_seconds() // 3600)
    began = time.monotonic()
    try:
        with click.progressbar(
            length=total,
            label=f"metering {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC",
            file=sys.stderr,
            show_pos=True,
        ) as bar:
            job.progress = bar.update
            result = job.run(lo, hi)
    except Exception as exc:
        push_result(section.pushgateway_url, None, str(exc), time.monotonic() - began)
        raise
    push_result(
        section.pushgateway_url, result, "", time.monotonic() - began, engine, book.currency
    )
    click.echo(
        f"run {result.run_id}: {result.hours} hours, {result.records} records, "
        f"{result.adjustments} adjustments, {result.coverage_warnings} with coverage "
        f"warnings ({result.samples} samples in {result.queries} queries)"
    )


@metering.command("estimate")
@click.option(
    "--from",
    "start",
    default=None,
    metavar="TIME",
    help="First hour (UTC unless the time says; default: the first of this month, UTC).",
)
@click.option(
    "--to",
    "end",
    default=None,
    metavar="TIME",
    help="End hour, exclusive (default: the end of the hour in progress).",
)
@ACCOUNT
@FORMAT
@OUT
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write every format from the one metering: estimate.csv (FOCUS), estimate.json, "
    "estimate.html (the statement).",
)
@PROM
@click.pass_context
def metering_estimate(
    ctx: click.Context,
    start: str | None,
    end: str | None,
    account: str | None,
    fmt: str,
    out: Path | None,
    out_dir: Path | None,
    **flags: Any,
) -> None:
    """Usage and charges so far, the hour in progress included: metered as a run meters,
    sample by sample, into a scratch database (the billing database is not touched), and
    reported as `report` does with the status "estimate". Not a bill: hours not settled may
    still gain late samples, and the hour in progress is metered up to now."""
    import tempfile
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from metering.job import Job
    from metering.meters import enabled
    from metering.models import Charge
    from metering.periods import parse_instant
    from metering.pricing import load_price_book
    from metering.report import render
    from metering.source import QuerySource
    from metering.store import engine_for, upgrade

    _cfg, section = _section(ctx, **flags)
    book = load_price_book(section.price_book)
    now = datetime.now(UTC)
    first = parse_instant(start) if start else now.replace(day=1, hour=0, minute=0, second=0)
    options = _options(section)
    options.open_hours = True
    options.fast = False  # an hour in progress is not regular: every sample is read
    with tempfile.TemporaryDirectory(prefix="zcp-estimate-") as scratch:
        engine = engine_for(f"sqlite:///{scratch}/estimate.db")
        upgrade(engine)
        source = QuerySource(section.query_url, section.query_timeout_seconds)
        job = Job(source, engine, book, enabled(section.optional_meters), options)
        lo, hi = job.plan(first, parse_instant(end) if end else None)
        with click.progressbar(
            length=int((hi - lo).total_seconds() // 3600),
            label=f"estimating {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC",
            file=sys.stderr,
            show_pos=True,
        ) as bar:
            job.progress = bar.update
            job.run(lo, hi)
        with Session(engine) as s:
            months = sorted(set(s.scalars(select(Charge.billing_month).distinct())))
        months = months or [f"{now:%Y-%m}"]  # no usage yet: an empty report, with its header
        texts = {
            f: _joined(
                f, [render(engine, book, m, account, "month", f, "estimate") for m in months]
            )
            for f in (("csv", "json", "html") if out_dir is not None else (fmt,))
        }
        engine.dispose()
    if out_dir is None:
        _emit(texts[fmt], out)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, text in texts.items():
        _emit(text, out_dir / f"estimate.{f}")


def _joined(fmt: str, parts: list[str]) -> str:
    """Several months' reports as one text: one CSV header, one JSON document."""
    if fmt == "csv":
        return "".join(p if i == 0 else p.split("\n", 1)[1] for i, p in enumerate(parts))
    if fmt == "json":
        import json

        doc = {"estimate": True, "months": [json.loads(p) for p in parts]}
        return json.dumps(doc, indent=2) + "\n"
    return "".join(parts)


@metering.command("close")
@click.option("--month", required=True, metavar="YYYY-MM", help="The month to make final.")
@click.option(
    "--accept-gaps",
    is_flag=True,
    help="Close even though some records are flagged (time not billed).",
)
@DB
@click.pass_context
def metering_close(ctx: click.Context, month: str, accept_gaps: bool, **flags: Any) -> None:
    """Make every account's statement of a month final (its own billing timezone): its records
    become immutable; later changes only add adjustment lines."""
    from metering.pricing import load_price_book
    from metering.statements import close

    _cfg, section = _section(ctx, **flags)
    book = load_price_book(section.price_book)
    closed = close(_engine(section), book, month, accept_gaps)
    for st in closed:
        click.echo(f"{st.account_id} {st.month} final {st.total} {st.currency}")
    if not closed:
        click.echo(f"no account has usage in {month}", err=True)


@metering.command("report")
@click.option("--month", required=True, metavar="YYYY-MM")
@ACCOUNT
@click.option(
    "--granularity",
    type=click.Choice(["hour", "day", "month"]),
    default="month",
    show_default=True,
    help="hour: the hourly usage records themselves, for audit.",
)
@FORMAT
@OUT
@DB
@click.pass_context
def metering_report(
    ctx: click.Context,
    month: str,
    account: str | None,
    granularity: str,
    fmt: str,
    out: Path | None,
    **flags: Any,
) -> None:
    """A month's charges as FOCUS CSV lines, JSON or a readable HTML statement; amounts are
    rounded per line so that the lines sum exactly to the statement total."""
    from metering.pricing import load_price_book
    from metering.report import render

    _cfg, section = _section(ctx, **flags)
    book = load_price_book(section.price_book)
    _emit(render(_engine(section), book, month, account, granularity, fmt), out)


@metering.command("reconcile")
@click.option("--month", required=True, metavar="YYYY-MM")
@click.option(
    "--exceptions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML list of known differences to ignore (account, type, reason).",
)
@DB
@click.pass_context
def metering_reconcile(
    ctx: click.Context, month: str, exceptions: Path | None, **flags: Any
) -> None:
    """Compare the month with CloudStack's own usage records (listUsageRecords) per account,
    usage type and day; differences beyond the tolerances are listed and exit 1."""
    from metering.reconcile import reconcile

    cfg, section = _section(ctx, **flags)
    if cfg.cloudstack is None:
        from metering.errors import MeteringError

        raise MeteringError("reconcile needs the cloudstack: section (listUsageRecords)")
    report = reconcile(_engine(section), cfg.cloudstack, month, exceptions)
    click.echo(report.text())
    if report.differences:
        raise SystemExit(1)


@metering.command("db")
@click.argument("action", type=click.Choice(["upgrade"]))
@DB
@click.pass_context
def metering_db(ctx: click.Context, action: str, **flags: Any) -> None:
    """Upgrade the billing database's schema (Alembic); every command does it first too."""
    _cfg, section = _section(ctx, **flags)
    _engine(section)
    click.echo("database schema up to date")
