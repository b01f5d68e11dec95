"""The inventory service (``zcp-obs exporter inventory``, one per region or zone): CloudStack's
inventory cached once, served as ``job="zcp-inventory"`` identity metrics and as JSON snapshots
for the hypervisor exporters."""

from __future__ import annotations

from typing import Any

from exporters.http import ExporterServer, serve_until_signal, served
from exporters.inventory.service import InventoryService
from zcp.config import Config, InventoryExporterConfig, split_listen
from zcp.inventory import make_cache
from zcp.inventory.snapshot import PATH

DEFAULT_PORT = 9180

__all__ = ["DEFAULT_PORT", "InventoryService", "run", "serve"]


def serve(service: InventoryService, listen: str, deadline: float, **http: Any) -> ExporterServer:
    """An HTTP server (not started) for ``service``: /metrics and the snapshot route; ``http``
    are :class:`ExporterServer`'s server settings (see :func:`exporters.http.served`)."""
    host, port = split_listen(listen)
    return ExporterServer(
        "inventory", service, host, port, deadline, routes={PATH: service.snapshot}, **http
    )


def run(cfg: Config, section: InventoryExporterConfig) -> None:
    """Run the inventory service until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    server = serve(
        InventoryService(cache), section.listen, section.deadline_seconds, **served(section)
    )
    serve_until_signal(server, [cache.stop], source=cfg.inventory.source)
