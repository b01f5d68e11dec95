"""The demo's finance step: meter what the demo's cloud used and produce the finance report.

It runs the production commands as a site runs them, each its own process with a config file:
``zcp-obs metering run --from --to`` (which upgrades the billing database's schema first, as
every metering command does) against the long-term store (VictoriaMetrics, which the operator
Prometheus remote-writes to), then ``metering report`` as FOCUS CSV, an HTML statement and JSON
(read back for the figures), plus ``inventory show`` for the accounts' names. Nothing here
computes a quantity: every figure is the metering job's own.

The window. Metering bills whole UTC hours, and only hours that have *settled*: ``Job.plan``
(metering/job.py) refuses an end later than ``floor_hour(now - settle_seconds)``, floors
``--from``/``--to`` to the hour (a mid-hour ``--to`` silently meters less), and the config
allows ``settle_seconds >= 0`` only. So ``metering run`` never bills the hour in progress,
whatever ``--to`` says, and a demo that has run for two minutes has no settled hour yet
(``metering estimate`` meters it, unbilled, into a scratch database: :func:`estimate`). This step meters ``[the UTC hour the demo
began, the last settled hour)``: every sample the demo produced up to that end, exactly (nothing
scaled to an hour or extrapolated; a VM that ran 3 minutes of the hour is billed 3 minutes).
When the demo's first hour has not settled yet, the step waits for it (``max_wait`` bounds
that); usage after the window's end lies in the open hour and is metered by a later call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
import yaml
from tabulate import tabulate

from lab.procs import run_checked
from lab.stack import ZCP_OBS, write_private
from zcp.errors import DaemonError
from zcp.files import private_dir

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
# the longest a billing timezone's offset reaches from UTC: which billing months an hour of UTC
# may belong to (charges are filed under the month of the account's own timezone)
TZ_REACH = timedelta(hours=14)
# how many of the demo's scrape intervals may be missing before the time is not billed (the
# production ratio: 300 s over 60 s scrapes)
GAP_SCRAPES = 5
# the demo's remote write (5 s batch deadline) and VictoriaMetrics' search latency (the demo
# runs it with -search.latencyOffset=0s) are seconds: this much after max_gap the hour's last
# samples and their successors are all in the store
SETTLE_MARGIN_SECONDS = 30.0
RUN_TIMEOUT = 900.0
REPORT_TIMEOUT = 300.0


def finance(
    workdir: Path,
    store_url: str,
    started_at: float,
    log_format: str = "json",
    config_path: Path | None = None,
    *,
    max_wait: float | None = None,
    pushgateway_url: str | None = None,
) -> dict[str, Any]:
    """Meter the demo's settled hours from the long-term store and write the finance report.

    ``workdir`` is the demo's private work dir (the billing database ``billing.db``, the
    config ``finance.yaml`` and the reports under ``finance/`` go there), ``store_url`` the
    base URL of VictoriaMetrics' query API, ``started_at`` the demo's start (``time.time()``),
    ``config_path`` the demo's own config (its inventory and metering settings are kept).
    When the hour the demo began has not settled, this waits until it has, at most
    ``max_wait`` seconds (None: as long as that takes, up to an hour); longer is a
    DaemonError saying when to come back. With ``pushgateway_url`` the job pushes its
    health and month-to-date usage there, as in production.

    Returns the window metered, one line per account and meter (quantity in the billing
    unit, amount; exact decimal strings from the report), the report files and timings.
    """
    began = time.monotonic()
    interval = _demo_scrape_seconds()
    max_gap = GAP_SCRAPES * interval
    settle = max_gap + SETTLE_MARGIN_SECONDS
    start = _floor_hour(datetime.fromtimestamp(started_at, UTC))
    waited = _wait_for_settled(start + HOUR + timedelta(seconds=settle), started_at, max_wait)
    end = _floor_hour(datetime.now(UTC) - timedelta(seconds=settle))
    if end <= start:  # only if the clock went back while waiting
        raise DaemonError(f"no settled hour since the demo began ({_iso(start)}); try again")

    workdir = private_dir(workdir)
    # one finance step at a time per work dir (the demo's own thread and `zcp-obs demo
    # finance` may both run): two first runs at once race to create the database's schema
    # and the second run is refused the job's lease; the later caller waits, then its
    # run changes nothing (records are upserted by key) and it reports the same figures
    with _exclusive(workdir / "finance.lock"):
        out = private_dir(workdir / "finance")
        database = workdir / "billing.db"
        config = _write_config(
            workdir / "finance.yaml",
            config_path,
            {
                "query_url": store_url,
                "database_url": f"sqlite:///{database}",
                # the demo scrapes every few seconds, not every minute: a sample holds for one
                # interval when nothing follows (a guest destroyed), else it would bill time
                # the guest did not run
                "scrape_interval_seconds": interval,
                "max_gap_seconds": max_gap,
                "settle_seconds": settle,
                "pushgateway_url": pushgateway_url,
            },
        )
        base = [*ZCP_OBS, "--log-format", log_format, "--config", str(config)]
        months = _months(start, end)
        # each command is a Python start-up of seconds: what does not depend on the run goes
        # beside it, and a month's three reports together (every command upgrades the
        # database's schema first, so there is no separate `metering db upgrade`)
        with ThreadPoolExecutor(max_workers=3) as pool:
            names = pool.submit(_account_names, base)
            ran = _zcp(
                base, ["metering", "run", "--from", _iso(start), "--to", _iso(end)], RUN_TIMEOUT
            )
            log.info("demo metered", extra={"from": _iso(start), "to": _iso(end), "run": ran})
            files = {
                (month, kind): pool.submit(
                    _report, base, month, kind, out / f"{stem}-{month}.{kind}"
                )
                for month in months
                for kind, stem in (("json", "report"), ("csv", "focus"), ("html", "statement"))
            }
            done = {key: job.result() for key, job in files.items()}
            account_names = names.result()
        reports: dict[str, dict[str, str]] = {}
        rows: list[dict[str, str]] = []
        for month in months:
            accounts = json.loads(done[(month, "json")].read_text()).get("accounts", [])
            if not accounts:  # a month the window only may touch in some timezone
                for kind in ("json", "csv", "html"):
                    done[(month, kind)].unlink()
                continue
            reports[month] = {
                "json": str(done[(month, "json")]),
                "focus_csv": str(done[(month, "csv")]),
                "html": str(done[(month, "html")]),
            }
            for account in accounts:
                rows += [{**line, "x_Month": month} for line in account.get("lines", [])]
    if not rows:
        raise DaemonError(
            f"metering {_iso(start)} to {_iso(end)} found no billable usage: {store_url} holds "
            "no samples of the metered families then (does the operator Prometheus "
            f"remote-write to it?); metering run said: {ran or 'nothing'}"
        )
    return {
        "window": {
            "from": _iso(start),
            "to": _iso(end),
            "hours": int((end - start) / HOUR),
            "demo_started": _iso(datetime.fromtimestamp(started_at, UTC)),
            # the demo goes on after "to", in an hour not settled yet: not metered
            "metered_at": _iso(datetime.now(UTC)),
            "settle_seconds": settle,
            "max_gap_seconds": max_gap,
            "scrape_interval_seconds": interval,
        },
        "lines": _lines(rows, account_names),
        "reports": reports,
        "focus_csv": [r["focus_csv"] for r in reports.values()],
        "html": [r["html"] for r in reports.values()],
        "database": str(database),
        "config": str(config),
        "run": ran,
        "waited_seconds": round(waited, 1),
        "seconds": round(time.monotonic() - began, 1),
    }


def estimate(
    workdir: Path,
    store_url: str,
    started_at: float,
    log_format: str = "json",
    config_path: Path | None = None,
) -> dict[str, Any]:
    """The demo's usage and charges so far, the hour in progress included: ``zcp-obs metering
    estimate`` from the hour the demo began, against the long-term store, its FOCUS CSV, JSON
    and HTML statement written once under ``workdir/finance`` (status ``estimate``: nothing
    is billed; the billed report needs the hour to settle, :func:`finance`). Returns the
    window, the lines per account and meter, and the files, as :func:`finance` does."""
    began = time.monotonic()
    interval = _demo_scrape_seconds()
    out = private_dir(private_dir(workdir) / "finance")
    config = _write_config(
        workdir / "estimate.yaml",
        config_path,
        {
            "query_url": store_url,
            "scrape_interval_seconds": interval,
            "max_gap_seconds": GAP_SCRAPES * interval,
        },
    )
    base = [sys.executable, "-m", "zcp_obs", "--log-format", log_format, "--config", str(config)]
    start = _floor_hour(datetime.fromtimestamp(started_at, UTC))
    with ThreadPoolExecutor(max_workers=1) as pool:
        names = pool.submit(_account_names, base)
        run_checked(
            [*base, "metering", "estimate", "--from", _iso(start), "--out-dir", str(out)],
            timeout=RUN_TIMEOUT,
        )
        account_names = names.result()
    at = datetime.now(UTC)
    doc = json.loads((out / "estimate.json").read_text())
    rows = [
        {**line, "x_Month": month["month"]}
        for month in doc["months"]
        for account in month.get("accounts", [])
        for line in account.get("lines", [])
    ]
    return {
        "window": {
            "from": _iso(start),
            "to": _iso(at),
            "demo_started": _iso(datetime.fromtimestamp(started_at, UTC)),
            "estimate": True,
        },
        "lines": _lines(rows, account_names),
        "focus_csv": [str(out / "estimate.csv")],
        "html": [str(out / "estimate.html")],
        "json": str(out / "estimate.json"),
        "config": str(config),
        "seconds": round(time.monotonic() - began, 1),
    }


def finance_table(result: dict[str, Any]) -> str:
    """The lines of :func:`finance` as a short table for the terminal, with each account's
    total and the window metered."""
    rows: list[list[str]] = []
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for line in result["lines"]:
        rows.append(
            [
                line["account"],
                line["meter"],
                _short(line["quantity"]),
                line["unit"],
                f"{line['amount']} {line['currency']}",
            ]
        )
        totals[(line["account"], line["currency"])] += Decimal(line["amount"])
    for (account, currency), total in sorted(totals.items()):
        rows.append([account, "total", "", "", f"{total} {currency}"])
    w = result["window"]
    head = (
        f"estimated {w['from']} to {w['to']} (now): usage so far, the hour in progress "
        "included; not a bill"
        if w.get("estimate")
        else f"metered {w['from']} to {w['to']}: whole settled hours; the demo began "
        f"{w['demo_started']}, its usage after {w['to']} is in an hour not settled yet"
    )
    table = tabulate(
        rows,
        headers=["account", "meter", "quantity", "unit", "amount"],
        colalign=("left", "left", "right", "left", "right"),
    )
    return f"{head}\n{table}"


# -- the window --------------------------------------------------------------------------------
def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _demo_scrape_seconds() -> float:
    """The operator Prometheus's scrape interval in the demo (lab/demo.py ``INTERVAL``),
    imported here, not at the top: the demo may import this module."""
    from lab.demo import INTERVAL

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", INTERVAL)
    if m is None:
        raise DaemonError(f"the demo's scrape interval {INTERVAL!r} is not a duration")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def _wait_for_settled(ready: datetime, started_at: float, max_wait: float | None) -> float:
    """Sleep until ``ready`` (the demo's first hour has settled); the seconds waited."""
    delay = (ready - datetime.now(UTC)).total_seconds()
    if delay <= 0:
        return 0.0
    began = datetime.fromtimestamp(started_at, UTC)
    first = f"{_floor_hour(began):%H:%M}-{_floor_hour(began) + HOUR:%H:%M} UTC"
    if max_wait is not None and delay > max_wait:
        raise DaemonError(
            f"the demo began at {began:%H:%M:%S} UTC and metering bills whole settled hours "
            f"only: its first hour ({first}) settles at {ready:%H:%M:%S} UTC, in {_duration(delay)}, "
            f"more than the {_duration(max_wait)} allowed; run the finance step again then"
        )
    click.echo(
        f"      metering bills whole settled hours: waiting {_duration(delay)}, until "
        f"{ready:%H:%M:%S} UTC, for the demo's first hour ({first}) to settle",
        err=True,
    )
    time.sleep(delay)
    return delay


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _months(start: datetime, end: datetime) -> list[str]:
    """The billing months (YYYY-MM) an hour in ``[start, end)`` may be filed under, in any
    billing timezone."""
    months = set()
    t = start - TZ_REACH
    while t < end + TZ_REACH:
        months.add(f"{t:%Y-%m}")
        t += timedelta(hours=12)
    months.add(f"{end + TZ_REACH:%Y-%m}")
    return sorted(months)


# -- the commands ------------------------------------------------------------------------------
@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600), waiting for another holder; the
    kernel releases it if this process dies."""
    with open(path, "a") as f:
        path.chmod(0o600)
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_config(path: Path, config_path: Path | None, metering: dict[str, Any]) -> Path:
    """The demo's config (if any) with the metering section for the demo, 0600: the section
    holds the database URL, which in production carries a password."""
    doc: dict[str, Any] = {}
    if config_path is not None:
        try:
            loaded = yaml.safe_load(config_path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DaemonError(f"cannot read the demo's config {config_path}: {exc}") from None
        doc = dict(loaded) if isinstance(loaded, dict) else {}
    section = dict(doc.get("metering") or {})
    section.update({k: v for k, v in metering.items() if v is not None})
    doc["metering"] = section
    return write_private(path, doc)


def _report(base: list[str], month: str, fmt: str, out: Path) -> Path:
    """``metering report`` of ``month`` in ``fmt`` (the month's lines per resource, as finance
    pulls them), written to ``out``."""
    _zcp(
        base,
        ["metering", "report", "--month", month, "--format", fmt, "--out", str(out)],
        REPORT_TIMEOUT,
    )
    return out


def _zcp(base: list[str], args: list[str], timeout: float) -> str:
    """Run ``zcp-obs <args>`` with ``base`` (interpreter, log format, config); its output.
    A failure is one line: the command and its own ``Error:`` line, not its log's tail."""
    proc = run_checked([*base, *args], timeout=timeout, check=False)
    if proc.returncode == 0:
        return proc.stdout.strip()
    said = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    why = next((ln for ln in reversed(said) if ln.startswith("Error:")), said[-1] if said else "")
    raise DaemonError(
        f"zcp-obs {' '.join(args)} failed ({proc.returncode}): "
        f"{why.removeprefix('Error:').strip()[:500] or 'no output'}"
    )


