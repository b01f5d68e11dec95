"""``zcp-obs demo``: the whole stack on real daemons on this machine.

For now: the inventory (embedded demo cloud unless configured otherwise) exposed as identity info
metrics, scraped by a real Prometheus; later parts add their exporters, rules and dashboards here.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry, start_http_server
from tabulate import tabulate

from lab.procs import free_port
from lab.prometheus import PrometheusServer
from zcp.config import Config
from zcp.errors import DaemonError
from zcp.inventory import make_cache
from zcp.inventory.metrics import InventoryCollector
from zcp.logs import collect_log_metrics

log = logging.getLogger(__name__)


class _LogMetrics:
    def collect(self) -> Any:
        yield from collect_log_metrics()


def _step(n: int, total: int, text: str) -> None:
    click.echo(f"[{n}/{total}] {text}", err=True)


def _wait_for(prom: PrometheusServer, expr: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prom.query(expr)
        if result:
            return result
        time.sleep(0.5)
    raise DaemonError(f"Prometheus returned nothing for {expr!r} within {timeout:.0f}s")


def run_demo(cfg: Config, workdir: Path | None, duration: float | None) -> None:
    """Start everything, show what Prometheus sees, run until Ctrl-C or ``duration``."""
    total = 4
    workdir = workdir or Path(tempfile.mkdtemp(prefix="zcp-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    _step(1, total, f"loading the inventory ({cfg.inventory.source})")
    cache = make_cache(cfg)
    cache.start()
    if not cache.wait_loaded(30):
        cache.stop()
        raise DaemonError(f"inventory did not load within 30s: {cache.last_error}")
    counts = cache.current().counts()
    click.echo("      " + ", ".join(f"{v} {k}" for k, v in counts.items()), err=True)

    _step(2, total, "serving inventory identity metrics")
    registry = CollectorRegistry()
    registry.register(InventoryCollector(cache))
    registry.register(_LogMetrics())
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    prom: PrometheusServer | None = None
    try:
        _step(3, total, "starting Prometheus")
        prom = PrometheusServer(workdir / "prometheus", {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "scrape_configs": [
                {"job_name": "zcp-inventory",
                 "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            ],
        })
        prom.start()
        _step(4, total, "waiting for the first scrape")
        _wait_for(prom, 'up{job="zcp-inventory"} == 1', 30)
        rows = [
            [r["metric"].get("account", ""), r["metric"].get("domain_path", ""), r["value"][1]]
            for r in _wait_for(prom, "count by (account, domain_path) (zcp_vm_info)", 30)
        ]
        click.echo("\nVMs per tenant, as Prometheus sees them:")
        click.echo(tabulate(sorted(rows), headers=["account", "domain", "vms"]))
        classes = [[r["metric"].get("storage_class", ""), r["value"][1]]
                   for r in prom.query("count by (storage_class) (zcp_volume_info)")]
        click.echo("\nVolumes per storage class:")
        click.echo(tabulate(sorted(classes), headers=["storage_class", "volumes"]))
        click.echo(f"\nPrometheus:      {prom.url}\nInventory metrics: "
                   f"http://127.0.0.1:{port}/metrics\nWork dir (logs): {workdir}")
        log.info("demo up", extra={"prometheus": prom.url, "workdir": str(workdir)})
        stop = threading.Event()
        if duration is None:
            click.echo("Running; press Ctrl-C to stop.", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(duration)
    finally:
        click.echo("stopping", err=True)
        if prom is not None:
            prom.stop()
        server.shutdown()
        cache.stop()
