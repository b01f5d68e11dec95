"""Metering fixtures: the scenario's history in a real Prometheus (promtool backfill) and a
real VictoriaMetrics (import API), and a real PostgreSQL, each started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.metering import scenario
from tests.support import need_binary


@pytest.fixture(scope="session")
def history_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus 2.42 over a TSDB that promtool built from the scenario's history."""
    need_binary("promtool", "prometheus")
    from lab.history import backfill_prometheus
    from lab.prometheus import PrometheusServer

    workdir = tmp_path_factory.mktemp("history-prometheus")
    backfill_prometheus(scenario.history(), workdir / "data", workdir / "backfill")
    server = PrometheusServer(
        workdir,
        {"global": {"scrape_interval": "1m"}, "scrape_configs": []},
        extra_args=("--storage.tsdb.retention.time=100y",),
    )
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL 15 (initdb in a temp dir, 127.0.0.1)."""
    need_binary("pg_ctl", "postgresql")
    from lab.postgres import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metering.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    """An empty billing database URL: SQLite, then a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    pg = request.getfixturevalue("postgres")
    return str(pg.new_database(f"t_{uuid.uuid4().hex[:12]}"))  # type: ignore[attr-defined]
