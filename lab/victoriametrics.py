"""A real single-node VictoriaMetrics (Debian's ``victoria-metrics``) on a free 127.0.0.1 port,
with its data in a work dir; history is loaded through its import API."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import requests

from lab.history import HistorySeries, import_text
from lab.procs import Daemon, free_port
from zcp.binaries import require
from zcp.errors import DaemonError


class VictoriaMetricsServer(Daemon):
    """VictoriaMetrics single node; ``url`` serves the Prometheus query API."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = require("victoria-metrics", "victoria-metrics")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "victoria-metrics",
            [
                binary,
                f"-storageDataPath={workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerFormat=json",
            ],
            workdir,
            f"{self.url}/health",
        )

    def load(self, series: Iterable[HistorySeries], batch: int = 200_000) -> int:
        """Import ``series`` (text format, ms timestamps) and make it searchable at once."""
        sent = 0
        lines: list[str] = []

        def flush() -> None:
            if lines:
                resp = requests.post(
                    f"{self.url}/api/v1/import/prometheus",
                    data="".join(lines).encode(),
                    timeout=300,
                )
                if resp.status_code not in (200, 204):
                    raise DaemonError(
                        f"VictoriaMetrics import failed: {resp.status_code} {resp.text[:300]}"
                    )
                lines.clear()

        for line in import_text(series):
            lines.append(line)
            sent += 1
            if len(lines) >= batch:
                flush()
        flush()
        requests.get(f"{self.url}/internal/force_flush", timeout=60)
        return sent
