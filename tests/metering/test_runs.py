"""Exactly once, through the real command: ``kill -9`` mid-run and a re-run, two runs at once,
a month closed then corrected by late data and a price change, and bad input (a broken price
book, an unreachable or erroring query API, a database that goes away mid-run). Against
SQLite and a real PostgreSQL; samples in a real VictoriaMetrics behind a slow link."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lab.history import HistorySeries
from metering.models import Adjustment, Charge, Run, Statement, UsageRecord, Watermark
from metering.store import engine_for
from tests.metering import scenario
from tests.metering.scenario import END, T0, T0_MS
from zcp.wait import wait_until

pytestmark = pytest.mark.integration
LINEAGE = {"run_id", "query", "evaluated_at"}


class SlowLink:
    """An HTTP proxy in front of the query API that holds every answer ``delay`` seconds (a
    slow long-term store), so a run can be caught mid-way."""

    def __init__(self, upstream: str, delay: float) -> None:
        link = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(link.delay)
                resp = requests.request(
                    self.command,
                    upstream + self.path,
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                    timeout=60,
                )
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.delay = delay
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow(history_victoria: str) -> Iterator[SlowLink]:
    link = SlowLink(history_victoria, 0.05)
    yield link
    link.close()


def config(tmp_path: Path, query_url: str, database: str, **metering: object) -> Path:
    prices = tmp_path / "prices.yaml"
    if not prices.exists():
        prices.write_text(yaml.safe_dump(scenario.PRICES))
    path = tmp_path / "metering.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "metering": {
                    "query_url": query_url,
                    "database_url": database,
                    "price_book": str(prices),
                    "chunk_hours": 1,
                    "lock_ttl_seconds": 3,
                    "settle_seconds": 0,
                    **metering,
                }
            }
        )
    )
    return path


def metering(cfg: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(cfg),
            "--log-format",
            "text",
            "metering",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(cfg),
            "--log-format",
            "text",
            "metering",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


RANGE = ("--from", T0.isoformat(), "--to", END.isoformat())


def rows(database: str) -> list[tuple[object, ...]]:
    """Every record and charge, without the lineage of which run wrote it."""
    engine = engine_for(database)
    with Session(engine) as s:
        out = [
            tuple(getattr(r, c.key) for c in UsageRecord.__table__.columns if c.key not in LINEAGE)
            for r in s.scalars(select(UsageRecord).order_by(UsageRecord.key))
        ]
        out += [
            tuple(getattr(c, k.key) for k in Charge.__table__.columns)
            for c in s.scalars(select(Charge).order_by(Charge.record_key))
        ]
    engine.dispose()
    return out


def mark(database: str) -> object:
    """The watermark, None before there is one (or before the schema is)."""
    engine = engine_for(database)
    try:
        with Session(engine) as s:
            w = s.get(Watermark, "hourly")
            return w.until if w else None
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


@pytest.fixture
def reference(
    history_victoria: str, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[object, ...]]:
    """The rows of one clean, uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    url = f"sqlite:///{tmp / 'ref.db'}"
    done = metering(config(tmp, history_victoria, url), "run", *RANGE)
    assert done.returncode == 0, done.stderr
    return rows(url)


def test_kill_9_mid_run_then_rerun(
    slow: SlowLink, database: str, tmp_path: Path, reference: list[tuple[object, ...]]
) -> None:
    cfg = config(tmp_path, slow.url, database)
    proc = spawn(cfg, "run", *RANGE)
    try:
        assert wait_until(lambda: mark(database) is not None, 120), proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = mark(database)
    assert partial is not None and partial < END, "the run finished before the kill"
    done = rows(database)
    assert 0 < len(done) < len(reference)  # whole chunks, nothing half-written
    # the dead run's lease holds the lock until it expires; then the re-run completes
    again = metering(cfg, "run", *RANGE)
    if again.returncode != 0:
        assert "holds the database lock" in again.stderr.strip().splitlines()[-1]
        time.sleep(3.5)  # the lease's ttl: waiting for a lock to expire, not for data
        again = metering(cfg, "run", *RANGE)
    assert again.returncode == 0, again.stderr
    assert rows(database) == reference
    assert mark(database) == END


def test_two_runs_at_once_cannot_both_write(
    slow: SlowLink, database: str, tmp_path: Path, reference: list[tuple[object, ...]]
) -> None:
    cfg = config(tmp_path, slow.url, database)
    first = spawn(cfg, "run", *RANGE)
    try:
        assert wait_until(lambda: mark(database) is not None, 120)
        second = metering(cfg, "run", *RANGE)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith("Error: another metering run")
        _out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert rows(database) == reference