def _account_names(base: list[str]) -> dict[str, str]:
    """Account id -> name from the inventory the demo serves; ids stand in when it cannot be
    read (the names only label the table)."""
    proc = run_checked(
        [*base, "inventory", "show", "--kind", "tenants", "--format", "json"],
        timeout=REPORT_TIMEOUT,
        check=False,
    )
    try:
        tenants = json.loads(proc.stdout)["tenants"] if proc.returncode == 0 else []
        return {t["account_id"]: t["name"] for t in tenants}
    except (ValueError, KeyError, TypeError):
        log.warning("no account names from the inventory", extra={"rc": proc.returncode})
        return {}


# -- the figures -------------------------------------------------------------------------------
def _lines(rows: list[dict[str, str]], names: dict[str, str]) -> list[dict[str, Any]]:
    """The report's FOCUS lines (one per resource) summed per account, month and SKU."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        account, sku = row["BillingAccountId"], row["SkuId"]
        if row["ChargeCategory"] != "Usage":
            sku += " (adjustment)"
        line = groups.setdefault(
            (account, row["x_Month"], sku),
            {
                "account": names.get(account, account),
                "account_id": account,
                "month": row["x_Month"],
                "meter": sku,
                "description": row["ChargeDescription"],
                "quantity": Decimal(0),
                "unit": row["ConsumedUnit"],
                "amount": Decimal(0),
                "currency": row["BillingCurrency"],
                "resources": set(),
                "flags": set(),
            },
        )
        line["quantity"] += _decimal(row["ConsumedQuantity"])
        line["amount"] += _decimal(row["BilledCost"])
        line["resources"].add(row["ResourceId"])
        line["flags"].update(f for f in row["x_Flags"].split(",") if f)
    out = []
    for line in sorted(groups.values(), key=lambda d: (d["account"], d["month"], d["meter"])):
        out.append(
            {
                **line,
                # strings: exact, and the result stays JSON (the demo keeps it in summary.json)
                "quantity": _plain(line["quantity"]),
                "amount": str(line["amount"]),  # as billed: to the currency's minor unit
                "resources": len(line["resources"]),
                "flags": ",".join(sorted(line["flags"])),
            }
        )
    return out


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        raise DaemonError(f"the metering report holds {text!r} where a number belongs") from None


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _short(quantity: str) -> str:
    """A quantity for the eye: six decimals (the lines keep every digit)."""
    return f"{Decimal(quantity):.6f}"
