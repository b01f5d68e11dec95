"""Historical series for metering tests and benchmarks, loaded into real stores.

Series are plain data (name, labels, ``(t_ms, value)`` samples with Decimal or int values);
they are written as OpenMetrics for ``promtool tsdb create-blocks-from openmetrics`` (a real
Prometheus TSDB) or as the text exposition with millisecond timestamps for VictoriaMetrics'
``/api/v1/import/prometheus``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from zcp.binaries import require
from zcp.errors import DaemonError


@dataclass(frozen=True)
class HistorySeries:
    """One series of history."""

    name: str
    labels: tuple[tuple[str, str], ...]
    samples: tuple[tuple[int, Decimal | int], ...]
    kind: str = "gauge"  # or counter (OpenMetrics needs the family's type)


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{{{inner}}}" if inner else ""


def openmetrics(series: Iterable[HistorySeries]) -> Iterator[str]:
    """OpenMetrics text for promtool: families grouped, seconds timestamps, ``# EOF``."""
    by_family: dict[str, list[HistorySeries]] = {}
    for s in series:
        family = s.name.removesuffix("_total") if s.kind == "counter" else s.name
        by_family.setdefault(family, []).append(s)
    for family, members in by_family.items():
        yield f"# TYPE {family} {members[0].kind}\n"
        for s in members:
            labels = _labels(s.labels)
            for t, v in s.samples:
                yield f"{s.name}{labels} {v} {t // 1000}.{t % 1000:03d}\n"
    yield "# EOF\n"


def import_text(series: Iterable[HistorySeries]) -> Iterator[str]:
    """Prometheus text lines with millisecond timestamps (VictoriaMetrics' import format)."""
    for s in series:
        labels = _labels(s.labels)
        for t, v in s.samples:
            yield f"{s.name}{labels} {v} {t}\n"


def backfill_prometheus(series: Iterable[HistorySeries], tsdb: Path, workdir: Path) -> None:
    """Write ``series`` into the TSDB directory ``tsdb`` with promtool (2-hour blocks)."""
    promtool = require("promtool", "prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "history.om"
    with open(source, "w") as f:
        f.writelines(openmetrics(series))
    tsdb.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise DaemonError(
            f"promtool create-blocks-from failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
        )