@pytest.fixture
def own_victoria(tmp_path: Path) -> Iterator[object]:
    """A VictoriaMetrics of the test's own (it adds late samples to it)."""
    from lab.victoriametrics import VictoriaMetricsServer
    from tests.support import need_binary

    need_binary("victoria-metrics", "victoria-metrics")
    server = VictoriaMetricsServer(tmp_path / "vm")
    server.start()
    server.load(scenario.history())
    yield server
    server.stop()


def test_close_then_late_data_and_a_price_correction(
    own_victoria: object, database: str, tmp_path: Path
) -> None:
    from lab.victoriametrics import VictoriaMetricsServer

    victoria = own_victoria
    assert isinstance(victoria, VictoriaMetricsServer)
    cfg = config(tmp_path, victoria.url, database, chunk_hours=24)
    month_end = "2026-12-01T06:00:00+00:00"
    run = metering(cfg, "run", "--from", T0.isoformat(), "--to", month_end)
    assert run.returncode == 0, run.stderr
    # flagged records (nic2's gap: account B, October in New York) block the close until
    # accepted
    refused = metering(cfg, "close", "--month", "2026-10")
    assert refused.returncode == 1 and "flagged" in refused.stderr.strip().splitlines()[-1]
    for month in ("2026-10", "2026-11"):
        closed = metering(cfg, "close", "--month", month, "--accept-gaps")
        assert closed.returncode == 0, closed.stderr
    before = rows(database)
    engine = engine_for(database)
    with Session(engine) as s:
        finals = {(st.account_id, st.month): st.total for st in s.scalars(select(Statement))}
    assert set(finals) == {
        (scenario.A, "2026-11"),
        (scenario.B, "2026-10"),
        (scenario.B, "2026-11"),
    }
    # late data: a volume of account A nobody had seen, in hour 5
    late = [
        HistorySeries(
            "ceph_rbd_image_provisioned_bytes",
            tuple(
                sorted(
                    {
                        "job": "zcp-ceph",
                        "volume_id": "vol9",
                        "storage_class": "fast",
                        "pool": "rbd-fast",
                        "image": "volume-9",
                    }.items()
                )
            ),
            tuple((T0_MS + k * 60_000, 2**30) for k in range(300, 360)),
        ),
        HistorySeries(
            "zcp_volume_info",
            tuple(
                sorted(
                    {"job": "zcp-inventory", "volume_id": "vol9", "account_id": scenario.A}.items()
                )
            ),
            tuple((T0_MS + k * 60_000, 1) for k in range(300, 360)),
        ),
    ]
    victoria.load(late)
    rerun = metering(cfg, "run", *RANGE)
    assert rerun.returncode == 0, rerun.stderr
    assert rows(database) == before  # a final month's records are never touched
    with Session(engine) as s:
        adjustments = s.scalars(select(Adjustment)).all()
        assert [(a.resource_id, a.reason, a.quantity_delta) for a in adjustments] == [
            ("vol9", "late-data", Decimal(2**30 * 3600))
        ]
        assert adjustments[0].amount_delta == (Decimal("0.16") / 720).quantize(Decimal("1e-12"))
        assert {
            (st.account_id, st.month): st.total for st in s.scalars(select(Statement))
        } == finals
    # a price correction of a final month: signed lines for the difference only
    book = yaml.safe_load((tmp_path / "prices.yaml").read_text())
    book["prices"][1]["price"] = "0.0060"  # vm.running_hours from 02:00
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(book))
    for _ in range(2):  # twice: the second run adds nothing
        again = metering(cfg, "run", *RANGE)
        assert again.returncode == 0, again.stderr
    with Session(engine) as s:
        price = [
            (a.resource_id, a.period_start.hour, a.amount_delta)
            for a in s.scalars(
                select(Adjustment)
                .where(Adjustment.reason == "price-correction")
                .order_by(Adjustment.resource_id, Adjustment.period_start)
            )
        ]
    assert price == [("vm1", h, Decimal("0.001")) for h in (2, 3, 4, 5)] + [
        ("vm2", 2, Decimal("0.001")),
        ("vm2", 3, Decimal("0.000166666667")),
    ]
    engine.dispose()


