"""``zcp-obs metering estimate``: usage and charges so far, the hour in progress included,
through the real command into a scratch database; over settled hours it is the run's report."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metering.errors import MeteringError
from metering.job import Job, Options
from metering.store import engine_for
from tests.metering.scenario import END, T0
from tests.metering.test_runs import RANGE, config, metering

pytestmark = pytest.mark.integration


def test_an_estimate_may_end_with_the_hour_in_progress_a_run_may_not() -> None:
    now = datetime(2026, 12, 7, 10, 20, tzinfo=UTC)
    engine = engine_for("sqlite://")
    settled = Job(None, engine, None, (), Options(), now=lambda: now)  # type: ignore[arg-type]
    hour = datetime(2026, 12, 7, 10, tzinfo=UTC)
    # 10:20 less 15 min to settle: the hour 09:00-10:00 is the last settled one
    assert settled.plan(hour - timedelta(hours=2), None)[1] == hour
    with pytest.raises(MeteringError, match="has not settled"):
        settled.plan(hour, hour + timedelta(hours=1))
    estimate = Job(None, engine, None, (), Options(open_hours=True), now=lambda: now)  # type: ignore[arg-type]
    assert estimate.plan(hour, None) == (hour, hour + timedelta(hours=1))
    with pytest.raises(MeteringError, match="after the hour in progress"):
        estimate.plan(hour, hour + timedelta(hours=2))


def test_over_settled_hours_an_estimate_is_the_runs_report_and_writes_no_bill(
    history_victoria: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    cfg = config(tmp_path, history_victoria, url)
    estimated = metering(cfg, "estimate", *RANGE, "--format", "csv")
    assert estimated.returncode == 0, estimated.stderr
    assert not (tmp_path / "billing.db").exists(), "an estimate touches no billing database"
    ran = metering(cfg, "run", *RANGE)
    assert ran.returncode == 0, ran.stderr
    # the hours fall in October too, for an account billed in a timezone behind UTC
    months = sorted({f"{T0 - timedelta(days=1):%Y-%m}", f"{T0:%Y-%m}", f"{END:%Y-%m}"})
    reported = ""
    for month in months:
        report = metering(cfg, "report", "--month", month, "--format", "csv")
        assert report.returncode == 0, report.stderr
        reported += report.stdout if not reported else report.stdout.split("\n", 1)[1]

    def lines(text: str) -> list[dict[str, str]]:
        return sorted(
            (
                {k: v for k, v in row.items() if k != "x_StatementStatus"}
                for row in csv.DictReader(io.StringIO(text))
            ),
            key=lambda r: r["x_LineId"],
        )

    est = list(csv.DictReader(io.StringIO(estimated.stdout)))
    assert est and {r["x_StatementStatus"] for r in est} == {"estimate"}
    assert lines(estimated.stdout) == lines(reported)


def test_every_format_from_one_metering_and_bad_input(
    history_victoria: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path, history_victoria, f"sqlite:///{tmp_path / 'billing.db'}")
    done = metering(cfg, "estimate", *RANGE, "--out-dir", str(tmp_path / "est"))
    assert done.returncode == 0, done.stderr
    one = metering(cfg, "estimate", *RANGE, "--format", "csv")
    assert (tmp_path / "est" / "estimate.csv").read_text() == one.stdout
    doc = json.loads((tmp_path / "est" / "estimate.json").read_text())
    assert doc["estimate"] and doc["months"][0]["accounts"]
    assert "estimate" in (tmp_path / "est" / "estimate.html").read_text()
    late = metering(cfg, "estimate", "--from", "2026-13-01")
    assert late.returncode != 0 and "Traceback" not in late.stderr
    errors = [x for x in late.stderr.splitlines() if x.startswith("Error:")]
    assert errors == [
        "Error: '2026-13-01' is not a date or time (e.g. 2026-11-01 or 2026-11-01T13:00Z)"
    ], late.stderr
