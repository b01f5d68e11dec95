"""Reports: FOCUS CSV whose rounded lines sum exactly to the statement, JSON, and an HTML
statement opened in a real headless Chromium (no console errors, the chart drawn)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from metering.money import allocate, round_total
from metering.report import FOCUS
from tests.metering import scenario
from tests.metering.scenario import END, T0


def test_largest_remainder_sums_to_the_rounded_total() -> None:
    amounts = [Decimal("0.005"), Decimal("0.005"), Decimal("0.005"), Decimal("1.2349")]
    lines = allocate(amounts, "EUR")
    assert sum(lines) == round_total(sum(amounts), "EUR") == Decimal("1.25")
    # floors 0, 0, 0, 1.23; the two missing cents go to the largest remainders (ties: first)
    assert lines == [Decimal("0.01"), Decimal("0.01"), Decimal("0.00"), Decimal("1.23")]
    assert allocate([Decimal("12.6")], "JPY") == [Decimal("13")]
    # signed lines (adjustments) too: floors -0.01 and 0.00, one cent to the first of the tie
    assert allocate([Decimal("-0.004"), Decimal("0.006")], "EUR") == [
        Decimal("0.00"),
        Decimal("0.00"),
    ]


@pytest.fixture(scope="module")
def metered(history_victoria: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario metered into SQLite through the command; its config."""
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "prices.yaml").write_text(yaml.safe_dump(scenario.PRICES))
    cfg = tmp / "metering.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "metering": {
                    "query_url": history_victoria,
                    "database_url": f"sqlite:///{tmp / 'm.db'}",
                    "price_book": str(tmp / "prices.yaml"),
                    "settle_seconds": 0,
                }
            }
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(cfg),
            "metering",
            "run",
            "--from",
            T0.isoformat(),
            "--to",
            (END + timedelta(hours=1)).isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return cfg


def report(cfg: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "zcp_obs", "--config", str(cfg), "metering", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.integration
@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_focus_csv_lines_sum_to_the_total(metered: Path, granularity: str) -> None:
    text = report(metered, "--month", "2026-11", "--granularity", granularity)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == FOCUS
    doc = json.loads(
        report(metered, "--month", "2026-11", "--granularity", granularity, "--format", "json")
    )
    totals = {a["account_id"]: Decimal(a["total"]) for a in doc["accounts"]}
    assert set(totals) == {scenario.A, scenario.B}
    for account, total in totals.items():
        billed = sum(Decimal(r["BilledCost"]) for r in rows if r["BillingAccountId"] == account)
        assert billed == total
    assert {r["BillingCurrency"] for r in rows} == {"EUR"}
    assert {r["ChargeCategory"] for r in rows} == {"Usage"}
    a_hours = [
        r for r in rows if r["BillingAccountId"] == scenario.A and r["SkuId"] == "vm.running_hours"
    ]
    # vm1 ran 6 hours in November (account A bills in UTC)
    assert sum(Decimal(r["ConsumedQuantity"]) for r in a_hours) == 6
    if granularity == "hour":  # the hourly records themselves, for audit
        assert len(a_hours) == 6 and {r["ChargePeriodEnd"] for r in a_hours} >= {
            "2026-11-01T06:00:00Z"
        }
    if granularity == "month":
        assert {r["ChargePeriodStart"] for r in rows if r["BillingAccountId"] == scenario.B} == {
            "2026-11-01T04:00:00Z"
        }  # November in New York starts at 04:00Z


@pytest.mark.integration
def test_html_statement_in_a_real_browser(metered: Path, tmp_path: Path) -> None:
    from tests.support import need_binary

    chromium = need_binary("chromium", "chromium")
    page_path = tmp_path / "statement.html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(metered),
            "metering",
            "report",
            "--month",
            "2026-11",
            "--format",
            "html",
            "--out",
            str(page_path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_path.as_uri())
            bars = page.locator("svg.chart rect")
            assert bars.count() > 0
            heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(bars.count())]
            assert max(heights) > 0  # the chart is drawn, not empty
            box = page.locator("svg.chart").first.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50
            accounts = page.locator("section.account")
            assert accounts.count() == 2
            total = page.locator("section.account b.total").first.inner_text()
            assert total.endswith("EUR")
            shot = tmp_path / "statement.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert problems == []
        finally:
            browser.close()