def test_bad_input_is_one_line_and_writes_nothing(
    history_victoria: str, tmp_path: Path, sqlite_url: str
) -> None:
    cfg = config(tmp_path, history_victoria, sqlite_url)
    (tmp_path / "prices.yaml").write_text(
        yaml.safe_dump(
            {
                **scenario.PRICES,
                "prices": [
                    *scenario.PRICES["prices"],
                    {  # type: ignore[list-item]
                        "meter": "vm.running_hours",
                        "price": "0.1",
                        "from": "2026-06-01",
                    },
                ],
            }
        )
    )
    bad = metering(cfg, "run", *RANGE)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        f"Error: invalid price book {tmp_path / 'prices.yaml'}: prices[10] (vm.running_hours) "
        "overlaps prices[0] (vm.running_hours): both price vm.running_hours from 2026-06-01"
    )
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(scenario.PRICES))
    # an unreachable query API: one line, a failed run recorded, nothing else, watermark unmoved
    down = config(tmp_path, "http://127.0.0.1:9", sqlite_url)
    failed = metering(down, "run", *RANGE)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == (
        "Error: cannot reach the query API at http://127.0.0.1:9: ConnectionError"
    )
    assert rows(sqlite_url) == [] and mark(sqlite_url) is None
    # an erroring one (a wrong path answers 404)
    wrong = config(tmp_path, history_victoria + "/nope", sqlite_url)
    failed = metering(wrong, "run", *RANGE)
    assert failed.returncode == 1 and "refused" in failed.stderr.strip().splitlines()[-1]
    engine = engine_for(sqlite_url)
    with Session(engine) as s:
        runs = [(r.status, bool(r.error)) for r in s.scalars(select(Run))]
    assert runs == [("failed", True), ("failed", True)]
    # a period that has not settled
    early = config(tmp_path, history_victoria, sqlite_url, settle_seconds=10**9)
    refused = metering(early, "run", *RANGE)
    assert refused.returncode == 1 and "has not settled" in refused.stderr


def test_the_database_going_away_mid_run(
    slow: SlowLink, tmp_path: Path, reference: list[tuple[object, ...]]
) -> None:
    from lab.postgres import PostgresServer

    pg = PostgresServer(tmp_path / "pg")
    pg.start()
    try:
        cfg = config(tmp_path, slow.url, pg.url)
        proc = spawn(cfg, "run", *RANGE)
        assert wait_until(lambda: mark(pg.url) is not None, 120)
        pg.stop()
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("Error: ")
        pg.start()
        assert mark(pg.url) is not None  # what was committed stayed committed
        again = metering(cfg, "run", *RANGE)
        assert again.returncode == 0, again.stderr
        assert rows(pg.url) == reference
    finally:
        pg.remove()


def test_the_job_pushes_its_metrics(history_victoria: str, tmp_path: Path, sqlite_url: str) -> None:
    from lab.procs import Daemon, free_port
    from tests.support import need_binary

    binary = need_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    gw = Daemon(
        "pushgateway",
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "pgw",
        f"http://127.0.0.1:{port}/-/ready",
    )
    gw.start()
    try:
        url = f"http://127.0.0.1:{port}"
        ok = metering(
            config(tmp_path, history_victoria, sqlite_url, pushgateway_url=url), "run", *RANGE
        )
        assert ok.returncode == 0, ok.stderr

        def pushed() -> dict[str, float]:
            text = requests.get(f"{url}/metrics", timeout=10).text
            return {
                line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("zcp_metering_") and 'job="zcp-metering"' in line
            }

        first = pushed()
        assert first["zcp_metering_last_run_success"] == 1
        assert first["zcp_metering_records_written"] == len(scenario.expected())
        assert first["zcp_metering_coverage_warnings"] == len(scenario.FLAGGED)
        # the month-to-date usage per tenant and meter, in billing units, for the dashboards
        from prometheus_client.parser import text_string_to_metric_families

        usage = {
            (m.labels["account_id"], m.labels["meter"], m.labels["month"]): m.value
            for f in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text)
            if f.name == "zcp_metering_usage"
            for m in f.samples
        }
        assert usage[(scenario.A, "vm.running_hours", "2026-11")] == 6  # vm1, six hours
        assert usage[(scenario.A, "ip.hours", "2026-11")] == 6
        assert all(month == "2026-11" for _a, _m, month in usage)
        fail = metering(
            config(tmp_path, "http://127.0.0.1:9", sqlite_url, pushgateway_url=url), "run", *RANGE
        )
        assert fail.returncode == 1
        after = pushed()
        assert after["zcp_metering_last_run_success"] == 0
        # the last success stays visible (MeteringJobLate needs it)
        assert (
            after["zcp_metering_last_success_timestamp_seconds"]
            == first["zcp_metering_last_success_timestamp_seconds"]
        )
    finally:
        gw.stop()
